"""The fixed-window scenarios on every store, through the Engine (reference §3.4-§3.6, TC-21..28).

Each test runs on the memory store, on a real Redis and on a real Redis Cluster (3 masters, 3
replicas); keys and TTLs are read back from the store itself (through a cluster client for the
Cluster), so they are exactly what the reference would find there.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from sidecar.errors import StorageError
from sidecar.limiter.engine import Engine
from sidecar.limiter.options import EngineOptions
from sidecar.model import Code, Decision, Descriptor, Unit
from sidecar.storage.base import Increment, Store
from sidecar.storage.memory import MemoryStore
from sidecar.storage.redis.options import RedisOptions
from sidecar.storage.redis.store import RedisStore
from tests.conftest import FakeClock
from tests.limiter.kit import RecordingStats, desc, make_rules
from tests.support.ports import free_port
from tests.support.servers import RedisServer
from tests.topologies import RedisCluster

OK, OVER = Code.OK, Code.OVER_LIMIT

RULES = """
domain: domain
descriptors:
  - key: key
    value: value
    rate_limit: {unit: second, requests_per_unit: 10}
  - key: key
    rate_limit: {unit: second, requests_per_unit: 10}
  - key: key2
    value: value2
    descriptors:
      - key: subkey2
        value: subvalue2
        rate_limit: {unit: minute, requests_per_unit: 10}
  - key: key3
    value: value3
    rate_limit: {unit: hour, requests_per_unit: 10}
    descriptors:
      - key: subkey3
        value: subvalue3
        rate_limit: {unit: day, requests_per_unit: 10}
  - key: three
    rate_limit: {unit: minute, requests_per_unit: 3}
  - key: files
    value: files/*
    share_threshold: true
    rate_limit: {unit: minute, requests_per_unit: 100}
  - key: other
    value: files/*
    rate_limit: {unit: minute, requests_per_unit: 100}
"""


class Backend:
    """A store under test plus a way to look inside it (``server``: a RedisServer or a
    RedisCluster, anything with ``client()``)."""

    def __init__(self, store: Store, clock: FakeClock, server: Any) -> None:
        self.store = store
        self.clock = clock
        self.server = server
        self.client = server.client() if server is not None else None

    @property
    def memory(self) -> MemoryStore:
        assert isinstance(self.store, MemoryStore)
        return self.store

    def engine(self, stats: RecordingStats | None = None, **options: Any) -> Engine:
        options.setdefault("expiration_jitter_max_seconds", 0)
        rng = options.pop("rng", None)
        engine = Engine(self.store, EngineOptions(**options), stats, self.clock, rng)
        engine.set_rules(make_rules(RULES))
        return engine

    def keys(self) -> set[str]:
        if isinstance(self.server, RedisCluster):  # every master's share of the key space
            found: set[str] = set()
            for node in self.server.masters:
                with contextlib.closing(node.client()) as c:
                    found |= set(c.keys("*"))
            return found
        if self.client is not None:
            return set(self.client.keys("*"))
        return set(self.memory._counters)

    def value(self, key: str) -> int | None:
        if self.client is not None:
            found = self.client.get(key)
            return int(found) if found is not None else None
        entry = self.memory._counters.get(key)
        return entry[0] if entry is not None else None

    def ttl(self, key: str) -> int | None:
        if self.client is not None:
            found = int(self.client.ttl(key))
            return found if found >= 0 else None
        return self.memory.ttl(key, self.clock())

    def seed(self, key: str, value: int) -> None:
        """As if earlier requests had counted ``value`` hits (TTL of an hour)."""
        if self.client is not None:
            self.client.set(key, value, ex=3600)
        else:
            self.memory.increment_now([Increment(key, value, 3600)], int(self.clock()))

    def shorten(self, key: str, ttl: int) -> None:
        if self.client is not None:
            self.client.expire(key, ttl)
        else:
            self.memory._counters[key][1] = (int(self.clock()) + ttl) * 1000

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis),
                        pytest.param("cluster", marks=pytest.mark.redis)])
async def backend(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[Backend]:
    if request.param == "memory":
        b = Backend(MemoryStore(), clock, None)
    elif request.param == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        b = Backend(RedisStore(RedisOptions(url=cluster.startup_nodes, type="cluster",
                                            timeout=2.0)), clock, cluster)
    else:
        server: RedisServer = request.getfixturevalue("redis_clean")
        b = Backend(RedisStore(RedisOptions(url=server.url, timeout=2.0)), clock, server)
    yield b
    b.close()
    await b.store.close()


async def call(engine: Engine, *descriptors: Descriptor, hits: int = 0) -> Decision:
    return await engine.should_rate_limit("domain", list(descriptors), hits)


# -- keys (TC-21..TC-23, §3.4) ---------------------------------------------------------------


async def test_second_key_and_status_tc21(backend: Backend) -> None:
    backend.clock.now = 1234
    stats = RecordingStats()
    engine = backend.engine(stats)
    backend.seed("domain_key_value_1234", 4)
    d = await call(engine, desc(("key", "value")))
    s = d.statuses[0]
    assert s.limit is not None
    assert (s.code, s.limit.requests_per_unit, s.limit.unit, s.remaining, s.reset_seconds) == (
        OK, 10, Unit.SECOND, 5, 1)
    assert backend.keys() == {"domain_key_value_1234"}
    assert backend.value("domain_key_value_1234") == 5
    assert stats.of("domain.key_value") == {
        "total": 1, "over": 0, "near": 0, "within": 1, "shadow": 0}


async def test_minute_key_with_per_descriptor_addends_tc22(backend: Backend) -> None:
    backend.clock.now = 1234
    stats = RecordingStats()
    engine = backend.engine(stats)
    key = "domain_key2_value2_subkey2_subvalue2_1200"
    backend.seed(key, 10)
    d = await call(engine, desc(("key2", "value2"), hits=0),
                   desc(("key2", "value2"), ("subkey2", "subvalue2"), hits=1))
    assert [(s.code, s.remaining, s.limit is None) for s in d.statuses] == [
        (OK, 0, True), (OVER, 0, False)]
    assert backend.keys() == {key}
    assert backend.value(key) == 11
    assert backend.ttl(key) == 60
    assert stats.of("domain.key2_value2.subkey2_subvalue2") == {
        "total": 1, "over": 1, "near": 0, "within": 0, "shadow": 0}


async def test_hour_and_day_keys_with_addend_zero_tc23(backend: Backend) -> None:
    backend.clock.now = 1_000_000
    stats = RecordingStats()
    engine = backend.engine(stats)
    hour, day = "domain_key3_value3_997200", "domain_key3_value3_subkey3_subvalue3_950400"
    backend.seed(hour, 11)
    backend.seed(day, 12)
    d = await call(engine, desc(("key3", "value3"), hits=0),
                   desc(("key3", "value3"), ("subkey3", "subvalue3"), hits=1))
    assert [s.code for s in d.statuses] == [OVER, OVER]
    assert (backend.value(hour), backend.value(day)) == (11, 13)
    assert (backend.ttl(hour), backend.ttl(day)) == (3600, 86400)
    assert stats.of("domain.key3_value3")["total"] == 0
    assert stats.of("domain.key3_value3")["over"] == 0
    assert stats.of("domain.key3_value3.subkey3_subvalue3")["total"] == 1
    assert stats.of("domain.key3_value3.subkey3_subvalue3")["over"] == 1


async def test_cache_key_prefix(backend: Backend) -> None:
    backend.clock.now = 1234
    await call(backend.engine(cache_key_prefix="prefix:"), desc(("key", "value")))
    assert backend.keys() == {"prefix:domain_key_value_1234"}


async def test_empty_value_key(backend: Backend) -> None:
    backend.clock.now = 1234
    await call(backend.engine(), desc(("key", "")))
    assert backend.keys() == {"domain_key__1234"}


async def test_share_threshold_shares_one_pattern_key(backend: Backend) -> None:
    backend.clock.now = 1234
    engine = backend.engine()
    for value in ("files/a.pdf", "files/b.csv", "files/c.txt"):
        await call(engine, desc(("files", value)))
    await call(engine, desc(("other", "files/a.pdf")))
    await call(engine, desc(("other", "files/b.csv")))
    assert backend.keys() == {"domain_files_files/*_1200", "domain_other_files/a.pdf_1200",
                              "domain_other_files/b.csv_1200"}
    assert backend.value("domain_files_files/*_1200") == 3


# -- TTLs (§3.5, TC-26) ----------------------------------------------------------------------


@pytest.mark.parametrize(("unit", "window"), [(Unit.SECOND, 1), (Unit.MINUTE, 60),
                                              (Unit.HOUR, 3600), (Unit.DAY, 86400),
                                              (Unit.WEEK, 604800)])
async def test_ttl_is_the_window_without_jitter(backend: Backend, unit: Unit,
                                                window: int) -> None:
    backend.clock.now = 1234
    await call(backend.engine(), desc(("k", "v"), limit=(5, unit), domain="domain"))
    (key,) = backend.keys()
    assert backend.ttl(key) == window


class FixedRandom(random.Random):
    """The reference's test rand source: always 100."""

    def randrange(self, *args: Any, **kwargs: Any) -> int:
        return 100


async def test_ttl_jitter_tc26(backend: Backend) -> None:
    backend.clock.now = 1234
    engine = backend.engine(expiration_jitter_max_seconds=3600, rng=FixedRandom())
    await call(engine, desc(("key", "value")))
    assert backend.ttl("domain_key_value_1234") == 101


async def test_ttl_jitter_is_drawn_in_range_per_key(backend: Backend) -> None:
    backend.clock.now = 1234
    engine = backend.engine(expiration_jitter_max_seconds=300, rng=random.Random(7))
    await call(engine, desc(("three", "a")), desc(("three", "b")), desc(("three", "c")))
    expected = random.Random(7)
    for value in "abc":
        assert backend.ttl(f"domain_three_{value}_1200") == 60 + expected.randrange(300)


async def test_every_hit_sets_the_ttl_again(backend: Backend) -> None:
    backend.clock.now = 1234
    engine = backend.engine()
    await call(engine, desc(("three", "a")))
    backend.shorten("domain_three_a_1200", 5)
    assert backend.ttl("domain_three_a_1200") == 5
    await call(engine, desc(("three", "a")))
    assert backend.ttl("domain_three_a_1200") == 60


# -- statuses and windows --------------------------------------------------------------------


async def test_limit_sequence_and_next_window(backend: Backend) -> None:
    backend.clock.now = 1234
    engine = backend.engine()
    results = [await call(engine, desc(("three", "x"))) for _ in range(4)]
    assert [(d.overall, d.statuses[0].remaining) for d in results] == [
        (OK, 2), (OK, 1), (OK, 0), (OVER, 0)]
    backend.clock.advance(26)  # 1260: the next minute
    d = await call(engine, desc(("three", "x")))
    assert (d.overall, d.statuses[0].remaining, d.statuses[0].reset_seconds) == (OK, 2, 60)
    assert backend.keys() == {"domain_three_x_1200", "domain_three_x_1260"}


async def test_stop_increment_when_over_limit_tc28(backend: Backend) -> None:
    backend.clock.now = 1234
    engine = backend.engine(stop_increment_when_over_limit=True)
    backend.seed("domain_three_x_1200", 3)
    d = await call(engine, desc(("key2", "value2"), ("subkey2", "subvalue2")),
                   desc(("three", "x")))
    assert [(s.code, s.remaining) for s in d.statuses] == [(OK, 10), (OVER, 0)]
    assert backend.value("domain_key2_value2_subkey2_subvalue2_1200") == 0
    assert backend.value("domain_three_x_1200") == 4


async def test_concurrent_requests_all_count(backend: Backend) -> None:
    backend.clock.now = 1234
    engine = backend.engine()
    results = await asyncio.gather(*(call(engine, desc(("key2", "value2"),
                                                       ("subkey2", "subvalue2")))
                                     for _ in range(40)))
    assert sorted(d.statuses[0].remaining for d in results if d.overall == OK) == list(range(10))
    assert backend.value("domain_key2_value2_subkey2_subvalue2_1200") == 40


# -- Redis specifics -------------------------------------------------------------------------


def command_calls(client: Any) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(v["calls"])
            for name, v in client.info("commandstats").items()}


def count_round_trips(store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every pipeline execution and direct command the store sends."""
    trips: list[str] = []
    client = store.client
    make_pipeline, execute_command = client.pipeline, client.execute_command

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = make_pipeline(*args, **kwargs)
        execute = pipe.execute

        async def counted(*a: Any, **k: Any) -> Any:
            trips.append("pipeline")
            return await execute(*a, **k)

        pipe.execute = counted
        return pipe

    async def command(*args: Any, **kwargs: Any) -> Any:
        trips.append(str(args[0]))
        return await execute_command(*args, **kwargs)

    monkeypatch.setattr(client, "pipeline", pipeline)
    monkeypatch.setattr(client, "execute_command", command)
    return trips


@pytest.mark.redis
async def test_redis_one_round_trip_per_request(redis_clean: RedisServer, clock: FakeClock,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    clock.now = 1234
    store = RedisStore(RedisOptions(url=redis_clean.url, timeout=2.0))
    client = redis_clean.client()
    try:
        backend = Backend(store, clock, None)
        engine = backend.engine()
        await store.ping()  # open the pooled connection first
        trips = count_round_trips(store, monkeypatch)
        client.config_resetstat()
        await call(engine, desc(("key", "value")), desc(("three", "x")),
                   desc(("key3", "value3"), ("subkey3", "subvalue3")), desc(("nomatch", "y")))
        calls = command_calls(client)
        assert trips == ["pipeline"]
        assert (calls["incrby"], calls["expire"]) == (3, 3)
        assert set(calls) <= {"incrby", "expire", "config|resetstat", "info"}
        # stop-increment mode reads first, as the reference does: two round trips
        trips.clear()
        engine = backend.engine(stop_increment_when_over_limit=True)
        await call(engine, desc(("key", "value")), desc(("three", "x")))
        assert trips == ["MGET", "pipeline"]
    finally:
        client.close()
        await store.close()


@pytest.mark.redis
async def test_redis_small_pool_waits_instead_of_failing(redis_clean: RedisServer,
                                                         clock: FakeClock) -> None:
    store = RedisStore(RedisOptions(url=redis_clean.url, timeout=2.0, pool_size=2))
    try:
        engine = Backend(store, clock, None).engine()
        results = await asyncio.gather(*(call(engine, desc(("key3", "value3")))
                                         for _ in range(50)))
        assert sum(d.overall == OK for d in results) == 10
    finally:
        await store.close()


@pytest.mark.redis
@pytest.mark.parametrize("form", ["url", "host:port"])
async def test_redis_url_forms(redis_clean: RedisServer, form: str) -> None:
    url = redis_clean.url if form == "url" else f"127.0.0.1:{redis_clean.port}"
    store = RedisStore(RedisOptions(url=url, timeout=2.0))
    try:
        assert (await store.run([Increment("k", 2, 10)], (), 0, False))[0] == [2]
        assert await store.get(["k", "missing"], 0) == [2, 0]
    finally:
        await store.close()


@pytest.mark.redis
async def test_redis_unix_socket(tmp_path: Any) -> None:
    sock = str(tmp_path / "redis.sock")
    server = RedisServer(extra=["--unixsocket", sock, "--unixsocketperm", "700"]).start()
    store = RedisStore(RedisOptions(url=sock, socket_type="unix", timeout=2.0))
    try:
        assert (await store.run([Increment("k", 1, 10)], (), 0, False))[0] == [1]
    finally:
        await store.close()
        server.stop()


# -- memory store housekeeping ---------------------------------------------------------------


async def test_memory_store_frees_old_windows(clock: FakeClock) -> None:
    store = MemoryStore()
    engine = Backend(store, clock, None).engine()
    for i in range(100):
        await call(engine, desc(("three", f"user{i}")))
    assert len(store) == 100
    clock.advance(59)
    await call(engine, desc(("three", "late")))
    assert len(store) == 101  # the first minute's counters live for 60 s
    clock.advance(61)
    await call(engine, desc(("three", "late")))
    assert len(store) == 1
    assert sum(map(len, store._expiries.values())) == 1


async def test_memory_store_hot_key_costs_constant_memory(clock: FakeClock) -> None:
    store = MemoryStore()
    engine = Backend(store, clock, None).engine(expiration_jitter_max_seconds=300,
                                                rng=random.Random(1))
    for _ in range(2000):  # one DAY key hit every second; jitter moves its expiry every time
        await call(engine, desc(("key3", "value3"), ("subkey3", "subvalue3")))
        clock.advance(1)
    assert len(store) == 1
    assert sum(map(len, store._expiries.values())) == 1


async def test_memory_store_get_ignores_expired(clock: FakeClock) -> None:
    store = MemoryStore()
    store.increment_now([Increment("a", 3, 10)], 100)
    assert await store.get(["a", "b"], 109) == [3, 0]
    assert await store.get(["a"], 110) == [0]
    assert store.increment_now([Increment("a", 1, 10)], 110) == [1]


# -- Redis down: StorageError within the timeout, never a hang -------------------------------


async def timed(coro: Any, limit: float = 10.0) -> tuple[BaseException | None, float]:
    started = time.monotonic()
    try:
        await asyncio.wait_for(coro, limit)  # a hang fails the test instead of blocking it
    except StorageError as exc:
        return exc, time.monotonic() - started
    return None, time.monotonic() - started


@pytest.mark.redis
async def test_redis_closed_port_is_a_storage_error(clock: FakeClock) -> None:
    timeout = 0.3
    store = RedisStore(RedisOptions(url=f"127.0.0.1:{free_port()}", timeout=timeout))
    try:
        engine = Backend(store, clock, None).engine()
        error, elapsed = await timed(call(engine, desc(("three", "x"))))
        assert isinstance(error, StorageError) and error.transient
        assert elapsed < timeout + 0.3
        error, elapsed = await timed(store.ping())
        assert isinstance(error, StorageError)
    finally:
        await store.close()


@pytest.fixture(scope="module")
def pausable_redis() -> Iterator[RedisServer]:
    """A server of its own: a SIGSTOPped session server would stall other tests."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.mark.redis
async def test_redis_stopped_server_times_out_then_recovers(pausable_redis: RedisServer,
                                                            clock: FakeClock) -> None:
    timeout = 0.3
    store = RedisStore(RedisOptions(url=pausable_redis.url, timeout=timeout))
    engine = Backend(store, clock, None).engine()
    try:
        assert (await call(engine, desc(("three", "x")))).overall == OK
        pausable_redis.pause()
        try:
            for attempt in (call(engine, desc(("three", "x"))), store.ping(),
                            call(engine, desc(("three", "y")), desc(("three", "z")))):
                error, elapsed = await timed(attempt)
                assert isinstance(error, StorageError), error
                assert "within 300 ms" in str(error) or "Timeout" in str(error)
                assert elapsed < timeout + 0.3
        finally:
            pausable_redis.resume()
        await asyncio.sleep(0.05)
        d = await call(engine, desc(("three", "w")))
        assert d.overall == OK
    finally:
        await store.close()

