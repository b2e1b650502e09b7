"""The circuit breaker: its states on a fake clock, then in front of a real, hung Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from sidecar.errors import StorageError
from sidecar.storage.base import Increment
from sidecar.storage.redis.breaker import CLOSED, HALF_OPEN, OPEN, Breaker
from sidecar.storage.redis.options import RedisOptions
from sidecar.storage.redis.store import RedisStore
from tests.conftest import FakeClock
from tests.support.ports import free_port
from tests.support.servers import RedisServer


def make(clock: FakeClock, failures: int = 3) -> tuple[Breaker, list[tuple[str, str]]]:
    seen: list[tuple[str, str]] = []
    breaker = Breaker("r:1", failures, 1.0, lambda e, s: seen.append((e, s)), clock)
    return breaker, seen


def test_opens_after_consecutive_failures_only(clock: FakeClock) -> None:
    breaker, seen = make(clock)
    for _ in range(2):
        breaker.failure()
    breaker.success()  # the count starts over
    for _ in range(2):
        breaker.failure()
        breaker.check()
    assert breaker.state == CLOSED
    breaker.failure()
    assert breaker.state == OPEN and seen == [("r:1", OPEN)]
    with pytest.raises(StorageError, match="circuit open"):
        breaker.check()


def test_half_open_lets_one_probe_through(clock: FakeClock) -> None:
    breaker, seen = make(clock)
    for _ in range(3):
        breaker.failure()
    clock.advance(0.999)
    with pytest.raises(StorageError):
        breaker.check()
    clock.advance(0.001)
    breaker.check()  # the probe
    assert breaker.state == HALF_OPEN
    with pytest.raises(StorageError):
        breaker.check()  # everyone else still fails fast
    breaker.failure()  # the probe failed: open for another cooldown
    assert breaker.state == OPEN
    with pytest.raises(StorageError):
        breaker.check()
    clock.advance(1.0)
    breaker.check()
    breaker.success()
    assert breaker.state == CLOSED
    breaker.check()
    assert seen == [("r:1", s) for s in (OPEN, HALF_OPEN, OPEN, HALF_OPEN, CLOSED)]


def test_a_probe_that_never_reports_does_not_wedge_it(clock: FakeClock) -> None:
    breaker, _ = make(clock)
    for _ in range(3):
        breaker.failure()
    clock.advance(1.0)
    breaker.check()  # a probe whose caller was cancelled: no success, no failure
    clock.advance(0.5)
    with pytest.raises(StorageError):
        breaker.check()
    clock.advance(0.5)
    breaker.check()  # another probe
    breaker.success()
    assert breaker.state == CLOSED


def test_zero_failures_never_opens(clock: FakeClock) -> None:
    breaker, _ = make(clock, failures=0)
    for _ in range(100):
        breaker.failure()
    breaker.check()
    assert breaker.state == CLOSED


@pytest.fixture
def pausable() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


async def timed(coro: object) -> tuple[BaseException | None, float]:
    started = time.monotonic()
    try:
        await asyncio.wait_for(coro, 5)  # type: ignore[arg-type]
    except StorageError as exc:
        return exc, time.monotonic() - started
    return None, time.monotonic() - started


@pytest.mark.redis
async def test_a_hung_redis_costs_a_timeout_only_until_the_breaker_opens(
        pausable: RedisServer) -> None:
    timeout = 0.1
    states: list[str] = []
    store = RedisStore(RedisOptions(url=pausable.url, timeout=timeout, breaker_failures=3,
                                    breaker_cooldown=0.5),
                       listener=lambda endpoint, state: states.append(state))
    inc = [Increment("k", 1, 60)]
    try:
        assert (await store.run(inc, (), 0, False))[0] == [1]
        pausable.pause()
        try:
            for _ in range(3):
                error, elapsed = await timed(store.run(inc, (), 0, False))
                assert error is not None and elapsed >= timeout * 0.9
            assert states == [OPEN]
            for _ in range(20):  # open: no waiting at all
                error, elapsed = await timed(store.run(inc, (), 0, False))
                assert error is not None and "circuit open" in str(error)
                assert elapsed < 0.005
            await asyncio.sleep(0.5)
            error, elapsed = await timed(store.ping())  # the probe, still hung: reopens
            assert error is not None and elapsed >= timeout * 0.9
            assert states == [OPEN, HALF_OPEN, OPEN]
        finally:
            pausable.resume()
        await asyncio.sleep(0.5)
        # the probe succeeds: closed again (a timed-out call may have been applied late:
        # Redis read it when it resumed, so the count is at least 2)
        assert (await store.run(inc, (), 0, False))[0][0] >= 2
        assert states == [OPEN, HALF_OPEN, OPEN, HALF_OPEN, CLOSED]
    finally:
        await store.close()


@pytest.mark.redis
async def test_refused_connections_open_it_too() -> None:
    store = RedisStore(RedisOptions(url=f"127.0.0.1:{free_port()}", timeout=0.5,
                                    breaker_failures=2, breaker_cooldown=60))
    try:
        for _ in range(2):
            error, _ = await timed(store.ping())
            assert error is not None and "unavailable" in str(error)
        error, _ = await timed(store.ping())
        assert error is not None and "circuit open" in str(error)
        assert [b.state for b in store.breakers()] == [OPEN]
    finally:
        await store.close()
