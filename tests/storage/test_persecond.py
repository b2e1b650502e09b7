"""REDIS_PERSECOND: one-second windows counted in a second real Redis, the rest in the main one."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest

from sidecar.app import make_store
from sidecar.errors import StorageError
from sidecar.limiter.engine import Engine
from sidecar.limiter.leases import Leases
from sidecar.limiter.options import EngineOptions
from sidecar.model import Code
from sidecar.settings import Settings
from sidecar.storage.redis.split import SplitStore
from sidecar.storage.redis.store import RedisStore
from tests.conftest import FakeClock
from tests.limiter.kit import desc, make_rules
from tests.support.servers import RedisServer

pytestmark = pytest.mark.redis

RULES = """
domain: d
descriptors:
  - key: per_second
    rate_limit: {unit: second, requests_per_unit: 5}
  - key: per_minute
    rate_limit: {unit: minute, requests_per_unit: 5}
  - key: burst
    rate_limit: {unit: second, requests_per_unit: 5, algorithm: token_bucket}
  - key: slow_tokens
    rate_limit: {unit: minute, requests_per_unit: 5, algorithm: token_bucket}
  - key: socket
    rate_limit: {algorithm: concurrency, max: 2, lease_ttl: 1s}
"""

ATOMIC = """
domain: a
atomic: true
descriptors:
  - key: per_second
    rate_limit: {unit: second, requests_per_unit: 5}
"""


@pytest.fixture
def second_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
async def split(redis_clean: RedisServer,
                second_redis: RedisServer) -> AsyncIterator[SplitStore]:
    settings = Settings.load(env={
        "REDIS_URL": f"127.0.0.1:{redis_clean.port}", "REDIS_TIMEOUT": "1s",
        "REDIS_PERSECOND": "true", "REDIS_PERSECOND_URL": f"127.0.0.1:{second_redis.port}",
        "REDIS_PERSECOND_TIMEOUT": "1s", "REDIS_PERSECOND_POOL_SIZE": "3"})
    store = make_store(settings)
    assert isinstance(store, SplitStore)
    assert isinstance(store.per_second, RedisStore)
    assert store.per_second.opts.pool_size == 3
    yield store
    await store.close()


def keys_of(server: RedisServer) -> set[str]:
    with contextlib.closing(server.client()) as c:
        return set(c.keys("*"))


async def test_second_windows_go_to_their_own_redis(split: SplitStore, clock: FakeClock,
                                                    redis_clean: RedisServer,
                                                    second_redis: RedisServer) -> None:
    clock.now = 1234
    engine = Engine(split, EngineOptions(expiration_jitter_max_seconds=0), clock=clock)
    engine.set_rules(make_rules(RULES, ATOMIC))
    d = await engine.should_rate_limit("d", [
        desc(("per_minute", "u")), desc(("per_second", "u")), desc(("slow_tokens", "u")),
        desc(("burst", "u"), hits=2)])
    assert d.overall == Code.OK
    assert [s.remaining for s in d.statuses] == [4, 4, 4, 3]  # answers in request order
    assert keys_of(second_redis) == {"d_per_second_u_1234", "d_burst_u_token_bucket"}
    assert keys_of(redis_clean) == {"d_per_minute_u_1200", "d_slow_tokens_u_token_bucket"}
    # an atomic request stays whole on the main Redis
    await engine.should_rate_limit("a", [desc(("per_second", "u"))])
    assert "{a}_per_second_u_1234" in keys_of(redis_clean)
    # stop-increment mode reads from both
    assert await split.get(["d_per_second_u_1234", "d_per_minute_u_1200", "none"], 1234) == [
        1, 1, 0]


async def test_leases_stay_on_the_main_redis(split: SplitStore, clock: FakeClock,
                                             redis_clean: RedisServer,
                                             second_redis: RedisServer) -> None:
    """A lease_ttl of a second is no one-second window: leases and their reads stay main."""
    engine = Engine(split, EngineOptions(), clock=clock)
    engine.set_rules(make_rules(RULES))
    lease = await Leases(engine).acquire("d", [(("socket", "u"),)])
    assert lease.allowed and lease.statuses[0].active == 1
    read = await engine.should_rate_limit("d", [desc(("socket", "u"))])
    assert read.statuses[0].remaining == 0  # one held, one more asked: none left after it
    assert keys_of(redis_clean) == {"d_socket_u_concurrency"}
    assert keys_of(second_redis) == set()


async def test_one_side_down_fails_the_call(split: SplitStore, clock: FakeClock,
                                            second_redis: RedisServer) -> None:
    engine = Engine(split, EngineOptions(expiration_jitter_max_seconds=0), clock=clock)
    engine.set_rules(make_rules(RULES))
    second_redis.stop()
    assert (await engine.should_rate_limit("d", [desc(("per_minute", "u"))])).overall == \
        Code.OK
    with pytest.raises(StorageError):
        await engine.should_rate_limit("d", [desc(("per_minute", "u")),
                                             desc(("per_second", "u"))])
    with pytest.raises(StorageError):
        await split.ping()
