"""The RLS gRPC server in-process over a real channel: answers, errors, health, shutdown."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
import pytest
from envoy.service.ratelimit.v3 import rls_pb2

from sidecar.storage.algorithms import Check, Verdict
from sidecar.storage.base import Increment
from sidecar.storage.memory import MemoryStore
from tests.conftest import FakeClock
from tests.support.ports import free_port
from tests.support.servers import RedisServer
from tests.transports.kit import (
    descriptor,
    health_status,
    request,
    rls_stub,
    running,
)

Response = rls_pb2.RateLimitResponse
OK, OVER = Response.OK, Response.OVER_LIMIT
MINUTE, DAY = Response.RateLimit.MINUTE, Response.RateLimit.DAY


async def test_statuses_current_limit_and_reset(tmp_path: Path, clock: FakeClock) -> None:
    async with running(tmp_path, clock=clock) as app, rls_stub(app.grpc_address) as stub:
        reply = await stub.ShouldRateLimit(request(
            "test-domain", descriptor(("key4", "foo")), descriptor(("nomatch", "x")),
            descriptor(("three", "a")), descriptor(("free", "z"))))
    assert reply.overall_code == OK
    key4, none, three, free = reply.statuses
    assert (key4.code, key4.limit_remaining, key4.duration_until_reset.seconds) == (
        OK, 0, 86400 - 1_000_000 % 86400)
    assert (key4.current_limit.requests_per_unit, key4.current_limit.unit,
            key4.current_limit.name) == (1, DAY, "key4_rate_limit")
    assert none == Response.DescriptorStatus(code=OK)
    assert not none.HasField("current_limit") and not none.HasField("duration_until_reset")
    assert (three.current_limit.requests_per_unit, three.current_limit.unit,
            three.current_limit.name) == (3, MINUTE, "")
    assert (three.limit_remaining, three.duration_until_reset.seconds) == (2, 20)
    assert free == Response.DescriptorStatus(code=OK, limit_remaining=4294967295)
    assert not reply.response_headers_to_add


async def test_over_limit_and_reset_moves_with_the_clock(tmp_path: Path,
                                                          clock: FakeClock) -> None:
    async with running(tmp_path, clock=clock) as app, rls_stub(app.grpc_address) as stub:
        codes = [(await stub.ShouldRateLimit(request("test-domain", descriptor(("one", "a")))))
                 .overall_code for _ in range(2)]
        clock.advance(5)
        reply = await stub.ShouldRateLimit(request("test-domain", descriptor(("one", "a"))))
    assert codes == [OK, OVER]
    assert (reply.overall_code, reply.statuses[0].duration_until_reset.seconds) == (OVER, 15)


async def test_hits_addend(tmp_path: Path, clock: FakeClock) -> None:
    async with running(tmp_path, clock=clock) as app, rls_stub(app.grpc_address) as stub:
        reply = await stub.ShouldRateLimit(request("test-domain", descriptor(("three", "a")),
                                                   hits=3))
        assert (reply.overall_code, reply.statuses[0].limit_remaining) == (OK, 0)
        reply = await stub.ShouldRateLimit(request(
            "test-domain", descriptor(("three", "a"), hits=0), descriptor(("three", "b"),
                                                                          hits=2), hits=5))
        assert [(s.code, s.limit_remaining) for s in reply.statuses] == [(OK, 0), (OK, 1)]
        reply = await stub.ShouldRateLimit(request("test-domain", descriptor(("three", "a"))))
        assert reply.overall_code == OVER


async def test_response_headers_when_enabled(tmp_path: Path, clock: FakeClock) -> None:
    clock.now = 2222
    env = {"LIMIT_RESPONSE_HEADERS_ENABLED": "true"}
    async with running(tmp_path, env=env, clock=clock) as app, \
            rls_stub(app.grpc_address) as stub:
        reply = await stub.ShouldRateLimit(request(
            "test-domain", descriptor(("h", "x"), limit=(10, MINUTE), hits=11),
            descriptor(("nomatch", "y"))))
    assert [(h.key, h.value) for h in reply.response_headers_to_add] == [
        ("RateLimit-Limit", "10"), ("RateLimit-Remaining", "0"), ("RateLimit-Reset", "58")]


async def invalid(stub: object, req: rls_pb2.RateLimitRequest) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ShouldRateLimit(req)  # type: ignore[attr-defined]
    return info.value


async def test_bad_requests_are_invalid_argument(tmp_path: Path) -> None:
    async with running(tmp_path) as app, rls_stub(app.grpc_address) as stub:
        cases = [
            (request("", descriptor(("three", "a"))), "rate limit domain must not be empty"),
            (request("test-domain"), "rate limit descriptor list must not be empty"),
            (request("test-domain", descriptor(("a", "b")), descriptor(("k", "v"),
                                                                       limit=(5, 0))),
             "descriptors[1].limit.unit: 0 is not a unit"),
            (request("test-domain", descriptor(("k", "v"), limit=(5, 9))),
             "descriptors[0].limit.unit: 9 is not a unit"),
        ]
        for req, message in cases:
            error = await invalid(stub, req)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert message in str(error.details())
        # the server is still answering
        reply = await stub.ShouldRateLimit(request("test-domain", descriptor(("three", "a"))))
        assert reply.overall_code == OK
        metrics = app.sidecar.metrics.exposition().decode()
        assert 'ratelimit_service_should_rate_limit_error_total{err_type="service_error"} 4.0' \
            in metrics


async def test_store_down_is_unavailable_within_the_timeout(tmp_path: Path) -> None:
    env = {"REDIS_URL": f"127.0.0.1:{free_port()}", "REDIS_TIMEOUT": "200ms"}
    async with running(tmp_path, env=env) as app, rls_stub(app.grpc_address) as stub:
        for _ in range(2):
            started = time.monotonic()
            error = await invalid(stub, request("test-domain", descriptor(("three", "a"))))
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert "redis" in str(error.details())
            assert time.monotonic() - started < 0.2 + 0.5
        # descriptors without a counter never reach the store
        reply = await stub.ShouldRateLimit(request("test-domain", descriptor(("nomatch", "x"))))
        assert reply.overall_code == OK
        assert await health_status(app.grpc_address, "ratelimit") == "NOT_SERVING"


async def test_no_rules_loaded_is_unavailable(tmp_path: Path) -> None:
    files = {"bad.yaml": "domain: test-domain\ndescriptors:\n  - key: k\n    rate_limit: "
                         "{unit: fortnight, requests_per_unit: 1}\n"}
    env = {"FORCE_START_WITHOUT_INITIAL_CONFIG": "true"}
    async with running(tmp_path, files, env) as app, rls_stub(app.grpc_address) as stub:
        error = await invalid(stub, request("test-domain", descriptor(("k", "v"))))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert error.details() == "no rate limit configuration loaded"


async def test_health_serving(tmp_path: Path) -> None:
    async with running(tmp_path) as app:
        assert await health_status(app.grpc_address, "") == "SERVING"
        assert await health_status(app.grpc_address, "ratelimit") == "SERVING"


async def wait_health(address: str, expected: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        found = await health_status(address, "ratelimit")
        if found == expected:
            assert await health_status(address, "") == expected
            return
        assert time.monotonic() < deadline, f"health stayed {found}, expected {expected}"
        await asyncio.sleep(0.05)


@pytest.mark.redis
async def test_health_follows_the_redis_store(tmp_path: Path) -> None:
    redis = RedisServer().start()
    try:
        env = {"REDIS_URL": f"127.0.0.1:{redis.port}", "REDIS_TIMEOUT": "200ms"}
        async with running(tmp_path, env=env) as app:
            await wait_health(app.grpc_address, "SERVING", 0)
            redis.stop()
            await wait_health(app.grpc_address, "NOT_SERVING")  # the 1 s store probe
            redis = RedisServer(port=redis.port).start()
            await wait_health(app.grpc_address, "SERVING")
            async with rls_stub(app.grpc_address) as stub:
                reply = await stub.ShouldRateLimit(request("test-domain",
                                                           descriptor(("three", "a"))))
            assert reply.overall_code == OK
    finally:
        redis.stop()


class SlowStore(MemoryStore):
    """Takes ``delay`` seconds per round trip, so a call is still running when stop begins."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def run(self, increments: Sequence[Increment], checks: Sequence[Check], now_ms: int,
                  atomic: bool) -> tuple[list[int], list[Verdict]]:
        await asyncio.sleep(self.delay)
        return await super().run(increments, checks, now_ms, atomic)


async def test_graceful_shutdown_finishes_calls_in_flight(tmp_path: Path) -> None:
    async with running(tmp_path) as app, rls_stub(app.grpc_address) as stub:
        app.sidecar.engine.store = SlowStore(0.5)
        in_flight = asyncio.ensure_future(
            stub.ShouldRateLimit(request("test-domain", descriptor(("three", "a")))))
        await asyncio.sleep(0.1)
        await app.sidecar.stop()
        reply = await in_flight
        assert reply.overall_code == OK
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ShouldRateLimit(request("test-domain", descriptor(("three", "a"))),
                                       timeout=2)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_health_is_not_serving_once_stop_begins(tmp_path: Path) -> None:
    async with running(tmp_path, env={"VIVA_SHUTDOWN_DELAY": "500ms"}) as app:
        stopping = asyncio.ensure_future(app.sidecar.stop())
        await asyncio.sleep(0.05)
        assert await health_status(app.grpc_address, "ratelimit") == "NOT_SERVING"
        assert await health_status(app.grpc_address, "") == "NOT_SERVING"
        async with rls_stub(app.grpc_address) as stub:  # still answering during the delay
            reply = await stub.ShouldRateLimit(request("test-domain",
                                                       descriptor(("three", "a"))))
        assert reply.overall_code == OK
        await stopping
