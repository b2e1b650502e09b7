"""Reported usage read back from ``usage_events``, aggregated in SQL on every database.

Values are stored in millionths (``value_micros``), so SUM and MAX are exact integer
arithmetic; unique counts read the distinct values themselves. Series are read per hour
(the ``hour`` column) and rolled up by the caller; prices read exact time ranges (the plan
periods of a customer), so a plan change inside an hour still splits usage exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from sidecar.management.db.models import UsageEvent
from sidecar.management.meters import Aggregation

MICROS = Decimal(1_000_000)
Range = tuple[datetime, datetime]


_AGGREGATE: dict[Aggregation, ColumnElement[Any]] = {
    Aggregation.COUNT: func.count(),
    Aggregation.SUM: func.sum(UsageEvent.value_micros),
    Aggregation.MAX: func.max(UsageEvent.value_micros),
    Aggregation.UNIQUE_COUNT: func.count(UsageEvent.unique_value.distinct()),
}


def _scope(customer_id: str | None, key_id: str | None, meter: str) -> ColumnElement[bool]:
    clauses = [UsageEvent.meter == meter]
    if customer_id is not None:
        clauses.append(UsageEvent.customer_id == customer_id)
    if key_id is not None:
        clauses.append(UsageEvent.key_id == key_id)
    return and_(*clauses)


async def hourly_values(session: AsyncSession, customer_id: str | None, key_id: str | None,
                        meter: str, start: datetime, end: datetime
                        ) -> list[tuple[datetime, int, int, int]]:
    """(hour, sum of micros, max of micros, events) per hour in [start, end)."""
    rows = await session.execute(
        select(UsageEvent.hour, func.coalesce(func.sum(UsageEvent.value_micros), 0),
               func.coalesce(func.max(UsageEvent.value_micros), 0), func.count())
        .where(_scope(customer_id, key_id, meter), UsageEvent.hour >= start,
               UsageEvent.hour < end)
        .group_by(UsageEvent.hour))
    return [(hour, int(total or 0), int(peak or 0), int(n)) for hour, total, peak, n in
            rows.all()]


async def hourly_uniques(session: AsyncSession, customer_id: str | None, key_id: str | None,
                         meter: str, start: datetime, end: datetime
                         ) -> list[tuple[datetime, str]]:
    """Every distinct (hour, value) in [start, end)."""
    rows = await session.execute(
        select(UsageEvent.hour, UsageEvent.unique_value)
        .where(_scope(customer_id, key_id, meter), UsageEvent.hour >= start,
               UsageEvent.hour < end).distinct())
    return [(hour, str(value)) for hour, value in rows.all()]


async def quantity(session: AsyncSession, customer_id: str, meter: str,
                   aggregation: Aggregation, ranges: Sequence[Range]) -> Decimal:
    """The meter's aggregate for ``customer_id`` over the union of ``ranges`` (half-open)."""
    if not ranges:
        return Decimal(0)
    within = or_(*(and_(UsageEvent.occurred_at >= a, UsageEvent.occurred_at < b)
                   for a, b in ranges))
    column = _AGGREGATE[aggregation]
    found = await session.scalar(select(column).where(_scope(customer_id, None, meter), within))
    value = Decimal(int(found or 0))
    if aggregation in (Aggregation.SUM, Aggregation.MAX):
        return value / MICROS
    return value


def from_micros(micros: int) -> Decimal:
    return Decimal(micros) / MICROS
