"""Leases on the real clock, through a sidecar process's HTTP port (and its gRPC port for the
rate check's read), on the memory store and on a real redis-server.

Timing is never assumed: every assertion is of what must hold given when each call was sent
and answered (the sidecar, Redis and the test share one host clock), so a slow machine widens
what is allowed and never fails a correct answer.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from tests.support.servers import RedisServer, SidecarProcess
from tests.transports.kit import descriptor, request
from tests.transports.rest.kit import LOOPBACK, write_rules

RULES = """
domain: clock
descriptors:
  - key: dead
    rate_limit: {algorithm: concurrency, max: 2, lease_ttl: 1s}
  - key: alive
    rate_limit: {algorithm: concurrency, max: 1, lease_ttl: 1s}
  - key: read
    rate_limit: {algorithm: concurrency, max: 2, lease_ttl: 60s}
"""
OK, OVER = rls_pb2.RateLimitResponse.OK, rls_pb2.RateLimitResponse.OVER_LIMIT


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def sidecar(request: pytest.FixtureRequest,
                  tmp_path: Path) -> AsyncIterator[tuple[SidecarProcess, RedisServer | None]]:
    env = {**LOOPBACK, "LOG_LEVEL": "warn"}
    server: RedisServer | None = None
    if request.param == "redis":
        server = request.getfixturevalue("redis_clean")
        # generous: a slow round trip must not turn into the failure policy's answer
        env |= {"BACKEND_TYPE": "redis", "REDIS_URL": server.url, "REDIS_TIMEOUT": "5s"}
    write_rules(tmp_path / "rules", {"clock.yaml": RULES})
    process = SidecarProcess(tmp_path / "rules", env=env)
    await asyncio.to_thread(process.start)
    yield process, server
    code = process.stop()
    assert code in (0, -15), f"the sidecar exited with {code}:\n{process.log()}"


class Api:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def acquire(self, key: str, **more: Any) -> dict[str, Any]:
        body = {"namespace": "clock", "descriptors": [[{"key": key, "value": "v"}]], **more}
        async with self.session.post(f"{self.url}/v1/leases", json=body) as resp:
            assert resp.status == 200, await resp.text()
            return dict(await resp.json())

    async def renew(self, lease_id: str) -> tuple[int, dict[str, Any]]:
        async with self.session.post(f"{self.url}/v1/leases/{lease_id}/renew") as resp:
            return resp.status, dict(await resp.json())

    async def release(self, lease_id: str) -> int:
        async with self.session.delete(f"{self.url}/v1/leases/{lease_id}") as resp:
            return resp.status

    async def metrics(self) -> str:
        async with self.session.get(f"{self.url}/metrics") as resp:
            return await resp.text()


@pytest.fixture
async def api(sidecar: tuple[SidecarProcess, RedisServer | None]) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield Api(session, sidecar[0].http_url)


def ms(text: str) -> int:
    """An answer's expires_at, in ms since the epoch."""
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
                 .timestamp() * 1000)


def store_now(answer: dict[str, Any]) -> int:
    """When the store took an allowed lease: its expiry less its time to live."""
    return ms(answer["expires_at"]) - round(answer["ttl_seconds"] * 1000)


async def test_a_dead_holders_slot_frees_after_its_ttl(
        api: Api, sidecar: tuple[SidecarProcess, RedisServer | None]) -> None:
    sent = time.time() * 1000
    first, second = await api.acquire("dead"), await api.acquire("dead")
    third = await api.acquire("dead")
    answered = time.time() * 1000
    assert first["allowed"] and second["allowed"]
    assert first["ttl_seconds"] == 1.0  # the rule's lease_ttl
    expiry = min(ms(first["expires_at"]), ms(second["expires_at"]))
    assert sent - 5 <= store_now(first) <= answered + 5
    if answered < expiry:  # both holders' slots were certainly still held
        assert not third["allowed"] and third["active"] == 2
    # the holders die: nobody renews. A slot frees once the first lease expires, not before.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        freed = await api.acquire("dead")
        if freed["allowed"]:
            assert store_now(freed) >= expiry
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the dead holders' slots never freed")
    assert (await api.renew(first["lease_id"]))[0] == 404
    server = sidecar[1]
    if server is not None:  # the expired leases are gone from Redis too
        client = server.client()
        assert client.zcard("clock_dead_v_concurrency") <= 2
        client.close()


async def test_a_renewing_holder_keeps_its_slot_for_several_ttls(api: Api) -> None:
    lease = await api.acquire("alive")
    assert lease["allowed"]
    expires, in_time, start = ms(lease["expires_at"]), 0, time.monotonic()
    while time.monotonic() - start < 3.5:  # three and a half times its 1 s time to live
        await asyncio.sleep(0.2)
        sent = time.time() * 1000
        status, renewed = await api.renew(lease["lease_id"])
        if sent < expiry_margin(expires):  # renewed before its expiry: it must hold
            assert status == 200, renewed
            assert ms(renewed["expires_at"]) >= expires
            in_time += 1
            other = await api.acquire("alive")
            answered = time.time() * 1000
            if answered < ms(renewed["expires_at"]):
                assert not other["allowed"]
        elif status != 200:  # the machine stalled past the expiry: take a new lease
            lease = await api.acquire("alive")
            if not lease["allowed"]:
                continue
            renewed = lease
        expires = ms(renewed["expires_at"])
    assert in_time >= 3
    assert await api.release(lease["lease_id"]) == 200


def expiry_margin(expires_ms: int) -> int:
    return expires_ms - 20  # host clock readings on either side of a round trip


async def test_the_rate_check_reads_what_leases_hold(
        api: Api, sidecar: tuple[SidecarProcess, RedisServer | None]) -> None:
    ids = [(await api.acquire("read"))["lease_id"] for _ in range(2)]
    async with grpc.aio.insecure_channel(sidecar[0].grpc_address) as channel:
        stub = rls_pb2_grpc.RateLimitServiceStub(channel)
        ask = request("clock", descriptor(("read", "v")))
        for _ in range(3):
            reply = await stub.ShouldRateLimit(ask, timeout=10)
            assert reply.overall_code == OVER
            status = reply.statuses[0]
            assert (status.current_limit.requests_per_unit, status.limit_remaining) == (2, 0)
        assert await api.release(ids[0]) == 200
        for _ in range(3):  # a read, however often, takes no slot
            reply = await stub.ShouldRateLimit(ask, timeout=10)
            assert reply.overall_code == OK and reply.statuses[0].limit_remaining == 0
    assert (await api.acquire("read"))["allowed"]


async def test_metrics(api: Api) -> None:
    await api.acquire("read")
    await api.acquire("read")
    await api.acquire("read")
    assert await api.release("A" * 24 + ".e30") == 404
    text = await api.metrics()

    def value(pattern: str) -> float:
        found = re.search(pattern + r" ([0-9.e+]+)", text)
        assert found, pattern
        return float(found.group(1))

    rule = 'domain="clock",key1="read",key2=""'
    assert value(r'viva_ratelimit_lease_acquires_total\{' + rule + ',outcome="allowed"\\}') == 2
    assert value(r'viva_ratelimit_lease_acquires_total\{' + rule + ',outcome="refused"\\}') == 1
    assert value(r'viva_ratelimit_leases_active\{' + rule + r'\}') == 2
    assert value(r'ratelimit_service_total_requests_total\{grpc_method="lease_acquire"\}') == 3
    assert value(r'ratelimit_service_total_requests_total\{grpc_method="lease_release"\}') == 1
    assert value(r'ratelimit_service_should_rate_limit_error_total\{err_type="not_found"\}') \
        == 1
