"""RedisStore with REDIS_TYPE=sentinel on a real master, replica and three sentinels.

The store finds the master through the sentinels (the reference's REDIS_URL form
``mymaster,host:port,…``), and when the master is killed mid-traffic it follows the failover:
during the gap every call fails fast with StorageError (policy ``unavailable``), none waits
past the timeout, then calls succeed again on the promoted replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from sidecar.app import make_store
from sidecar.errors import StorageError
from sidecar.limiter.engine import Engine
from sidecar.limiter.options import EngineOptions
from sidecar.model import Code
from sidecar.settings import Settings
from sidecar.storage.redis.options import RedisOptions
from sidecar.storage.redis.store import RedisStore
from tests.limiter.kit import desc, make_rules
from tests.topologies import RedisSentinel

pytestmark = pytest.mark.redis

RULES = """
domain: d
descriptors:
  - key: user
    rate_limit: {unit: hour, requests_per_unit: 1000}
  - key: tokens
    rate_limit: {unit: hour, requests_per_unit: 1000, algorithm: token_bucket}
"""


def sentinel_engine(store: RedisStore) -> Engine:
    engine = Engine(store, EngineOptions(expiration_jitter_max_seconds=0))
    engine.set_rules(make_rules(RULES))
    return engine


async def test_counts_on_the_master_the_sentinels_name(redis_sentinel: RedisSentinel) -> None:
    settings = Settings.load(env={"REDIS_URL": redis_sentinel.reference_url,
                                  "REDIS_TYPE": "SENTINEL", "REDIS_TIMEOUT": "1s"})
    store = make_store(settings)
    assert isinstance(store, RedisStore) and store.opts.type == "sentinel"
    engine = sentinel_engine(store)
    try:
        for _ in range(3):
            d = await engine.should_rate_limit("d", [desc(("user", "a")), desc(("tokens", "a"))])
            assert d.overall == Code.OK
        assert [s.remaining for s in d.statuses] == [997, 997]
        with contextlib.closing(redis_sentinel.master.client()) as c:
            keys = c.keys("*")
        assert len(keys) == 2 and any(k.startswith("d_user_a_") for k in keys)
    finally:
        await store.close()


async def test_failover_mid_traffic_fails_fast_then_follows(
        redis_sentinel: RedisSentinel) -> None:
    timeout = 0.05
    store = RedisStore(RedisOptions(url=redis_sentinel.reference_url, type="sentinel",
                                    timeout=timeout, breaker_cooldown=0.2))
    engine = sentinel_engine(store)
    latencies: list[tuple[float, str]] = []

    async def one() -> str:
        started = time.monotonic()
        try:
            d = await engine.should_rate_limit("d", [desc(("user", "x"))])
            outcome = "ok" if d.overall == Code.OK else "over"
        except StorageError:
            outcome = "error"
        latencies.append((time.monotonic() - started, outcome))
        return outcome

    try:
        for _ in range(20):
            assert await one() == "ok"
        with contextlib.closing(redis_sentinel.master.client()) as c:
            assert c.wait(1, 2000) == 1  # the replica has all 20
        redis_sentinel.kill_master()
        deadline = time.monotonic() + 20
        ok_after = 0
        while ok_after < 20 and time.monotonic() < deadline:
            ok_after = ok_after + 1 if await one() == "ok" else 0
            await asyncio.sleep(0.005)
        assert ok_after == 20, "the store never followed the failover"
        outcomes = [o for _, o in latencies]
        assert "error" in outcomes
        worst = max(t for t, _ in latencies)
        assert worst < timeout + 0.05, f"a call waited {worst * 1000:.0f} ms"
        _, port = redis_sentinel.wait_failover(timeout=10)
        with contextlib.closing(redis_sentinel.master.client()) as c:
            assert redis_sentinel.master.port == port
            (key,) = c.keys("d_user_x_*")
            # 20 before, the successes after; none of the failed calls counted
            assert int(c.get(key)) == 20 + outcomes[20:].count("ok")
    finally:
        await store.close()
