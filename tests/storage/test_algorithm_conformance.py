"""Every algorithm through the Engine, on the memory store, a real Redis and a real Redis
Cluster, fake clock.

The same scenario gives the same answers on both stores: window edges, bursts, refill,
hits_addend > 1, count_rejected, atomic requests, calendar months in a non-UTC zone and
arbitrary window lengths.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import redis

from sidecar.limiter.engine import Engine
from sidecar.limiter.options import EngineOptions
from sidecar.model import Code, Decision
from sidecar.storage.base import Store
from sidecar.storage.memory import MemoryStore
from sidecar.storage.redis.options import RedisOptions
from sidecar.storage.redis.store import RedisStore
from tests.conftest import FakeClock
from tests.limiter.kit import desc, make_rules
from tests.support.servers import RedisServer
from tests.topologies import RedisCluster

OK, OVER = Code.OK, Code.OVER_LIMIT
T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z, on a whole hour

RULES = """
domain: d
descriptors:
  - key: fixed
    rate_limit: {unit: minute, requests_per_unit: 3}
  - key: fixed_free
    rate_limit: {unit: minute, requests_per_unit: 3, count_rejected: false}
  - key: five_minutes
    rate_limit: {unit: minute, unit_multiplier: 5, requests_per_unit: 2}
  - key: ninety
    rate_limit: {window: 90s, requests_per_unit: 2}
  - key: sliding
    rate_limit: {unit: minute, requests_per_unit: 10, algorithm: sliding_window}
  - key: log
    rate_limit: {unit: minute, requests_per_unit: 3, algorithm: sliding_log}
  - key: log_second
    rate_limit: {unit: second, requests_per_unit: 3, algorithm: sliding_log}
  - key: tokens
    rate_limit: {unit: second, requests_per_unit: 2, algorithm: token_bucket, burst: 4}
  - key: paced
    rate_limit: {unit: second, requests_per_unit: 4, algorithm: leaky_bucket}
  - key: paced_burst
    rate_limit: {unit: second, requests_per_unit: 4, algorithm: leaky_bucket, burst: 2}
"""

ATOMIC = """
domain: a
atomic: true
descriptors:
  - key: small
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: big
    rate_limit: {unit: minute, requests_per_unit: 5, algorithm: token_bucket}
"""

CALENDAR = """
domain: c
time_zone: America/New_York
count_rejected: false
descriptors:
  - key: monthly
    rate_limit: {unit: month, requests_per_unit: 2, calendar: true}
  - key: daily
    rate_limit: {unit: day, requests_per_unit: 1, calendar: true}
"""


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis),
                        pytest.param("cluster", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        opts = RedisOptions(url=cluster.startup_nodes, type="cluster", timeout=1.0)
    else:
        server: RedisServer = request.getfixturevalue("redis_clean")
        opts = RedisOptions(url=server.url, timeout=1.0)
    redis_store = RedisStore(opts)
    yield redis_store
    await redis_store.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def engine_for(store: Store, clock: FakeClock, *texts: str) -> Engine:
    engine = Engine(store, EngineOptions(expiration_jitter_max_seconds=0), clock=clock)
    engine.set_rules(make_rules(*(texts or (RULES,))))
    return engine


async def hit(engine: Engine, key: str, hits: int = 1, domain: str = "d",
              value: str = "v") -> Decision:
    return await engine.should_rate_limit(domain, [desc((key, value), hits=hits)])


async def codes(engine: Engine, key: str, n: int, **kw: object) -> list[Code]:
    return [(await hit(engine, key, **kw)).overall for _ in range(n)]  # type: ignore[arg-type]


async def test_fixed_window_edges(store: Store, clock: FakeClock) -> None:
    e = engine_for(store, clock)
    clock.now = T0 + 59.9
    assert await codes(e, "fixed", 4) == [OK, OK, OK, OVER]
    clock.now = T0 + 60.0  # the next window starts from zero
    assert await codes(e, "fixed", 4) == [OK, OK, OK, OVER]


async def test_count_rejected_false_keeps_the_quota(store: Store, clock: FakeClock) -> None:
    e = engine_for(store, clock)
    assert (await hit(e, "fixed", 2)).overall == OK
    assert (await hit(e, "fixed", 2)).overall == OVER  # counted anyway (the reference)
    assert (await hit(e, "fixed", 1)).overall == OVER
    assert (await hit(e, "fixed_free", 2)).overall == OK
    assert (await hit(e, "fixed_free", 2)).overall == OVER  # not counted
    d = await hit(e, "fixed_free", 1)
    assert (d.overall, d.statuses[0].remaining) == (OK, 0)


async def test_arbitrary_windows(store: Store, clock: FakeClock) -> None:
    e = engine_for(store, clock)
    assert await codes(e, "five_minutes", 3) == [OK, OK, OVER]
    clock.now = T0 + 299
    d = await hit(e, "five_minutes")
    assert (d.overall, d.statuses[0].reset_seconds) == (OVER, 1)
    clock.now = T0 + 300
    assert await codes(e, "five_minutes", 1) == [OK]
    # 90 s windows are aligned to the epoch: T0 is 1800000000 = 20000000 x 90
    assert await codes(e, "ninety", 3) == [OK, OK, OVER]
    clock.now = T0 + 90
    assert await codes(e, "ninety", 1) == [OK]


async def test_sliding_window_weights_the_previous_minute(store: Store,
                                                         clock: FakeClock) -> None:
    e = engine_for(store, clock)
    clock.now = T0 + 50
    assert (await hit(e, "sliding", 10)).overall == OK
    clock.now = T0 + 90  # halfway through the next minute: the previous one weighs 1/2
    d = await hit(e, "sliding", 5)  # floor(10 * 30/60) + 5 = 10: fits exactly
    assert (d.overall, d.statuses[0].remaining) == (OK, 0)
    d = await hit(e, "sliding", 3)  # 5 + 5 + 3 > 10
    assert d.overall == OVER
    # 3 more fit once floor(10 * left/60) <= 2, i.e. left < 18 s: just after T0 + 102 s
    assert d.statuses[0].reset_ms == 12_001
    clock.now = T0 + 102
    assert (await hit(e, "sliding", 3)).overall == OVER
    clock.now = T0 + 102.001
    assert (await hit(e, "sliding", 3)).overall == OK


async def test_sliding_log_is_exact_over_any_window(store: Store, clock: FakeClock) -> None:
    e = engine_for(store, clock)
    for t in (0, 20, 40):
        clock.now = T0 + t
        assert (await hit(e, "log")).overall == OK
    clock.now = T0 + 59
    d = await hit(e, "log")
    assert d.overall == OVER and d.statuses[0].reset_ms == 1000  # the first leaves at T0+60
    clock.now = T0 + 60.001
    assert (await hit(e, "log")).overall == OK
    assert (await hit(e, "log")).overall == OVER


async def test_sliding_log_keeps_its_entries_a_whole_window(store: Store,
                                                            clock: FakeClock) -> None:
    # Written half-way through a second, the log must outlive the next whole second.
    e = engine_for(store, clock)
    clock.now = T0 + 0.5
    assert await codes(e, "log_second", 3) == [OK, OK, OK]
    clock.now = T0 + 1.2
    d = await hit(e, "log_second")
    assert d.overall == OVER and d.statuses[0].reset_ms == 300
    clock.now = T0 + 1.5  # now a window has passed: the three leave the view together
    assert await codes(e, "log_second", 4) == [OK, OK, OK, OVER]


async def test_token_bucket_burst_then_refill(store: Store, clock: FakeClock) -> None:
    e = engine_for(store, clock)
    assert await codes(e, "tokens", 5) == [OK, OK, OK, OK, OVER]
    d = await hit(e, "tokens")
    assert d.statuses[0].reset_ms == 500  # 2 tokens a second
    clock.now = T0 + 0.5
    assert await codes(e, "tokens", 2) == [OK, OVER]
    clock.now = T0 + 100  # full again, never more than the burst
    assert (await hit(e, "tokens", 4)).statuses[0].remaining == 0
    assert (await hit(e, "tokens", 1)).overall == OVER


async def test_token_bucket_hits_addend(store: Store, clock: FakeClock) -> None:
    e = engine_for(store, clock)
    assert (await hit(e, "tokens", 3)).statuses[0].remaining == 1
    d = await hit(e, "tokens", 2)
    assert d.overall == OVER and d.statuses[0].reset_ms == 500  # one token missing
    assert (await hit(e, "tokens", 0)).overall == OK  # a peek takes nothing


async def test_leaky_bucket_paces(store: Store, clock: FakeClock) -> None:
    e = engine_for(store, clock)
    assert await codes(e, "paced", 2) == [OK, OVER]
    d = await hit(e, "paced")
    assert d.statuses[0].reset_ms == 250  # exactly one emission interval later
    clock.now = T0 + 0.25
    assert await codes(e, "paced", 2) == [OK, OVER]
    assert await codes(e, "paced_burst", 3) == [OK, OK, OVER]


async def test_atomic_requests_charge_all_or_nothing(store: Store, clock: FakeClock) -> None:
    e = engine_for(store, clock, ATOMIC)

    async def both() -> Decision:
        return await e.should_rate_limit("a", [desc(("small", "x")), desc(("big", "x"))])

    assert [(await both()).overall for _ in range(3)] == [OK, OK, OVER]
    d = await both()
    assert [s.code for s in d.statuses] == [OVER, OK]
    # big was charged only by the two allowed requests: 3 tokens left, untouched by refusals
    assert d.statuses[1].remaining == 3
    big = await e.should_rate_limit("a", [desc(("big", "x"))])
    assert big.statuses[0].remaining == 2


async def test_calendar_months_in_new_york(store: Store, clock: FakeClock) -> None:
    ny = ZoneInfo("America/New_York")
    e = engine_for(store, clock, CALENDAR)

    def at(*args: int) -> float:
        return datetime(*args, tzinfo=ny).timestamp()

    async def monthly() -> Decision:
        return await e.should_rate_limit("c", [desc(("monthly", "u"))])

    clock.now = at(2027, 1, 31, 23, 59, 59)
    assert [(await monthly()).overall for _ in range(3)] == [OK, OK, OVER]
    assert (await monthly()).statuses[0].reset_seconds == 1
    clock.now = at(2027, 2, 1, 0, 0, 0)  # 05:00 UTC: a new month in New York
    assert [(await monthly()).overall for _ in range(3)] == [OK, OK, OVER]
    d = await monthly()
    assert d.statuses[0].reset_seconds == 28 * 86400  # February 2027 has 28 days
    clock.now = at(2027, 3, 1, 0, 0, 0)
    assert (await monthly()).overall == OK


async def test_calendar_day_follows_daylight_saving(store: Store, clock: FakeClock) -> None:
    ny = ZoneInfo("America/New_York")
    e = engine_for(store, clock, CALENDAR)
    clock.now = datetime(2027, 3, 14, 1, 0, tzinfo=ny).timestamp()  # a 23-hour day
    d = await e.should_rate_limit("c", [desc(("daily", "u"))])
    assert d.statuses[0].reset_seconds == 22 * 3600  # midnight March 15, local: 23 h - 1 h


@pytest.mark.redis
async def test_concurrent_clients_never_exceed_the_limit(redis_clean: RedisServer) -> None:
    rules = """
    domain: d
    descriptors:
      - key: fixed
        rate_limit: {unit: hour, requests_per_unit: 20, count_rejected: false}
      - key: sliding
        rate_limit: {unit: hour, requests_per_unit: 20, algorithm: sliding_window}
      - key: log
        rate_limit: {unit: hour, requests_per_unit: 20, algorithm: sliding_log}
      - key: tokens
        rate_limit: {unit: hour, requests_per_unit: 20, algorithm: token_bucket}
      - key: paced
        rate_limit: {unit: hour, requests_per_unit: 20, algorithm: leaky_bucket, burst: 20}
    """
    clients = [RedisStore(RedisOptions(url=redis_clean.url, timeout=2.0, pool_size=4))
               for _ in range(8)]
    engines = []
    for store in clients:
        engine = Engine(store, EngineOptions(expiration_jitter_max_seconds=0))
        engine.set_rules(make_rules(rules))
        engines.append(engine)
    try:
        for key in ("fixed", "sliding", "log", "tokens", "paced"):
            calls = [engines[i % 8].should_rate_limit("d", [desc((key, "hot"))])
                     for i in range(200)]
            results = await asyncio.gather(*calls)
            allowed = sum(r.overall == OK for r in results)
            assert allowed == 20, key
    finally:
        for store in clients:
            await store.close()


@pytest.mark.redis
async def test_noscript_after_a_script_flush_is_handled(redis_clean: RedisServer,
                                                       clock: FakeClock) -> None:
    store = RedisStore(RedisOptions(url=redis_clean.url, timeout=1.0))
    try:
        e = engine_for(store, clock)
        assert (await hit(e, "tokens")).overall == OK
        client = redis.Redis(port=redis_clean.port)
        client.script_flush()
        client.close()
        d = await hit(e, "tokens")
        assert (d.overall, d.statuses[0].remaining) == (OK, 2)  # ran exactly once
    finally:
        await store.close()
