"""``POST /v1/usage/events``: usage the API provider reports (tokens, storage, users, …).

A call whose body is not a list of 1 to 1,000 events of the documented shape (``id``,
``meter``, ``customer_id`` / ``key_id``, ``value``, ``time``, ``properties``) is refused
whole, with a 400 naming the first bad field (``[3].time``): nothing of it is stored, and
the sender fixes it and sends it again. Events of the right shape are then checked one by
one and each is accepted, acknowledged as a duplicate, or rejected with its index and why:

    - exactly one of ``customer_id`` and ``key_id``
    - the meter is declared (``requests`` is counted by the sidecar, never reported)
    - the value suits the meter's aggregation (a number from 0 to 10^12 with at most 6
      decimals for sum and max; a string or a whole number for unique_count)
    - ``time`` (default: now) is at most 5 minutes ahead, while the customer existed, and
      in a billing period that is not closed
    - the customer or key exists

Idempotency: ``id`` is the table's primary key and rows are inserted with ON CONFLICT DO
NOTHING, so an id seen before, in this call, an earlier one, or a concurrent one on any
instance, is stored and counted once (no read-then-write). Events are kept for at least
35 days and until their billing period is closed; after that, the period being closed
refuses the id anyway, so it never counts twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sidecar.management.billing.period import Period
from sidecar.management.db.locks import billing_lock
from sidecar.management.db.models import ApiKey, BillingPeriod, Customer, UsageEvent
from sidecar.management.meters import REQUESTS, Aggregation, Meter
from sidecar.management.plans import PlanSet
from sidecar.management.usage import schemas as u
from sidecar.management.usage.ledger import dialect_insert

log = logging.getLogger("sidecar.usage")

FUTURE = timedelta(minutes=5)
KEEP = timedelta(days=35)
MAX_VALUE = Decimal(10) ** 12
MICROS = Decimal(1_000_000)


@dataclass(slots=True)
class _Event:
    """An event that passed the checks needing no database."""

    index: int
    body: u.UsageEvent
    time: datetime
    value_micros: int | None
    unique_value: str | None


class EventIngest:
    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 plans: Callable[[], PlanSet | None], clock: Callable[[], float],
                 registry: CollectorRegistry) -> None:
        self.sessions = sessions
        self.plans = plans
        self.clock = clock
        self.results = Counter("viva_usage_events", "Reported usage events by result",
                               ("result",), registry=registry)

    async def ingest(self, items: Sequence[u.UsageEvent]) -> u.EventsResult:
        """Check and store ``items`` in one transaction."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        rejected: list[u.Rejected] = []
        checked: list[_Event] = []
        plans = self.plans()
        meters = plans.meters if plans is not None else {}
        for index, body in enumerate(items):
            try:
                checked.append(_check(index, body, meters, now))
            except _Refused as exc:
                rejected.append(u.Rejected(index, str(exc)))
        accepted = duplicates = 0
        if checked:
            async with self.sessions.begin() as session:
                await billing_lock(session, exclusive=False)
                rows = await self._rows(session, checked, now, rejected)
                if rows:
                    inserted = await _insert(session, rows)
                    accepted, duplicates = len(inserted), len(rows) - len(inserted)
        rejected.sort(key=lambda r: r.index)
        for result, count in (("accepted", accepted), ("duplicate", duplicates),
                              ("rejected", len(rejected))):
            if count:
                self.results.labels(result).inc(count)
        return u.EventsResult(accepted, duplicates, rejected)

    async def _rows(self, session: AsyncSession, events: list[_Event], now: datetime,
                    rejected: list[u.Rejected]) -> list[dict[str, Any]]:
        """The rows of the events that pass the database checks; the others join
        ``rejected``."""
        key_ids = {e.body.key_id for e in events if isinstance(e.body.key_id, str)}
        owners = dict((await session.execute(select(ApiKey.id, ApiKey.customer_id).where(
            ApiKey.id.in_(key_ids)))).all()) if key_ids else {}
        customer_ids = {e.body.customer_id for e in events if isinstance(e.body.customer_id,
                                                                        str)}
        customer_ids |= set(owners.values())
        customers = {c.id: c for c in (await session.scalars(select(Customer).where(
            Customer.id.in_(customer_ids)))).all()} if customer_ids else {}
        periods = {str(Period.of(e.time)) for e in events}
        closed = set((await session.scalars(select(BillingPeriod.period).where(
            BillingPeriod.period.in_(periods)))).all())
        rows = []
        for event in events:
            body = event.body
            customer_id = owners.get(body.key_id) if isinstance(body.key_id, str) \
                else body.customer_id
            try:
                if customer_id is None:
                    raise _Refused(f"key_id: no key {body.key_id!r}")
                _check_customer(customers.get(str(customer_id)), str(customer_id), event.time)
                period = str(Period.of(event.time))
                if period in closed:
                    raise _Refused(f"time: the billing period {period} is closed; events "
                                   "dated in it are no longer accepted")
            except _Refused as exc:
                rejected.append(u.Rejected(event.index, str(exc)))
                continue
            rows.append({"id": body.id, "customer_id": customer_id,
                         "key_id": body.key_id if isinstance(body.key_id, str) else None,
                         "meter": body.meter, "occurred_at": event.time,
                         "hour": event.time.replace(minute=0, second=0, microsecond=0),
                         "period": str(Period.of(event.time)),
                         "value_micros": event.value_micros,
                         "unique_value": event.unique_value, "properties": body.properties,
                         "received_at": now})
        return rows

    async def prune(self, now: datetime) -> None:
        """Forget events received more than 35 days ago whose period is closed."""
        async with self.sessions.begin() as session:
            result = await session.execute(delete(UsageEvent).where(
                UsageEvent.received_at < now - KEEP,
                UsageEvent.period.in_(select(BillingPeriod.period))))
        log.info("pruned %d usage events of closed periods", getattr(result, "rowcount", 0))


class _Refused(Exception):
    """One event's rejection: the message says which field and why."""


async def _insert(session: AsyncSession, rows: list[dict[str, Any]]) -> set[str]:
    """Insert ``rows``, skipping ids already stored; the ids actually inserted."""
    statement = dialect_insert(session)(UsageEvent).on_conflict_do_nothing(
        index_elements=["id"]).returning(UsageEvent.id)
    result = await session.execute(statement, rows)
    return set(result.scalars().all())


def _check(index: int, body: u.UsageEvent, meters: dict[str, Meter], now: datetime
           ) -> _Event:
    if isinstance(body.customer_id, str) == isinstance(body.key_id, str):
        raise _Refused("customer_id: give exactly one of customer_id and key_id")
    if body.meter == REQUESTS:
        raise _Refused("meter: 'requests' is counted by the sidecar from its decisions; it "
                       "cannot be reported")
    meter = meters.get(body.meter)
    if meter is None:
        raise _Refused(f"meter: no meter {body.meter!r}; expected one of "
                       f"{', '.join(sorted(meters)) or 'none (declare meters in the plans)'}")
    time = body.time if isinstance(body.time, datetime) else now
    if time > now + FUTURE:
        raise _Refused("time: more than 5 minutes in the future")
    micros, unique = _value(meter, body.value)
    return _Event(index, body, time.astimezone(UTC), micros, unique)


def _value(meter: Meter, value: int | float | str | None) -> tuple[int | None, str | None]:
    """(value in millionths, distinct value) as the meter's aggregation stores them."""
    if meter.aggregation == Aggregation.COUNT:
        return None, None
    if meter.aggregation == Aggregation.UNIQUE_COUNT:
        if isinstance(value, bool) or not isinstance(value, int | str) or value == "" \
                or len(str(value)) > 256:
            raise _Refused(f"value: a {meter.name} event needs the distinct value it counts: "
                           "a string of 1 to 256 characters or a whole number")
        return None, str(value)
    if value is None:
        raise _Refused(f"value: a {meter.name} event needs a value; expected a number from 0 "
                       "to 1000000000000 with at most 6 decimals")
    number = _decimal(value)
    if number is None or not 0 <= number <= MAX_VALUE or number != number.quantize(
            Decimal("0.000001")):
        raise _Refused(f"value: {str(value)[:40]!r} is not a {meter.aggregation} value; "
                       "expected a number from 0 to 1000000000000 with at most 6 decimals")
    return int(number * MICROS), None


def _decimal(value: int | float | str) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _check_customer(customer: Customer | None, customer_id: str, time: datetime) -> None:
    if customer is None:
        raise _Refused(f"customer_id: no customer {customer_id!r}")
    if time < customer.created_at:
        raise _Refused(f"time: before customer {customer_id!r} was created "
                       f"({customer.created_at.isoformat()})")
    if customer.deleted_at is not None and time >= customer.deleted_at:
        raise _Refused(f"time: after customer {customer_id!r} was deleted "
                       f"({customer.deleted_at.isoformat()})")
