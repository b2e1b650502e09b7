"""The failure policy, per domain and global, against a Redis that is really not there.

The store is a RedisStore on a closed loopback port (connection refused: fast), so every
decision below is taken because the store failed, exactly as in production.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from sidecar.errors import StorageError
from sidecar.limiter.engine import Engine
from sidecar.limiter.options import EngineOptions
from sidecar.limiter.policy import FailureHandler
from sidecar.model import UNLIMITED_REMAINING, Code
from sidecar.observability.metrics import Metrics
from sidecar.storage.memory import MemoryStore
from sidecar.storage.redis.options import RedisOptions
from sidecar.storage.redis.store import RedisStore
from tests.conftest import FakeClock
from tests.limiter.kit import RecordingStats, desc, make_rules
from tests.support.ports import free_port
from tests.support.servers import RedisServer

pytestmark = pytest.mark.redis

OK, OVER = Code.OK, Code.OVER_LIMIT

RULES = """
domain: plain
descriptors:
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 3}
  - key: tokens
    rate_limit: {unit: minute, requests_per_unit: 3, algorithm: token_bucket}
  - key: log
    rate_limit: {unit: second, requests_per_unit: 2, algorithm: sliding_log}
  - key: shadowed
    shadow_mode: true
    rate_limit: {unit: minute, requests_per_unit: 3}
  - key: free
    rate_limit: {unlimited: true}
"""

OPEN = """
domain: open
failure_policy: allow
descriptors:
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 3}
"""

CLOSED = """
domain: closed
failure_policy: deny
descriptors:
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 3}
"""

STRICT = """
domain: strict
failure_policy: unavailable
descriptors:
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 3}
"""


@pytest.fixture
async def dead_store() -> AsyncIterator[RedisStore]:
    store = RedisStore(RedisOptions(url=f"127.0.0.1:{free_port()}", timeout=0.5,
                                    breaker_failures=0))
    yield store
    await store.close()


def engine_with(store: RedisStore, default: str, clock: FakeClock,
                metrics: Metrics | None = None, stats: RecordingStats | None = None) -> Engine:
    policy = FailureHandler(default, MemoryStore(), metrics.policy_decision if metrics else None)
    engine = Engine(store, EngineOptions(expiration_jitter_max_seconds=0), stats, clock,
                    policy=policy)
    engine.set_rules(make_rules(RULES, OPEN, CLOSED, STRICT))
    return engine


def decisions(metrics: Metrics, domain: str, policy: str) -> float:
    value = metrics.registry.get_sample_value(
        "viva_ratelimit_failure_policy_decisions_total", {"domain": domain, "policy": policy})
    return value or 0.0


async def test_unavailable_is_the_default_and_raises(dead_store: RedisStore,
                                                     clock: FakeClock) -> None:
    metrics = Metrics()
    engine = Engine(dead_store, clock=clock,
                    policy=FailureHandler(fallback=MemoryStore(), listener=metrics.policy_decision))
    engine.set_rules(make_rules(RULES))
    with pytest.raises(StorageError):
        await engine.should_rate_limit("plain", [desc(("user", "a"))])
    assert decisions(metrics, "plain", "unavailable") == 1
    # a request that needs no counter never touches the store, so never fails
    d = await engine.should_rate_limit("plain", [desc(("free", "x")), desc(("nomatch", "y"))])
    assert d.overall == OK and d.statuses[0].remaining == UNLIMITED_REMAINING


async def test_allow_answers_ok_as_if_the_window_were_new(dead_store: RedisStore,
                                                          clock: FakeClock) -> None:
    metrics, stats = Metrics(), RecordingStats()
    engine = engine_with(dead_store, "allow", clock, metrics, stats)
    for _ in range(5):
        d = await engine.should_rate_limit("plain", [
            desc(("user", "a")), desc(("tokens", "a"), hits=2), desc(("free", "x")),
            desc(("nomatch", "y"))])
        assert d.overall == OK
        assert [(s.code, s.remaining) for s in d.statuses] == [
            (OK, 2), (OK, 1), (OK, UNLIMITED_REMAINING), (OK, 0)]
        assert d.statuses[0].limit is not None and d.statuses[0].reset_seconds > 0
    assert decisions(metrics, "plain", "allow") == 5
    assert stats.of("plain.user")["total"] == 0  # nothing was counted anywhere


async def test_deny_answers_over_limit_but_shadow_rules_stay_ok(dead_store: RedisStore,
                                                               clock: FakeClock) -> None:
    metrics = Metrics()
    engine = engine_with(dead_store, "deny", clock, metrics)
    d = await engine.should_rate_limit("plain", [desc(("user", "a")), desc(("free", "x"))])
    assert d.overall == OVER
    assert [(s.code, s.remaining) for s in d.statuses] == [
        (OVER, 0), (OK, UNLIMITED_REMAINING)]
    d = await engine.should_rate_limit("plain", [desc(("shadowed", "a"))])
    assert (d.overall, d.statuses[0].code, d.statuses[0].remaining) == (OK, OK, 0)
    assert decisions(metrics, "plain", "deny") == 2


async def test_local_counts_in_memory_until_redis_returns(clock: FakeClock) -> None:
    port = free_port()
    store = RedisStore(RedisOptions(url=f"127.0.0.1:{port}", timeout=0.5, breaker_failures=0))
    metrics = Metrics()
    engine = engine_with(store, "local", clock, metrics)
    server = None
    try:
        codes = [(await engine.should_rate_limit("plain", [desc(("user", "a"))])).overall
                 for _ in range(4)]
        assert codes == [OK, OK, OK, OVER]  # the whole limit, enforced by this instance
        tokens = await engine.should_rate_limit("plain", [desc(("tokens", "a"), hits=3)])
        assert (tokens.overall, tokens.statuses[0].remaining) == (OK, 0)
        assert decisions(metrics, "plain", "local") == 5
        server = RedisServer(port=port).start()
        d = await engine.should_rate_limit("plain", [desc(("user", "a"))])
        # back on Redis, which never saw the local counts: they are not merged back
        assert (d.overall, d.statuses[0].remaining) == (OK, 2)
        assert decisions(metrics, "plain", "local") == 5
    finally:
        await store.close()
        if server is not None:
            server.stop()


async def test_local_keeps_algorithm_state_a_whole_window(dead_store: RedisStore,
                                                          clock: FakeClock) -> None:
    # The fallback store expires an algorithm's state to the millisecond, as PEXPIRE does.
    engine = engine_with(dead_store, "local", clock)
    clock.now = 1_000_000.5
    codes = [(await engine.should_rate_limit("plain", [desc(("log", "a"))])).overall
             for _ in range(3)]
    assert codes == [OK, OK, OVER]
    clock.now = 1_000_001.2  # past a whole second, not yet a window after the entries
    d = await engine.should_rate_limit("plain", [desc(("log", "a"))])
    assert (d.overall, d.statuses[0].reset_ms) == (OVER, 300)
    clock.now = 1_000_001.5
    assert (await engine.should_rate_limit("plain", [desc(("log", "a"))])).overall == OK


async def test_the_domain_policy_beats_the_global_one(dead_store: RedisStore,
                                                      clock: FakeClock) -> None:
    metrics = Metrics()
    engine = engine_with(dead_store, "local", clock, metrics)

    async def overall(domain: str) -> Code:
        return (await engine.should_rate_limit(domain, [desc(("user", "a"))])).overall

    assert await overall("open") == OK
    assert await overall("closed") == OVER
    with pytest.raises(StorageError):
        await overall("strict")
    assert await overall("plain") == OK  # the global "local"
    assert [decisions(metrics, d, p) for d, p in (
        ("open", "allow"), ("closed", "deny"), ("strict", "unavailable"),
        ("plain", "local"))] == [1, 1, 1, 1]


async def test_decisions_are_logged_at_a_bounded_rate(dead_store: RedisStore, clock: FakeClock,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    mono = FakeClock(100.0)
    engine = Engine(dead_store, clock=clock,
                    policy=FailureHandler("allow", MemoryStore(), log_interval=10.0, clock=mono))
    engine.set_rules(make_rules(RULES, CLOSED))
    caplog.set_level(logging.WARNING, logger="sidecar.policy")
    for _ in range(50):
        await engine.should_rate_limit("plain", [desc(("user", "a"))])
        await engine.should_rate_limit("closed", [desc(("user", "a"))])
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2  # one per domain and policy
    assert "'plain'" in lines[0] and "'allow'" in lines[0] and "(1 decision(s)" in lines[0]
    mono.advance(9.9)
    await engine.should_rate_limit("plain", [desc(("user", "a"))])
    assert len(caplog.records) == 2
    mono.advance(0.1)
    await engine.should_rate_limit("plain", [desc(("user", "a"))])
    assert len(caplog.records) == 3
    assert "(51 decision(s) since the last such line)" in caplog.records[-1].getMessage()
