"""The local over-limit cache (LOCAL_CACHE_SIZE_IN_BYTES), on the memory store and real Redis.

Cached refusals stop reaching Redis (``INFO commandstats`` does not move), answers stay those
the store would give, and the window rolling over (fake clock) ends them.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sidecar.limiter.engine import Engine
from sidecar.limiter.local_cache import ENTRY_OVERHEAD, LocalCache
from sidecar.limiter.options import EngineOptions
from sidecar.model import Code
from sidecar.storage.base import Increment, Store
from sidecar.storage.memory import MemoryStore
from sidecar.storage.redis.options import RedisOptions
from sidecar.storage.redis.store import RedisStore
from tests.conftest import FakeClock
from tests.limiter.kit import RecordingStats, desc, make_rules
from tests.storage.test_conformance import command_calls
from tests.support.servers import RedisServer
from tests.transports.kit import descriptor, request, rls_stub, running

OK, OVER = Code.OK, Code.OVER_LIMIT

RULES = """
domain: d
descriptors:
  - key: hourly
    rate_limit: {unit: hour, requests_per_unit: 15}
  - key: shadowed
    shadow_mode: true
    rate_limit: {unit: hour, requests_per_unit: 15}
  - key: three
    rate_limit: {unit: minute, requests_per_unit: 3}
  - key: tokens
    rate_limit: {unit: second, requests_per_unit: 2, algorithm: token_bucket, burst: 4}
  - key: sliding_counted
    rate_limit: {unit: minute, requests_per_unit: 2, algorithm: sliding_window,
                 count_rejected: true}
"""

ATOMIC = """
domain: a
atomic: true
descriptors:
  - key: small
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: big
    rate_limit: {unit: minute, requests_per_unit: 5}
"""


class Target:
    """A store under test, with a view of what reached it."""

    def __init__(self, store: Store, server: RedisServer | None) -> None:
        self.store = store
        self.server = server

    def calls(self, everything: bool = False) -> dict[str, int]:
        """Commands Redis ran so far (the counting ones, unless ``everything``)."""
        if self.server is None:
            return {}
        client = self.server.client()
        try:
            return {k: v for k, v in command_calls(client).items()
                    if everything or k in ("incrby", "expire", "evalsha")}
        finally:
            client.close()

    def seed(self, key: str, value: int) -> None:
        if self.server is None:
            assert isinstance(self.store, MemoryStore)
            entry = self.store._counters.get(key)
            if entry is None:
                self.store.increment_now([Increment(key, value, 3600)], 1_000_000)
            else:
                entry[0] = value
        else:
            client = self.server.client()
            client.set(key, value, ex=3600)
            client.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def target(request: pytest.FixtureRequest) -> AsyncIterator[Target]:
    if request.param == "memory":
        yield Target(MemoryStore(), None)
        return
    server: RedisServer = request.getfixturevalue("redis_clean")
    store = RedisStore(RedisOptions(url=server.url, timeout=2.0))
    yield Target(store, server)
    await store.close()


def engine_for(target: Target, clock: FakeClock, stats: RecordingStats | None = None,
               size: int = 1 << 20, hits: list[Any] | None = None, *texts: str) -> Engine:
    cache = LocalCache(size, (lambda *a: hits.append(a)) if hits is not None else None)
    engine = Engine(target.store, EngineOptions(expiration_jitter_max_seconds=0), stats, clock,
                    local_cache=cache)
    engine.set_rules(make_rules(*(texts or (RULES,))))
    return engine


async def one(engine: Engine, key: str, value: str = "v", hits: int | None = None,
              domain: str = "d") -> Any:
    return await engine.should_rate_limit(domain, [desc((key, value), hits=hits)])


async def test_tc27_fourth_call_is_answered_locally(target: Target, clock: FakeClock) -> None:
    clock.now = 1_000_000  # the hour window starts at 997200
    stats, hits = RecordingStats(), []
    engine = engine_for(target, clock, stats, hits=hits)
    key = "d_hourly_v_997200"
    results = []
    for seed in (10, 12, 15):
        target.seed(key, seed)
        results.append(await one(engine, "hourly"))
    before = target.calls()
    results.append(await one(engine, "hourly"))
    assert target.calls() == before  # the fourth reached no store command
    assert [(r.overall, r.statuses[0].remaining) for r in results] == [
        (OK, 4), (OK, 2), (OVER, 0), (OVER, 0)]
    assert results[3].statuses[0].reset_seconds == 3600 - 2800
    assert stats.of("d.hourly") == {"total": 4, "over": 2, "near": 1, "within": 2,
                                    "shadow": 0}
    assert hits == [("d", "d.hourly", 1)]  # over_limit_with_local_cache = 1
    cache = engine.local_cache
    assert cache is not None and (cache.hits, cache.misses, len(cache)) == (1, 3, 1)


async def test_tc27_shadow_variant(target: Target, clock: FakeClock) -> None:
    clock.now = 1_000_000
    stats = RecordingStats()
    engine = engine_for(target, clock, stats)
    results = []
    for seed in (10, 12, 15):
        target.seed("d_shadowed_v_997200", seed)
        results.append(await one(engine, "shadowed"))
    results.append(await one(engine, "shadowed"))
    assert [(r.overall, r.statuses[0].remaining) for r in results] == [
        (OK, 4), (OK, 2), (OK, 0), (OK, 0)]
    assert stats.of("d.shadowed")["shadow"] == 2
    assert engine.local_cache is not None and engine.local_cache.hits == 1


async def test_a_flood_stops_reaching_redis_until_the_window_rolls(target: Target,
                                                                   clock: FakeClock) -> None:
    clock.now = 1_000_020  # minute window [1000020, 1000080)
    engine = engine_for(target, clock)
    assert [(await one(engine, "three")).overall for _ in range(4)] == [OK, OK, OK, OVER]
    before = target.calls()
    for _ in range(100):
        clock.advance(0.5)
        assert (await one(engine, "three")).overall == OVER
    assert target.calls() == before
    clock.now = 1_000_080  # the next window: a new key, Redis counts again
    d = await one(engine, "three")
    assert (d.overall, d.statuses[0].remaining) == (OK, 2)
    if target.server is not None:
        assert target.calls()["incrby"] == before["incrby"] + 1


async def test_a_refused_bucket_is_cached_until_it_would_allow(target: Target,
                                                               clock: FakeClock) -> None:
    engine = engine_for(target, clock)
    assert [(await one(engine, "tokens")).overall for _ in range(5)] == [OK] * 4 + [OVER]
    before = target.calls()
    d = await one(engine, "tokens")
    assert (d.overall, d.statuses[0].reset_ms) == (OVER, 500)  # answered from the cache
    assert await one(engine, "tokens", hits=0) is not None  # a peek is smaller: not cached
    assert target.calls().get("evalsha", 0) == before.get("evalsha", 0) + (
        1 if target.server is not None else 0)
    clock.advance(0.499)
    assert (await one(engine, "tokens")).overall == OVER
    clock.advance(0.001)  # exactly when one token is back: the store answers, and allows
    d = await one(engine, "tokens")
    assert (d.overall, d.statuses[0].remaining) == (OK, 0)


async def test_counted_refusals_of_a_sliding_window_are_not_cached(target: Target,
                                                                   clock: FakeClock) -> None:
    engine = engine_for(target, clock)
    for _ in range(5):
        await one(engine, "sliding_counted")
    assert engine.local_cache is not None and len(engine.local_cache) == 0


async def test_an_atomic_request_with_a_cached_key_charges_nothing(target: Target,
                                                                   clock: FakeClock) -> None:
    engine = engine_for(target, clock, None, 1 << 20, None, ATOMIC)

    async def both() -> Any:
        return await engine.should_rate_limit("a", [desc(("small", "x")), desc(("big", "x"))])

    assert (await both()).overall == OK
    d = await both()  # small refused (and cached), big untouched
    assert [s.code for s in d.statuses] == [OVER, OK]
    d = await both()  # small from the cache; big only read, not charged
    assert [(s.code, s.remaining) for s in d.statuses] == [(OVER, 0), (OK, 4)]
    big = await engine.should_rate_limit("a", [desc(("big", "x"))])
    assert big.statuses[0].remaining == 3


async def test_stop_increment_mode_charges_nothing_after_a_cache_hit(target: Target,
                                                                     clock: FakeClock) -> None:
    """As the reference: with STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT, a local-cache hit means
    no GET and an addend of 0 for the request's other counters."""
    clock.now = 1_000_020
    cache = LocalCache(1 << 20)
    engine = Engine(target.store, EngineOptions(expiration_jitter_max_seconds=0,
                                                stop_increment_when_over_limit=True),
                    clock=clock, local_cache=cache)
    engine.set_rules(make_rules(RULES))
    target.seed("d_three_v_1000020", 3)

    async def both() -> Any:
        return await engine.should_rate_limit("d", [desc(("hourly", "v")),
                                                    desc(("three", "v"))])

    d = await both()  # three goes over (and is cached); hourly is not charged (stop mode)
    assert [(s.code, s.remaining) for s in d.statuses] == [(OK, 15), (OVER, 0)]
    before = target.calls(everything=True)
    d = await both()
    assert [(s.code, s.remaining) for s in d.statuses] == [(OK, 15), (OVER, 0)]
    if target.server is not None:
        after = target.calls(everything=True)
        assert after["incrby"] == before["incrby"] + 1  # hourly, by 0
        assert after["mget"] == before["mget"]  # no read first
        client = target.server.client()
        try:
            assert client.get("d_hourly_v_997200") == "0"
        finally:
            client.close()


def test_memory_is_bounded_by_the_setting() -> None:
    cache = LocalCache(100 * (ENTRY_OVERHEAD + 80))
    for i in range(1000):
        cache.add(f"domain_remote_address_10.0.0.{i}_1800000000", 10**12 + i, 100)
    assert cache.bytes <= cache.capacity
    assert 90 <= len(cache) <= 100
    assert cache.evictions == 1000 - len(cache)
    # the oldest went first
    assert cache.refused_until("domain_remote_address_10.0.0.999_1800000000", 1, 100, 0)
    assert not cache.refused_until("domain_remote_address_10.0.0.0_1800000000", 1, 100, 0)


def test_the_byte_estimate_is_honest() -> None:
    """What an entry is charged is within 25% of what it really costs (tracemalloc)."""
    n = 20_000
    keys = [f"domain_remote_address_10.0.{i // 256}.{i % 256}_1800000000" for i in range(n)]
    cache = LocalCache(1 << 40)
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for i, key in enumerate(keys):
            cache.add(key, 1_800_000_060_000 + i, 100 + i)
        used = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    real = used + sum(sys.getsizeof(k) for k in keys)  # the cache keeps its keys alive
    assert 0.75 < cache.bytes / real < 1.25, (cache.bytes, real)


def test_an_expired_entry_is_dropped_when_met() -> None:
    cache = LocalCache(1 << 20)
    cache.add("k", 1000, 5)
    assert cache.refused_until("k", 1, 5, 999) == 1000
    assert cache.refused_until("k", 1, 6, 999) == 0  # another limit (a reload raised it)
    assert cache.refused_until("k", 1, 5, 1000) == 0
    assert len(cache) == 0 and cache.bytes == 0


@pytest.mark.redis
async def test_sidecar_setting_and_metrics(tmp_path: Path, redis_clean: RedisServer) -> None:
    env = {"REDIS_URL": redis_clean.url, "REDIS_TIMEOUT": "1s",
           "LOCAL_CACHE_SIZE_IN_BYTES": "1048576"}
    async with running(tmp_path, env=env) as app, rls_stub(app.grpc_address) as stub:
        codes = [(await stub.ShouldRateLimit(request("test-domain", descriptor(("one", "a"))))
                  ).overall_code for _ in range(5)]
        text = app.sidecar.metrics.exposition().decode()
    assert codes == [1, 2, 2, 2, 2]
    assert "viva_ratelimit_local_cache_hits_total 3.0" in text
    assert ('ratelimit_service_rate_limit_over_limit_with_local_cache_total{domain='
            '"test-domain",key1="one",key2=""} 3.0') in text
