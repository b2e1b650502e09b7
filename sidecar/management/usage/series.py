"""``GET /v1/usage``: a customer's or a key's decisions and one meter, per hour, day or month.

Buckets are whole UTC hours, days or months: the range asked for is widened to the buckets
it touches (``from`` rounded down, ``to`` up), and every bucket of the range is in the
series, empty ones too. ``allowed`` and ``denied`` count decisions (denied: every outcome but
VALID); ``value`` is the meter's aggregate in the bucket (``requests``: the allowed
decisions), and ``total`` the same over the whole range (a unique count over the range, not
a sum of the buckets'). The ledger is as fresh as the last flush (VIVA_USAGE_FLUSH_INTERVAL).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from sidecar.management.billing.money import plain
from sidecar.management.billing.period import Period
from sidecar.management.errors import Invalid
from sidecar.management.meters import REQUESTS_METER, Aggregation, Meter
from sidecar.management.usage import ledger, readings
from sidecar.management.usage import schemas as u

MAX_BUCKETS = 2000


@dataclass(frozen=True, slots=True)
class Query:
    customer_id: str | None
    key_id: str | None
    meter: Meter
    start: datetime
    end: datetime
    granularity: u.Granularity


def floor(moment: datetime, granularity: u.Granularity) -> datetime:
    moment = moment.replace(minute=0, second=0, microsecond=0)
    if granularity == "hour":
        return moment
    moment = moment.replace(hour=0)
    return moment if granularity == "day" else moment.replace(day=1)


def step(moment: datetime, granularity: u.Granularity) -> datetime:
    if granularity == "month":
        return Period.of(moment).next().start
    return moment + (timedelta(hours=1) if granularity == "hour" else timedelta(days=1))


def buckets(start: datetime, end: datetime, granularity: u.Granularity) -> list[datetime]:
    """Every bucket start from floor(start) while before ``end``; Invalid past MAX_BUCKETS."""
    out = []
    moment = floor(start, granularity)
    while moment < end:
        out.append(moment)
        if len(out) > MAX_BUCKETS:
            raise Invalid(f"more than {MAX_BUCKETS} {granularity}s between from and to; "
                          "expected a shorter range or a coarser granularity", "to")
        moment = step(moment, granularity)
    return out


async def read_series(session: AsyncSession, query: Query) -> u.UsageSeries:
    starts = buckets(query.start, query.end, query.granularity)
    start = starts[0] if starts else floor(query.start, query.granularity)
    end = step(starts[-1], query.granularity) if starts else start
    slot = {moment: i for i, moment in enumerate(starts)}
    allowed, denied = [0] * len(starts), [0] * len(starts)
    for hour, a, d in await ledger.hourly(session, query.customer_id, query.key_id, start, end):
        i = slot[floor(hour, query.granularity)]
        allowed[i] += a
        denied[i] += d
    if query.meter.counted:
        values, total = [Decimal(a) for a in allowed], Decimal(sum(allowed))
    else:
        values, total = await _meter_values(session, query, start, end, slot)
    points = [u.UsagePoint(moment, allowed[i], denied[i], plain(values[i]))
              for i, moment in enumerate(starts)]
    return u.UsageSeries(query.customer_id, query.key_id, query.meter.name,
                         str(query.meter.aggregation), query.granularity, start, end, points,
                         u.UsageTotal(sum(allowed), sum(denied), plain(total)))


async def _meter_values(session: AsyncSession, query: Query, start: datetime, end: datetime,
                        slot: dict[datetime, int]) -> tuple[list[Decimal], Decimal]:
    aggregation = query.meter.aggregation
    args = (session, query.customer_id, query.key_id, query.meter.name, start, end)
    if aggregation == Aggregation.UNIQUE_COUNT:
        sets: list[set[str]] = [set() for _ in slot]
        for hour, value in await readings.hourly_uniques(*args):
            sets[slot[floor(hour, query.granularity)]].add(value)
        return [Decimal(len(s)) for s in sets], Decimal(len(set().union(*sets)))
    sums = [0] * len(slot)
    for hour, total, peak, events in await readings.hourly_values(*args):
        i = slot[floor(hour, query.granularity)]
        if aggregation == Aggregation.MAX:
            sums[i] = max(sums[i], peak)
        else:
            sums[i] += total if aggregation == Aggregation.SUM else events
    if aggregation == Aggregation.COUNT:
        return [Decimal(n) for n in sums], Decimal(sum(sums))
    overall = max(sums, default=0) if aggregation == Aggregation.MAX else sum(sums)
    return [readings.from_micros(n) for n in sums], readings.from_micros(overall)


def meter_of(name: str, declared: dict[str, Meter]) -> Meter:
    """The meter called ``name`` (``requests`` or a declared one); Invalid otherwise."""
    if name == REQUESTS_METER.name:
        return REQUESTS_METER
    meter = declared.get(name)
    if meter is None:
        known = ", ".join([REQUESTS_METER.name, *sorted(declared)])
        raise Invalid(f"no meter {name[:64]!r}; expected one of {known}", "meter")
    return meter
