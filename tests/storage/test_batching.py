"""Cross-request batching against a real Redis: fewer round trips, the same answers.

Round trips are counted on Redis' side: ``total_reads_processed`` (one read event per pipeline
received on a connection) and ``total_writes_processed`` (one write event per batch of
replies), next to the commands (``commandstats``) they carried.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sidecar.errors import StorageError
from sidecar.limiter.engine import Engine
from sidecar.limiter.options import EngineOptions
from sidecar.model import Code
from sidecar.storage.redis.batching import Batcher
from sidecar.storage.redis.options import RedisOptions
from sidecar.storage.redis.store import RedisStore
from tests.limiter.kit import desc, make_rules
from tests.storage.test_conformance import command_calls
from tests.support.servers import RedisServer

pytestmark = pytest.mark.redis

RULES = """
domain: d
descriptors:
  - key: user
    rate_limit: {unit: hour, requests_per_unit: 50}
  - key: tokens
    rate_limit: {unit: hour, requests_per_unit: 50, algorithm: token_bucket}
"""


def engine_on(store: RedisStore) -> Engine:
    engine = Engine(store, EngineOptions(expiration_jitter_max_seconds=0))
    engine.set_rules(make_rules(RULES))
    return engine


def io_events(client: Any) -> tuple[int, int]:
    stats = client.info("stats")
    return int(stats["total_reads_processed"]), int(stats["total_writes_processed"])


@contextlib.contextmanager
def redis_side(server: RedisServer) -> Iterator[dict[str, int]]:
    """Round trips and commands Redis saw inside the block (the INFO calls themselves are
    one read and one write each, subtracted)."""
    client = server.client()
    seen: dict[str, int] = {}
    try:
        client.config_resetstat()
        reads, writes = io_events(client)
        yield seen
        after_reads, after_writes = io_events(client)
        seen.update(command_calls(client))
        seen["reads"], seen["writes"] = after_reads - reads - 1, after_writes - writes - 1
    finally:
        client.close()


async def test_concurrent_requests_share_round_trips(redis_clean: RedisServer) -> None:
    n = 200
    store = RedisStore(RedisOptions(url=redis_clean.url, timeout=2.0))
    engine = engine_on(store)
    try:
        await engine.should_rate_limit("d", [desc(("tokens", "warm"))])  # script loaded
        assert store.batcher is not None
        flushes = store.batcher.flushes
        with redis_side(redis_clean) as seen:
            results = await asyncio.gather(*(
                engine.should_rate_limit("d", [desc(("user", "hot")), desc(("tokens", "hot"))])
                for _ in range(n)))
        # the answers are those of 200 requests in a row: 50 allowed per limit
        assert sum(r.statuses[0].code == Code.OK for r in results) == 50
        assert sum(r.statuses[1].code == Code.OK for r in results) == 50
        assert sorted(r.statuses[0].remaining for r in results)[-50:] == list(range(50))
        assert (seen["incrby"], seen["evalsha"]) == (n, n)
        batches = store.batcher.flushes - flushes
        assert batches <= 5, batches  # the store's side: a handful of pipelines
        # Redis' side: a pipeline is a few read events (16 KB each) and write events, far
        # below one per request
        assert seen["reads"] <= n / 10 and seen["writes"] <= n / 10, seen
    finally:
        await store.close()


async def test_without_batching_each_request_is_a_round_trip(redis_clean: RedisServer) -> None:
    n = 50
    store = RedisStore(RedisOptions(url=redis_clean.url, timeout=2.0, batching=False,
                                    pool_size=n))
    engine = engine_on(store)
    try:
        await store.ping()
        with redis_side(redis_clean) as seen:
            await asyncio.gather(*(engine.should_rate_limit("d", [desc(("user", str(i)))])
                                   for i in range(n)))
        assert seen["incrby"] == n
        assert seen["reads"] >= n * 0.8, seen  # one pipeline per request (some may coalesce
        # in the kernel into one read when several connections are ready at once: not less)
    finally:
        await store.close()


async def test_window_and_limit(redis_clean: RedisServer) -> None:
    store = RedisStore(RedisOptions(url=redis_clean.url, timeout=2.0,
                                    pipeline_window=0.002, pipeline_limit=20))
    engine = engine_on(store)
    try:
        await store.ping()
        assert store.batcher is not None
        flushes = store.batcher.flushes

        async def staggered(i: int) -> Any:
            await asyncio.sleep(0.0002 * (i % 5))  # arrivals spread over ~1 ms
            return await engine.should_rate_limit("d", [desc(("user", f"u{i}"))])

        results = await asyncio.gather(*(staggered(i) for i in range(40)))
        assert all(r.overall == Code.OK for r in results)
        # 40 requests x 2 commands, at most 20 commands a pipeline: exactly 4 pipelines
        assert store.batcher.flushes - flushes == 4
    finally:
        await store.close()


async def test_one_callers_error_does_not_fail_the_others(redis_clean: RedisServer) -> None:
    client = redis_clean.client()
    client.rpush("d_user_broken_0", "not a counter")  # INCRBY on it: WRONGTYPE
    client.close()
    store = RedisStore(RedisOptions(url=redis_clean.url, timeout=2.0))
    engine = Engine(store, EngineOptions(expiration_jitter_max_seconds=0),
                    clock=lambda: 1000.0)
    engine.set_rules(make_rules(RULES))
    try:
        await store.ping()
        assert store.batcher is not None
        flushes = store.batcher.flushes
        results = await asyncio.gather(
            *(engine.should_rate_limit("d", [desc(("user", name))])
              for name in ("a", "b", "broken", "c")), return_exceptions=True)
        assert store.batcher.flushes - flushes == 1  # all four in one pipeline
        assert isinstance(results[2], StorageError) and not results[2].transient
        assert "WRONGTYPE" in str(results[2])
        assert [r.overall for i, r in enumerate(results) if i != 2] == [Code.OK] * 3
    finally:
        await store.close()


@pytest.fixture
def pausable(redis_clean: RedisServer) -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


async def test_a_timeout_fails_every_caller_of_the_batch(pausable: RedisServer) -> None:
    timeout = 0.1
    store = RedisStore(RedisOptions(url=pausable.url, timeout=timeout))
    engine = engine_on(store)
    try:
        await store.ping()
        pausable.pause()
        try:
            started = time.monotonic()
            results = await asyncio.gather(*(engine.should_rate_limit("d", [desc(("user", "x"))])
                                             for _ in range(10)), return_exceptions=True)
            elapsed = time.monotonic() - started
        finally:
            pausable.resume()
        assert all(isinstance(r, StorageError) and r.transient for r in results), results
        assert elapsed < timeout + 0.1
        assert (await engine.should_rate_limit("d", [desc(("user", "x"))])).overall == Code.OK
    finally:
        await store.close()


async def test_latency_alone_is_not_worse_with_batching(redis_clean: RedisServer) -> None:
    """One request at a time: batching adds one event-loop turn, nothing measurable next to
    the round trip (the benchmark measures it precisely; here only a gross regression fails)."""

    async def median_ms(batching: bool) -> float:
        store = RedisStore(RedisOptions(url=redis_clean.url, timeout=2.0, batching=batching))
        engine = engine_on(store)
        try:
            await store.ping()
            times = []
            for i in range(300):
                started = time.perf_counter()
                await engine.should_rate_limit("d", [desc(("user", f"{batching}{i}"))])
                times.append(time.perf_counter() - started)
            return statistics.median(times) * 1000
        finally:
            await store.close()

    off, on = await median_ms(False), await median_ms(True)
    assert on < off * 1.5 + 0.05, (off, on)


async def test_batcher_routes_replies_by_position() -> None:
    sent: list[list[Any]] = []

    async def execute(commands: Any) -> list[Any]:
        sent.append(list(commands))
        return [c[1] * 10 for c in commands]

    batcher = Batcher(execute)
    results = await asyncio.gather(batcher.submit([("X", 1), ("X", 2)]),
                                   batcher.submit([("X", 3)]), batcher.submit([("X", 4)]))
    assert results == [[10, 20], [30], [40]]
    assert len(sent) == 1
    assert await batcher.submit([("X", 5)]) == [50]  # a later turn: a new batch
    assert len(sent) == 2
