"""Decisions counted in memory and written to the ledger, in process on SQLite and on a real
PostgreSQL with a fake clock: the buckets, a write that fails and is retried under the same
batch id, a batch written twice counting once, instances flushing the same buckets at once,
and the stop that writes what is left."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from sidecar.management.db.models import UsageCount
from sidecar.management.usage.counter import UsageCounter
from sidecar.management.usage.flusher import UsageFlusher
from sidecar.management.usage.ledger import Batch, write_batch
from tests.management.rig import Rig, make_rig


@pytest.fixture
async def rig(catalog_url: str) -> AsyncIterator[Rig]:
    made = await make_rig(catalog_url, now="2026-11-02T10:00:00")
    yield made
    await made.db.dispose()


async def ledger(rig: Rig) -> list[tuple[Any, ...]]:
    async with rig.catalog.sessions() as session:
        rows = await session.execute(select(
            UsageCount.customer_id, UsageCount.hour, UsageCount.limit_name, UsageCount.outcome,
            UsageCount.plan, UsageCount.decisions, UsageCount.hits).order_by(
            UsageCount.hour, UsageCount.outcome, UsageCount.plan))
        return [(c, h.strftime("%d %H:%M"), limit, o, p, d, n) for c, h, limit, o, p, d, n in
                rows.all()]


def sample(rig: Rig, name: str) -> float:
    value = rig.registry.get_sample_value(name)
    return 0.0 if value is None else value


async def test_each_decision_lands_in_its_bucket_once(rig: Rig) -> None:
    key = await rig.customer("acme", "small")
    assert await rig.codes(key, 7) == ["VALID"] * 5 + ["RATE_LIMITED"] * 2
    assert (await rig.verifier.verify(key, "10.0.0.1", features=["exports"])).code == \
        "FORBIDDEN"
    assert (await rig.verifier.verify("viva_" + "1" * 28, "10.0.0.1")).code == "NOT_FOUND"
    rig.clock.advance(5)
    assert rig.flusher.oldest_age() == 5.0
    assert await rig.flusher.flush() == 8  # NOT_FOUND has no customer: not counted
    assert rig.flusher.oldest_age() == 0.0
    rig.at("2026-11-02T11:30:00")
    await rig.plan("acme", "large")
    assert [c for c in await rig.codes(key, 1)] == ["VALID"]
    big = await rig.verifier.verify(key, "10.0.0.1", cost=998)  # monthly quota of 1,000
    over = await rig.verifier.verify(key, "10.0.0.1", cost=5)
    assert (big.code, over.code) == ("VALID", "QUOTA_EXCEEDED")
    await rig.flusher.flush()
    assert await ledger(rig) == [
        ("acme", "02 10:00", "", "FORBIDDEN", "small", 1, 0),
        ("acme", "02 10:00", "per_hour", "RATE_LIMITED", "small", 2, 0),
        ("acme", "02 10:00", "", "VALID", "small", 5, 5),
        ("acme", "02 11:00", "monthly", "QUOTA_EXCEEDED", "large", 1, 0),
        ("acme", "02 11:00", "", "VALID", "large", 2, 999),
    ]
    assert sample(rig, "viva_usage_ledger_rows_written_total") == 5
    assert rig.registry.get_sample_value("viva_usage_flushes_total", {"result": "ok"}) == 2


async def test_listeners_hear_which_customers_each_flush_wrote(rig: Rig) -> None:
    heard: list[frozenset[str]] = []
    rig.flusher.flushed.append(heard.append)
    rig.flusher.flushed.append(lambda customers: 1 / 0)  # a broken one changes nothing
    keys = [await rig.customer(c, "large") for c in ("acme", "beta")]
    for key in keys:
        await rig.codes(key, 2)
    assert await rig.flusher.flush() == 4
    assert await rig.flusher.flush() == 0  # nothing new: nobody to tell
    assert heard == [frozenset({"acme", "beta"})]


async def test_a_failed_write_is_retried_under_the_same_batch_id(rig: Rig) -> None:
    key = await rig.customer("acme", "large")
    await rig.codes(key, 3)
    async with rig.db.begin() as connection:  # the ledger's table is gone: writes fail
        await connection.execute(text("DROP TABLE usage_counts"))
    with pytest.raises(DBAPIError):
        await rig.flusher.flush()
    retained = rig.flusher.retained
    assert retained is not None and retained.decisions == 3
    await rig.codes(key, 2)  # the hot path keeps counting meanwhile
    rig.clock.advance(30)
    assert rig.flusher.oldest_age() == 30.0
    async with rig.db.begin() as connection:
        await connection.run_sync(lambda c: UsageCount.__table__.create(c))
    assert await rig.flusher.flush() == 5
    assert rig.flusher.retained is None
    assert await ledger(rig) == [("acme", "02 10:00", "", "VALID", "large", 5, 5)]
    assert rig.registry.get_sample_value("viva_usage_flushes_total", {"result": "error"}) == 1


async def test_a_batch_written_twice_counts_once(rig: Rig) -> None:
    """The commit went through but its answer was lost: the retry finds the batch id."""
    key = await rig.customer("acme", "large")
    await rig.codes(key, 4)
    batch = rig.counter.take()
    assert batch is not None
    for expected in (True, False):
        async with rig.catalog.sessions.begin() as session:
            assert await write_batch(session, batch, rig.billing.now()) is expected
    assert await ledger(rig) == [("acme", "02 10:00", "", "VALID", "large", 4, 4)]


async def test_instances_flushing_the_same_buckets_at_once_add_up(rig: Rig) -> None:
    """Several counters (instances) add to the same rows in concurrent transactions, each on
    connections of its own: += upserts, so the ledger holds the exact sum."""
    from prometheus_client import CollectorRegistry

    key = await rig.customer("acme", "large")
    found = await rig.verifier.verify(key, "10.0.0.1")
    instances = [UsageCounter(rig.clock) for _ in range(4)]
    flushers = [UsageFlusher(c, rig.catalog.sessions, 10.0, CollectorRegistry(), rig.clock)
                for c in instances]
    for _ in range(5):
        for n, counter in enumerate(instances):
            for _ in range(10 + n):
                counter.record(found, 2)
        await asyncio.gather(*(f.flush() for f in flushers))
    decisions = 5 * (10 + 11 + 12 + 13)
    assert await ledger(rig) == [("acme", "02 10:00", "", "VALID", "large", decisions,
                                  2 * decisions)]


async def test_stopping_writes_what_is_left(rig: Rig) -> None:
    key = await rig.customer("acme", "large")
    rig.flusher.start()
    await rig.codes(key, 6)
    await rig.flusher.stop(grace=5)
    assert await ledger(rig) == [("acme", "02 10:00", "", "VALID", "large", 6, 6)]
    assert rig.counter.take() is None


async def test_stopping_without_a_database_says_what_is_lost(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    key = await rig.customer("acme", "large")
    await rig.codes(key, 2)
    async with rig.db.begin() as connection:
        await connection.execute(text("DROP TABLE usage_counts"))
    await rig.flusher.stop(grace=0.3)
    assert "could not write 2 decisions to the usage ledger" in caplog.text


def test_a_batch_orders_its_rows_by_primary_key() -> None:
    batch = Batch({("b", "k2", "", "VALID", "p", 5): [1, 1], ("a", "k9", "", "VALID", "p", 7):
                   [2, 2], ("a", "k1", "x", "RATE_LIMITED", "p", 7): [3, 0],
                   ("a", "k1", "", "VALID", "p", 6): [4, 4]}, oldest=0.0)
    assert [(r["customer_id"], r["hour"].hour, r["key_id"]) for r in batch.rows()] == [
        ("a", 6, "k1"), ("a", 7, "k1"), ("a", 7, "k9"), ("b", 5, "k2")]
    assert batch.decisions == 10 and batch.customers == {"a", "b"}
