"""H2Server's lifecycle: start, stop, ports, the event loop it runs on, closing edge cases."""

from __future__ import annotations

import asyncio
import socket
import sys

import grpc
import pytest
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from sidecar.app import event_loop_factory
from sidecar.h2 import H2Options, H2Server
from sidecar.h2 import frames as fr
from sidecar.h2.connection import Connection
from sidecar.h2.hpack import encode_block
from sidecar.observability.health import Health
from sidecar.observability.metrics import Metrics
from sidecar.service import RateLimitService
from sidecar.transports.fast import rls_server
from tests.h2.conftest import make_engine
from tests.h2.engines import SlowEngine
from tests.h2.test_fuzz import FakeTransport
from tests.h2.wire import grpc_body, request_headers, rls_request


def new_server(**options: object) -> H2Server:
    return rls_server(RateLimitService(make_engine(), Metrics()), Health(), H2Options(**options))  # type: ignore[arg-type]


async def call_once(port: int) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = rls_pb2_grpc.RateLimitServiceStub(channel)
        reply = await stub.ShouldRateLimit(
            rls_pb2.RateLimitRequest.FromString(rls_request("test", ("bulk", "x"))), timeout=5)
        return int(reply.overall_code)


async def test_start_on_a_free_port_and_stop_twice() -> None:
    server = new_server()
    await server.stop(1.0)  # before start: nothing to do
    await server.start("127.0.0.1", 0)
    assert server.port > 0
    assert await call_once(server.port) == rls_pb2.RateLimitResponse.OK
    await server.stop(1.0)
    await server.stop(1.0)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", server.port)) != 0


async def test_port_in_use_is_an_oserror() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = new_server()
        with pytest.raises(OSError):
            await server.start("127.0.0.1", taken.getsockname()[1])


def test_serves_on_the_loop_from_event_loop_factory() -> None:
    # uvloop when it is installed, asyncio's loop otherwise: the server must work on both.
    async def main() -> int:
        server = new_server(eager_start=True)
        await server.start("127.0.0.1", 0)
        try:
            return await call_once(server.port)
        finally:
            await server.stop(1.0)

    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        assert runner.run(main()) == rls_pb2.RateLimitResponse.OK


class GoneTransport(FakeTransport):
    """A transport whose peer has reset the connection: shutting down writing fails."""

    def write_eof(self) -> None:
        raise OSError(107, "Transport endpoint is not connected")


async def test_closing_after_the_peer_is_gone_does_not_raise() -> None:
    connection = Connection(new_server())
    transport = GoneTransport()
    connection.connection_made(transport)
    connection.data_received(fr.PREFACE + fr.settings({}) + fr.goaway(0, 0))
    assert transport.closed
    connection.connection_lost(None)


async def test_peer_eof_closes_once_streams_are_answered() -> None:
    server = rls_server(RateLimitService(SlowEngine(0.05), Metrics()), Health())
    connection = Connection(server)
    transport = FakeTransport()
    connection.connection_made(transport)
    connection.data_received(fr.PREFACE + fr.settings({}) + fr.headers(
        1, encode_block([(k.encode(), v.encode()) for k, v in request_headers()]), False,
        fr.DEFAULT_MAX_FRAME) + fr.data(1, grpc_body(rls_request("test", ("bulk", "e"))), True))
    assert connection.eof_received() is True  # a call is running: keep the transport
    await asyncio.sleep(0.2)
    assert b"grpc-status" in transport.out  # answered, then closed (lingering)
    assert connection.eof_received() is None  # nothing left: let asyncio close it
    connection.connection_lost(None)


class CountingTransport(FakeTransport):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: object) -> None:
        self.writes += 1
        super().write(data)


@pytest.mark.parametrize("eager", [True, False])
async def test_answers_to_one_read_leave_in_one_write(eager: bool) -> None:
    connection = Connection(new_server(eager_start=eager))
    transport = CountingTransport()
    connection.connection_made(transport)  # write 1: our SETTINGS
    block = encode_block([(k.encode(), v.encode()) for k, v in request_headers()])
    body = grpc_body(rls_request("test", ("bulk", "b")))
    data = fr.PREFACE + fr.settings({}) + b"".join(
        fr.headers(sid, block, False, fr.DEFAULT_MAX_FRAME) + fr.data(sid, body, True)
        for sid in range(1, 41, 2))
    connection.data_received(data)
    for _ in range(5):  # without eager start the calls, their callbacks and the flush run here
        await asyncio.sleep(0)
    assert transport.out.count(b"grpc-status") == 20
    # Our SETTINGS; the SETTINGS ACK with the answers; or, when calls ran as Tasks (3.11
    # without eager start), the answers in one more write.
    tasks = not eager and sys.version_info < (3, 12)
    assert transport.writes == 2 + tasks
    connection.connection_lost(None)
