"""Real gRPC clients against the fast transport: grpcio (sync and aio), and the same calls
against the grpcio transport (RateLimitServicer on grpc.aio) answer byte for byte the same."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sidecar.h2 import H2Options
from sidecar.observability.health import Health
from sidecar.observability.metrics import Metrics
from sidecar.service import RateLimitService
from sidecar.transports.grpcio import RateLimitServicer
from tests.h2.conftest import ThreadedServer, make_engine
from tests.h2.engines import SlowEngine
from tests.h2.wire import RLS_PATH, rls_request

# Also on the whole native path: the native engine answering inside Rust (conftest.py).
RUST_ENGINE = True

Serve = Callable[..., ThreadedServer]
Request = rls_pb2.RateLimitRequest
OK, OVER = rls_pb2.RateLimitResponse.OK, rls_pb2.RateLimitResponse.OVER_LIMIT


def request(domain: str = "test", key: str = "client", value: str = "a", hits: int = 0
            ) -> Any:
    return Request.FromString(rls_request(domain, (key, value), hits=hits))


@pytest.fixture
def channel(server: ThreadedServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


def test_sync_client_should_rate_limit(channel: grpc.Channel) -> None:
    stub = rls_pb2_grpc.RateLimitServiceStub(channel)
    codes = [stub.ShouldRateLimit(request(value="sync"), timeout=5).overall_code
             for _ in range(4)]
    assert codes == [OK, OK, OK, OVER]


def test_sync_client_errors(channel: grpc.Channel) -> None:
    stub = rls_pb2_grpc.RateLimitServiceStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.ShouldRateLimit(request(domain=""), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "rate limit domain must not be empty"
    unknown = channel.unary_unary("/envoy.service.ratelimit.v3.RateLimitService/Other")
    with pytest.raises(grpc.RpcError) as info:
        unknown(b"", timeout=5)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_sync_client_health(channel: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "ratelimit"):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as info:
        stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_sync_client_message_too_large(serve: Serve) -> None:
    server = serve(options=H2Options(max_message_size=64 * 1024))
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = rls_pb2_grpc.RateLimitServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.ShouldRateLimit(request(value="v" * 200_000), timeout=5)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert stub.ShouldRateLimit(request(value="small"), timeout=5).overall_code == OK


def test_sync_client_compression_is_refused(server: ThreadedServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}",
                               compression=grpc.Compression.Gzip) as channel:
        stub = rls_pb2_grpc.RateLimitServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.ShouldRateLimit(request(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_aio_client_concurrent_calls(server: ThreadedServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = rls_pb2_grpc.RateLimitServiceStub(channel)
        replies = await asyncio.gather(*(
            stub.ShouldRateLimit(request(key="bulk", value=str(i)), timeout=5)
            for i in range(300)))
        assert all(r.overall_code == OK for r in replies)
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service="ratelimit"))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_aio_client_errors_and_deadline(serve: Serve) -> None:
    server = serve(SlowEngine(2.0))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = rls_pb2_grpc.RateLimitServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ShouldRateLimit(request(), timeout=0.2)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await channel.unary_unary("/no.Such/Method")(b"", timeout=5)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_aio_client_sees_graceful_shutdown(serve: Serve) -> None:
    server = serve(SlowEngine(0.3))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = rls_pb2_grpc.RateLimitServiceStub(channel)
        call = stub.ShouldRateLimit(request(key="bulk"), timeout=5)
        await asyncio.sleep(0.1)
        stopping = server.stop_async(5.0)
        reply = await call  # in flight when the drain began: still answered
        assert reply.overall_code == OK
        await asyncio.wrap_future(stopping)


# -- the same answers from both transports ---------------------------------------------------


class GrpcioServer:
    """RateLimitServicer on grpc.aio, in a thread with its own loop."""

    def __init__(self, engine: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.server: Any = None
        self.port = 0
        ready = threading.Event()

        async def start() -> None:
            self.server = grpc.aio.server()
            rls_pb2_grpc.add_RateLimitServiceServicer_to_server(
                RateLimitServicer(RateLimitService(engine, Metrics())), self.server)
            self.port = self.server.add_insecure_port("127.0.0.1:0")
            await self.server.start()
            ready.set()

        def run() -> None:
            self.loop.run_until_complete(start())
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(0), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


PARITY_RULES = """\
domain: test
descriptors:
  - key: client
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: tier
    value: gold
    rate_limit: {unit: hour, requests_per_unit: 5, name: gold}
  - key: open
    rate_limit: {unlimited: true}
"""

PARITY_CALLS: list[tuple[str, bytes]] = [
    ("one", rls_request("test", ("client", "x"))),
    ("two", rls_request("test", ("client", "x"))),
    ("over", rls_request("test", ("client", "x"))),
    ("hits", rls_request("test", ("tier", "gold"), hits=3)),
    ("hits over", rls_request("test", ("tier", "gold"), hits=3)),
    ("unlimited", rls_request("test", ("open", "door"))),
    ("no match", rls_request("test", ("nothing", "here"))),
    ("unknown domain", rls_request("elsewhere", ("client", "x"))),
    ("empty domain", rls_request("", ("client", "x"))),
    ("no descriptors", Request(domain="test").SerializeToString()),
]


def answers(port: int) -> list[tuple[str, Any, str, bytes]]:
    out = []
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(RLS_PATH)
        for name, message in PARITY_CALLS:
            try:
                out.append((name, grpc.StatusCode.OK, "", call(message, timeout=5)))
            except grpc.RpcError as exc:
                out.append((name, exc.code(), exc.details(), b""))
    return out


def test_both_transports_answer_identically(serve: Serve) -> None:
    fast = serve(make_engine(PARITY_RULES))
    reference = GrpcioServer(make_engine(PARITY_RULES))
    try:
        expected = answers(reference.port)
    finally:
        reference.stop()
    assert answers(fast.port) == expected
    assert {code for _, code, _, _ in expected} == {grpc.StatusCode.OK,
                                                    grpc.StatusCode.INVALID_ARGUMENT}


def test_health_object_drives_grpc_health(serve: Serve) -> None:
    health = Health()
    server = serve(health=health)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        health.set("store", False)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
