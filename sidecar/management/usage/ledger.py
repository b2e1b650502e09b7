"""The decisions ledger (``usage_counts``): hourly counts that every instance adds to.

A batch is written in one transaction: first its id into ``usage_flushes`` (a batch whose id
is already there was committed before, e.g. when the commit's acknowledgement was lost, and
is not added again), then one upsert per row that adds the batch's counts to the stored ones
(``decisions = decisions + excluded.decisions``): never a read-then-write, so instances
flushing at once sum exactly. Rows go in primary-key order, so two instances' transactions
lock rows in the same order and cannot deadlock on PostgreSQL.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from sidecar.management.db.models import UsageCount, UsageFlush

VALID = "VALID"
CHUNK = 500  # rows per upsert statement


# (customer id, key id, refusing limit ('' when none refused), outcome (the verification
# code), plan, hours since the epoch): a plain tuple, the cheapest dict key on the hot path.
Bucket = tuple[str, str, str, str, str, int]
COLUMNS = ("customer_id", "key_id", "limit_name", "outcome", "plan", "hour")


@dataclass
class Batch:
    """Counts taken from memory to be written together; ``id`` makes a retry harmless."""

    counts: dict[Bucket, list[int]]  # bucket -> [decisions, hits]
    oldest: float  # when the oldest of these decisions was made (epoch seconds)
    id: str = field(default_factory=lambda: secrets.token_hex(16))

    @property
    def decisions(self) -> int:
        return sum(cell[0] for cell in self.counts.values())

    @property
    def customers(self) -> frozenset[str]:
        return frozenset(bucket[0] for bucket in self.counts)

    def rows(self) -> list[dict[str, Any]]:
        """The upsert's rows in primary-key order (customer, hour, key, limit, outcome,
        plan)."""
        ordered = sorted(self.counts.items(),
                         key=lambda item: (item[0][0], item[0][5], *item[0][1:5]))
        rows = []
        for bucket, (decisions, hits) in ordered:
            row: dict[str, Any] = dict(zip(COLUMNS, bucket, strict=True))
            row.update(hour=hour_start(bucket[5]), decisions=decisions, hits=hits)
            rows.append(row)
        return rows


def hour_start(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * 3600, UTC)


def dialect_insert(session: AsyncSession) -> Any:
    """The ``insert`` with ON CONFLICT of the session's database."""
    name = session.get_bind().dialect.name
    return postgresql.insert if name == "postgresql" else sqlite.insert


async def write_batch(session: AsyncSession, batch: Batch, now: datetime) -> bool:
    """Add ``batch`` to the ledger inside the caller's transaction; False when this batch
    was written before (nothing is added again)."""
    insert = dialect_insert(session)
    claimed = await session.scalar(insert(UsageFlush).values(id=batch.id, at=now)
                                   .on_conflict_do_nothing().returning(UsageFlush.id))
    if claimed is None:
        return False
    statement = insert(UsageCount)
    statement = statement.on_conflict_do_update(
        index_elements=[*COLUMNS[:5], "hour"],
        set_={"decisions": UsageCount.decisions + statement.excluded.decisions,
              "hits": UsageCount.hits + statement.excluded.hits})
    rows = batch.rows()
    for start in range(0, len(rows), CHUNK):
        await session.execute(statement, rows[start:start + CHUNK])
    return True


async def prune_flushes(session: AsyncSession, older_than: datetime) -> None:
    """Batch ids are only needed while their batch may still be retried (one process'
    lifetime): old ones go."""
    await session.execute(delete(UsageFlush).where(UsageFlush.at < older_than))


def _scope(customer_id: str | None, key_id: str | None) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    if customer_id is not None:
        out.append(UsageCount.customer_id == customer_id)
    if key_id is not None:
        out.append(UsageCount.key_id == key_id)
    return out


async def allowed_by_plan(session: AsyncSession, customer_id: str, start: datetime,
                          end: datetime) -> dict[str, int]:
    """Allowed decisions of ``customer_id`` in [start, end) (whole hours), by the plan in force
    when each was made."""
    rows = await session.execute(
        select(UsageCount.plan, func.sum(UsageCount.decisions))
        .where(UsageCount.customer_id == customer_id, UsageCount.outcome == VALID,
               UsageCount.hour >= start, UsageCount.hour < end)
        .group_by(UsageCount.plan))
    return {plan: int(total or 0) for plan, total in rows.all()}


async def hourly(session: AsyncSession, customer_id: str | None, key_id: str | None,
                 start: datetime, end: datetime) -> list[tuple[datetime, int, int]]:
    """(hour, allowed, denied) for every hour in [start, end) with decisions."""
    allowed = func.sum(case((UsageCount.outcome == VALID, UsageCount.decisions), else_=0))
    denied = func.sum(case((UsageCount.outcome != VALID, UsageCount.decisions), else_=0))
    rows = await session.execute(
        select(UsageCount.hour, allowed, denied)
        .where(and_(*_scope(customer_id, key_id)), UsageCount.hour >= start,
               UsageCount.hour < end)
        .group_by(UsageCount.hour).order_by(UsageCount.hour))
    return [(hour, int(a or 0), int(d or 0)) for hour, a, d in rows.all()]



async def by_outcome(session: AsyncSession, customer_id: str | None, start: datetime,
                     end: datetime) -> list[tuple[datetime, str, int]]:
    """(hour, outcome, decisions) for every hour in [start, end) with decisions: the pages'
    decisions over time, by code."""
    rows = await session.execute(
        select(UsageCount.hour, UsageCount.outcome, func.sum(UsageCount.decisions))
        .where(*_scope(customer_id, None), UsageCount.hour >= start, UsageCount.hour < end)
        .group_by(UsageCount.hour, UsageCount.outcome))
    return [(hour, outcome, int(n or 0)) for hour, outcome, n in rows.all()]


async def by_party(session: AsyncSession, start: datetime,
                   end: datetime) -> list[tuple[str, str, str, str, int]]:
    """(customer id, key id, plan, outcome, decisions) over [start, end): every customer's,
    key's and plan's decisions at once, for the pages' top lists and per-plan figures."""
    rows = await session.execute(
        select(UsageCount.customer_id, UsageCount.key_id, UsageCount.plan, UsageCount.outcome,
               func.sum(UsageCount.decisions))
        .where(UsageCount.hour >= start, UsageCount.hour < end)
        .group_by(UsageCount.customer_id, UsageCount.key_id, UsageCount.plan,
                  UsageCount.outcome))
    return [(c, k, p, o, int(n or 0)) for c, k, p, o, n in rows.all()]
