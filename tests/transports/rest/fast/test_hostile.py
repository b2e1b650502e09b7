"""Hostile input on the fast HTTP/1.1 path (the gRPC transport's hostile-input tests, adapted):
slow and idle clients are closed as the general path closes them, oversized heads and bodies
and bytes that are not HTTP go to the general path (which refuses them as it always has),
a client that never reads its answers stops being read, and what a connection holds stays
bounded whatever it is fed.

The parser itself is fuzzed here through the extension (random and mutated pipelined reads
in random pieces: it never raises, never holds more than a head and a body, and hands each
request over whole); `native/fuzz` runs the same parser under cargo fuzz.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.storage.memory import MemoryStore
from sidecar.transports.http1 import Http1Options
from tests.support.paths import native_module
from tests.transports.rest.fast.wire import exchange, request
from tests.transports.rest.kit import ENGINES, Rest, serve_rest, write_rules

native = native_module()
needs_native = pytest.mark.skipif(native is None, reason="the native extension is not built")
pytestmark = needs_native

CHECK = json.dumps({"namespace": "api_requests", "identifier": "h"}).encode()
GOOD = request("POST", "/v1/check", CHECK)
FORWARD = request("GET", "/v1/forward-auth/x", headers={
    "X-Forwarded-For": "1.2.3.4", "X-RateLimit-Namespace": "api_requests"})
MAX_BODY = 64 * 1024
HEAD_BOUND = 16 * 1024



@pytest.fixture(params=ENGINES)
async def fast(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Rest]:
    """The fast path on each engine (the native one answers inside each read)."""
    options = Http1Options(keepalive_timeout=0.5, max_pending=8)
    rules = write_rules(tmp_path / "rules", unit="hour", leases=request.param == "python")
    async with serve_rest(rules, MemoryStore(), fast=True, http1=options,
                          engine=request.param) as api:
        yield api


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` within ``seconds`` (whatever it sends first)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
    return False


async def test_idle_connections_are_closed_after_the_keepalive_timeout(fast: Rest) -> None:
    def run() -> None:
        quiet = connect(fast.port)
        used = connect(fast.port)
        used.sendall(GOOD)
        assert used.recv(65536).startswith(b"HTTP/1.1 200 OK")
        assert closed_within(quiet, 3)
        assert closed_within(used, 3)

    await asyncio.to_thread(run)
    assert not fast.fast_site().connections


async def test_a_slowloris_head_is_closed_like_an_idle_connection(fast: Rest) -> None:
    def run() -> float:
        sock = connect(fast.port)
        started = time.monotonic()
        # A byte every 50 ms for up to 4 s: bytes arriving do not keep the connection open;
        # only an answer does, so it is closed about 0.5 s after it was opened.
        for byte in (GOOD * 2)[:80]:
            try:
                sock.sendall(bytes([byte]))
                sock.settimeout(0.05)
                if sock.recv(1) == b"":
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        closed_at = time.monotonic() - started
        sock.close()
        return closed_at

    assert await asyncio.to_thread(run) < 2.5


async def test_a_thousand_idle_connections_are_all_closed(tmp_path: Path) -> None:
    options = Http1Options(keepalive_timeout=3.0)
    async with serve_rest(write_rules(tmp_path / "rules"), MemoryStore(), fast=True,
                          http1=options) as api:
        socks = await asyncio.to_thread(lambda: [connect(api.port) for _ in range(1000)])
        try:
            site = api.fast_site()
            for _ in range(100):
                if len(site.connections) == 1000:
                    break
                await asyncio.sleep(0.02)
            assert len(site.connections) == 1000
            assert sum(c.parser.buffered for c in site.connections) == 0
            for _ in range(100):
                if not site.connections:
                    break
                await asyncio.sleep(0.1)
            assert not site.connections
            got = await asyncio.to_thread(exchange, api.port, GOOD, 1)
            assert got.statuses == [200]  # and the server still answers
        finally:
            for sock in socks:
                sock.close()


@pytest.mark.parametrize("size", [9_000, 64 * 1024, 1024 * 1024])
async def test_oversized_heads_are_refused_as_the_general_path_refuses_them(
        fast: Rest, size: int) -> None:
    big = request("GET", "/v1/forward-auth", headers={"X-Big": "b" * size})
    got = await asyncio.to_thread(exchange, fast.port, big, 1)
    assert got.statuses == [400]
    assert b"Got more than 8190 bytes" in got.raw
    assert got.closed


async def test_a_body_over_the_limit_is_refused_before_it_is_all_sent(fast: Rest) -> None:
    def run() -> Any:
        sock = connect(fast.port)
        sock.sendall(b"POST /v1/check HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"4000\r\n" + b" " * 0x4000 + b"\r\n"
        for _ in range(MAX_BODY // 0x4000 + 1):
            sock.sendall(chunk)
        sock.settimeout(5)
        return sock.recv(65536)

    answer = await asyncio.to_thread(run)
    assert answer.startswith(b"HTTP/1.1 413 ")


@pytest.mark.parametrize("garbage", [
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(256)),
    b"GET / HTTP/1.1\r\n" + bytes(range(1, 32)) + b"\r\n\r\n",
    b"\x00" * 20_000,
    b"POST /v1/check HTTP/1.1\r\nHost: s\r\nContent-Length: -1\r\n\r\n",
    b"POST /v1/check HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
])
async def test_garbage_gets_the_general_path_refusal(fast: Rest, garbage: bytes) -> None:
    got = await asyncio.to_thread(exchange, fast.port, garbage, 1)
    assert got.statuses == [400]
    assert got.closed
    assert (await asyncio.to_thread(exchange, fast.port, GOOD, 1)).statuses == [200]


async def test_a_client_that_does_not_read_its_answers_stops_being_read(fast: Rest) -> None:
    data = FORWARD * 200_000  # 22 MB: more than the kernel buffers hold

    def send() -> tuple[socket.socket, int]:
        sock = connect(fast.port)
        sock.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 3
        while sent < len(data) and time.monotonic() < deadline:
            try:
                sent += sock.send(data[sent:sent + 65536])
            except BlockingIOError:
                time.sleep(0.01)
        return sock, sent

    sock, sent = await asyncio.to_thread(send)
    try:
        assert sent < len(data), "the server read everything without its answers being read"
        (conn,) = fast.fast_site().connections
        assert conn.transport is not None and not conn.transport.is_reading()
        # max_pending, plus at most one read's requests (a read is at most 256 KiB)
        assert conn.parser.pending <= 8 + 256 * 1024 // len(FORWARD)
        assert conn.transport.get_write_buffer_size() < 8 * 1024 * 1024
    finally:
        sock.close()


async def test_pipelined_answers_keep_their_order_across_many_reads(fast: Rest) -> None:
    bodies = [json.dumps({"namespace": "api_requests", "identifier": f"o{i}"}).encode()
              for i in range(300)]
    data = b"".join(request("POST", "/v1/check", b) for b in bodies)

    def run() -> Any:
        pieces = [data[i:i + 777] for i in range(0, len(data), 777)]
        return exchange(fast.port, pieces, len(bodies), timeout=20)

    got = await asyncio.to_thread(run)
    assert got.statuses == [200] * len(bodies)
    assert [a.count(b'"remaining": 2') for a in got.answers] == [1] * len(bodies)


async def test_the_server_stops_with_fast_connections_open(tmp_path: Path) -> None:
    async with serve_rest(write_rules(tmp_path / "rules"), MemoryStore(), fast=True) as api:
        socks = await asyncio.to_thread(lambda: [connect(api.port) for _ in range(20)])
        used = await asyncio.to_thread(exchange, api.port, GOOD, 1)
        assert used.statuses == [200]
        for _ in range(50):
            if len(api.fast_site().connections) == 20:
                break
            await asyncio.sleep(0.05)
        assert api.runner is not None
        started = time.monotonic()
        await api.runner.cleanup()
        assert time.monotonic() - started < 2
        for sock in socks:
            assert closed_within(sock, 2)
            sock.close()


# -- the parser, fuzzed through the extension ------------------------------------------------

REQUESTS = [GOOD, FORWARD, request("POST", "/json", b'{"domain": "d"}'),
            request("HEAD", "/v1/forward-auth"), request("GET", "/metrics"),
            b"POST /v1/report HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n",
            b"POST /v1/check HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}",
            b"POST /v1/check HTTP/1.1\r\nHost: s\r\nExpect: 100-continue\r\nContent-Length: 2"
            b"\r\n\r\n{}"]


def http1_config() -> Any:
    assert native is not None
    return native.Http1Config(
        full=True, max_body_bytes=1024, json_max_body_bytes=2048, max_descriptors=20,
        max_entries=10, max_hits=100, identifier_header="X-Forwarded-For", xff_index=1,
        namespace_header="X-RateLimit-Namespace", default_namespace="", hash_identifier=False,
        deny_status=429, headers=["ietf"], server="S", reasons=[(200, "OK")])


@st.composite
def mutated_reads(draw: st.DrawFn) -> list[bytes]:
    data = bytearray(b"".join(draw(st.lists(st.sampled_from(REQUESTS), min_size=1,
                                            max_size=6))))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(data)))
        match draw(st.integers(0, 2)):
            case 0:
                data[at:at + 1] = bytes([draw(st.integers(0, 255))])
            case 1:
                data[at:at] = draw(st.binary(min_size=1, max_size=8))
            case _:
                del data[at:at + draw(st.integers(1, 8))]
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    return [bytes(data[a:b]) for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def feed_checked(reads: list[bytes]) -> None:
    assert native is not None
    conn = native.Http1Connection(http1_config())
    for data in reads:
        ready, items, handoff, closed, _ = conn.feed(data)
        assert ready in (b"", b"HTTP/1.1 100 Continue\r\n\r\n" * ready.count(b"100"))
        for item in items:
            assert isinstance(item, native.Http1Call | native.Http1Referral)
            if isinstance(item, native.Http1Call):
                answer = item.answer(1, [(1, None, 0, 0, None)] * len(item.descriptors), [],
                                     0.0)
                assert answer.startswith(b"HTTP/1.")
            else:
                answer = item.frame(200, [("Content-Type", "text/plain")], b"ok")
            conn.fill(item.slot, answer)
        assert conn.pending == 0  # every answer made went out, in order
        # a head and a body at most, and nothing once the connection is the general path's
        assert conn.buffered <= HEAD_BOUND + 21 * 2048 + len(data)
        if handoff is not None or closed:
            assert conn.feed(GOOD) == (b"", [], None, True, 0)
            return


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_reads())
def test_parser_on_mutated_pipelined_reads(reads: list[bytes]) -> None:
    feed_checked(reads)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=512), min_size=1, max_size=6))
def test_parser_on_random_bytes(reads: list[bytes]) -> None:
    feed_checked(reads)
