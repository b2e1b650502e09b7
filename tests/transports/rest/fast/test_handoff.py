"""Handing a connection from the fast HTTP/1.1 path to aiohttp: answers keep their order when
the fast path's are still being decided or not yet read by the client, aiohttp then serves the
rest of the connection (keep-alive, pipelining, the check endpoints too), and stopping the
server closes connections on both sides. The byte-level comparison of every handed-off case is
in test_parity.py."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path

import pytest

from sidecar.storage.memory import MemoryStore
from sidecar.storage.redis.options import RedisOptions
from sidecar.storage.redis.store import RedisStore
from tests.support.paths import native_module
from tests.support.servers import RedisServer
from tests.transports.rest.fast.wire import exchange, request, split_answers
from tests.transports.rest.kit import ENGINES, serve_rest, write_rules

pytestmark = pytest.mark.skipif(native_module() is None, reason="the native extension is not built")

CHECK = request("POST", "/v1/check", json.dumps(
    {"namespace": "api_requests", "identifier": "handoff"}).encode())
HEALTH = request("GET", "/healthcheck")
FORWARD = request("GET", "/v1/forward-auth", headers={
    "X-Forwarded-For": "1.2.3.4", "X-RateLimit-Namespace": "shop"})



@pytest.mark.redis
@pytest.mark.parametrize("engine", ENGINES)
async def test_answers_being_decided_go_out_before_the_handed_off_ones(
        tmp_path: Path, redis_clean: RedisServer, engine: str) -> None:
    store = RedisStore(RedisOptions(url=redis_clean.url, timeout=5.0))
    rules = write_rules(tmp_path / "rules", unit="hour", leases=engine == "python")
    async with serve_rest(rules, store, fast=True, engine=engine) as api:
        assert (await asyncio.to_thread(exchange, api.port, CHECK, 1)).statuses == [200]

        def run() -> list[bytes]:
            with socket.create_connection(("127.0.0.1", api.port), timeout=5) as sock:
                redis_clean.pause()  # the check waits for Redis...
                try:
                    sock.sendall(CHECK)
                    time.sleep(0.3)
                    sock.sendall(HEALTH + CHECK)  # ...while the rest is handed over
                    time.sleep(0.3)
                finally:
                    redis_clean.resume()
                got = exchange_on(sock, 3)
            return got

        answers = await asyncio.to_thread(run)
    assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 3
    assert b'"remaining": 1' in answers[0]  # decided on the fast path, before the others
    assert answers[1].endswith(b"\r\n\r\nOK")
    assert b'"remaining": 0' in answers[2]  # answered by aiohttp after the hand-over


def exchange_on(sock: socket.socket, count: int, timeout: float = 20.0) -> list[bytes]:
    """The next ``count`` answers on ``sock``."""
    answers: list[bytes] = []
    rest = b""
    deadline = time.monotonic() + timeout
    while len(answers) < count:
        assert time.monotonic() < deadline, f"{len(answers)} of {count} answers came"
        chunk = sock.recv(1 << 20)
        assert chunk, f"closed after {len(answers)} of {count} answers"
        more, rest = split_answers(rest + chunk, [])
        answers += more
    return answers


@pytest.mark.parametrize("engine", ENGINES)
async def test_a_hand_over_waits_for_a_client_that_reads_late(tmp_path: Path,
                                                               engine: str) -> None:
    rules = write_rules(tmp_path / "rules", unit="hour", leases=engine == "python")
    async with serve_rest(rules, MemoryStore(), fast=True, engine=engine) as api:
        count = 20_000

        def run() -> list[bytes]:
            with socket.create_connection(("127.0.0.1", api.port), timeout=20) as sock:
                sender = threading.Thread(target=sock.sendall, args=(FORWARD * count + HEALTH,))
                sender.start()
                time.sleep(1.0)  # the answers pile up unread: the server stops reading
                answers = exchange_on(sock, count + 1)
                sender.join()
                return answers

        answers = await asyncio.to_thread(run)
        assert len(answers) == count + 1
        assert all(a.startswith(b"HTTP/1.1 200 OK") for a in answers)
        assert answers[-1].endswith(b"\r\n\r\nOK")
        assert api.fast_site().handoffs == 1


async def test_aiohttp_serves_the_rest_of_a_handed_over_connection(tmp_path: Path) -> None:
    async with serve_rest(write_rules(tmp_path / "rules", unit="hour"), MemoryStore(),
                          fast=True) as api:

        def run() -> list[bytes]:
            with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:
                sock.sendall(CHECK)
                first = exchange_on(sock, 1)
                sock.sendall(HEALTH)
                second = exchange_on(sock, 1)
                sock.sendall(CHECK + FORWARD + CHECK)  # pipelined, now to aiohttp
                return first + second + exchange_on(sock, 3)

        answers = await asyncio.to_thread(run)
        assert [a.split(b" ", 2)[1] for a in answers] == [b"200"] * 5
        assert [a.count(b'"remaining": ') for a in answers] == [1, 0, 1, 1, 1]
        assert b'"remaining": 0' in answers[4]
        site = api.fast_site()
        assert site.handoffs == 1 and not site.connections


async def test_stopping_closes_handed_over_connections(tmp_path: Path) -> None:
    async with serve_rest(write_rules(tmp_path / "rules"), MemoryStore(), fast=True) as api:
        sock = socket.create_connection(("127.0.0.1", api.port), timeout=5)
        try:
            await asyncio.to_thread(sock.sendall, HEALTH)
            assert (await asyncio.to_thread(exchange_on, sock, 1))[0].endswith(b"OK")
            assert api.runner is not None
            started = time.monotonic()
            await api.runner.cleanup()
            assert time.monotonic() - started < 3
            sock.settimeout(3)
            assert await asyncio.to_thread(sock.recv, 1) == b""
        finally:
            sock.close()
