"""What the pages show of usage, and where each figure comes from.

- Decisions over time (allowed, and refused by code), top customers, top refused keys and
  decisions per plan: the usage ledger (usage/ledger.py), the hourly counts every instance
  adds to. Every instance's pages show the same figures, as fresh as the last flush
  (VIVA_USAGE_FLUSH_INTERVAL); since the ledger counts by the hour, the shortest period is
  the hour under way and the one before it.
- A customer's use of each of its limits now: the limits' own counters, read with a look
  that charges nothing (alerts/usage.py), exact and shared across instances.
- A customer's use per billing period: PeriodTotals (requests and every declared meter),
  against the monthly quota of the plan it was on at the period's end.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sidecar.limiter.engine import Limiter
from sidecar.management import schemas as s
from sidecar.management.alerts.usage import look, shared_limits
from sidecar.management.billing.period import Period
from sidecar.management.meters import REQUESTS
from sidecar.management.plans import PlanSet
from sidecar.management.usage import ledger
from sidecar.management.usage.totals import PeriodTotals
from sidecar.model import Algorithm, RateLimit, Unit

ALLOWED = ledger.VALID
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
# The periods the pages offer: (label, bucket, buckets).
PERIODS = {"hour": ("Last hour", HOUR, 2), "day": ("Last 24 hours", HOUR, 24),
           "month": ("Last 30 days", DAY, 30)}
LABELS = {name: label for name, (label, _, _) in PERIODS.items()}


@dataclass(frozen=True, slots=True)
class Slot:
    """Decisions in [start, start + step), by code."""

    start: datetime
    codes: dict[str, int]

    @property
    def allowed(self) -> int:
        return self.codes.get(ALLOWED, 0)

    @property
    def refused(self) -> int:
        return sum(n for code, n in self.codes.items() if code != ALLOWED)


@dataclass(slots=True)
class Tally:
    """Decisions of one customer, key or plan over a period."""

    id: str
    allowed: int = 0
    refused: int = 0
    customer_id: str = ""
    codes: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return self.allowed + self.refused


@dataclass(frozen=True, slots=True)
class Tallies:
    customers: list[Tally]  # the most decisions first
    refused_keys: list[Tally]  # the most refusals first
    plans: list[Tally]  # by plan id


def period(name: str, now: float) -> tuple[datetime, datetime, timedelta]:
    """[since, until) and the bucket width of one of PERIODS, ending with the bucket under
    way (whole UTC hours or days, the ledger's own buckets)."""
    _, step, count = PERIODS[name]
    width = int(step.total_seconds())
    until = datetime.fromtimestamp((int(now) // width + 1) * width, UTC)
    return until - count * step, until, step


Party = tuple[str, str, str, str]  # customer id, key id, plan, outcome


@dataclass(slots=True)
class SettledDay:
    """A UTC day over (and settled: past the flush grace), read once from the ledger."""

    rows: dict[Party, int]
    codes: dict[str, int]
    stale_at: float  # read again after this (a batch a long outage held back lands late)


class LedgerDecisions:
    """Decision counts read from the usage ledger, aggregated in SQL.

    Every customer's decisions over 30 days are most of the ledger; so the days that are over
    are read once each (SettledDay: their totals by customer, key, plan and outcome) and kept
    for about an hour, and only the day under way is read on every visit. A day counts as
    over ``settle`` seconds after midnight UTC (billing's grace: every instance has flushed
    it by then). At most MAX_CACHED_ROWS rows are kept: past that, days are read each time.
    """

    MAX_CACHED_ROWS = 300_000
    TTL = 3600.0

    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 clock: Callable[[], float], settle: float) -> None:
        self.sessions = sessions
        self.clock = clock
        self.settle = settle
        self._days: dict[datetime, SettledDay] = {}
        self._jitter = random.Random()

    async def decisions(self, since: datetime, until: datetime, step: timedelta,
                        customer_id: str | None = None) -> list[Slot]:
        """One Slot per ``step`` from ``since`` (a whole hour) to ``until``, empty ones
        too."""
        count = int((until - since) / step)
        codes: list[Counter[str]] = [Counter() for _ in range(count)]
        days, rest = self._split(since, until) if customer_id is None and step == DAY \
            else ([], [(since, until)])
        for day in days:
            codes[int((day - since) / step)].update((await self._day(day)).codes)
        async with self.sessions() as session:
            for start, end in rest:
                for hour, outcome, n in await ledger.by_outcome(session, customer_id, start,
                                                                end):
                    codes[int((hour - since) / step)][outcome] += n
        return [Slot(since + i * step, dict(c)) for i, c in enumerate(codes)]

    async def tallies(self, since: datetime, until: datetime, top: int) -> Tallies:
        days, rest = self._split(since, until)
        rows: Counter[Party] = Counter()
        for day in days:
            rows.update((await self._day(day)).rows)
        async with self.sessions() as session:
            for start, end in rest:
                for customer_id, key_id, plan, outcome, n in await ledger.by_party(
                        session, start, end):
                    rows[(customer_id, key_id, plan, outcome)] += n
        customers, keys, plans = tally_rows((*party, n) for party, n in rows.items())
        return Tallies(_top(customers.values(), top, lambda t: t.total),
                       _top([t for t in keys.values() if t.refused], top, lambda t: t.refused),
                       sorted(plans.values(), key=lambda t: t.id))

    def _split(self, since: datetime, until: datetime
               ) -> tuple[list[datetime], list[tuple[datetime, datetime]]]:
        """The settled whole days inside [since, until), and the ranges left around them."""
        settled = datetime.fromtimestamp(self.clock() - self.settle, UTC)
        first = since if since == _midnight(since) else _midnight(since) + DAY
        days = []
        while first + DAY <= min(until, settled):
            days.append(first)
            first += DAY
        if not days:
            return [], [(since, until)]
        rest = [(since, days[0]), (days[-1] + DAY, until)]
        return days, [(a, b) for a, b in rest if a < b]

    async def _day(self, day: datetime) -> SettledDay:
        now = self.clock()
        found = self._days.get(day)
        if found is not None and found.stale_at > now:
            return found
        async with self.sessions() as session:
            read = await ledger.by_party(session, day, day + DAY)
        rows: dict[Party, int] = {}
        codes: Counter[str] = Counter()
        for customer_id, key_id, plan, outcome, n in read:
            rows[(customer_id, key_id, plan, outcome)] = n
            codes[outcome] += n
        # Jittered, so days read together are not all read again together.
        made = SettledDay(rows, dict(codes), now + self.TTL * self._jitter.uniform(0.75, 1.25))
        self._days.pop(day, None)
        oldest = datetime.fromtimestamp(now, UTC) - 2 * PERIODS["month"][2] * DAY
        for old in [d for d in self._days if d < oldest]:
            del self._days[old]
        if sum(len(d.rows) for d in self._days.values()) + len(rows) <= self.MAX_CACHED_ROWS:
            self._days[day] = made
        return made


def _midnight(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def tally_rows(rows: Iterable[tuple[str, str, str, str, int]]
               ) -> tuple[dict[str, Tally], dict[str, Tally], dict[str, Tally]]:
    """Tallies by customer, by key and by plan of (customer, key, plan, outcome, n) rows
    (codes kept for keys only: the pages name a key's refusals)."""
    customers: dict[str, Tally] = {}
    keys: dict[str, Tally] = {}
    plans: dict[str, Tally] = {}
    for customer_id, key_id, plan, code, n in rows:
        allowed = code == ALLOWED
        for by, name in ((customers, customer_id), (keys, key_id), (plans, plan)):
            tally = by.get(name)
            if tally is None:
                tally = by[name] = Tally(name, customer_id=customer_id)
            if allowed:
                tally.allowed += n
            else:
                tally.refused += n
        keys[key_id].codes[code] += n
    return customers, keys, plans


def _top(tallies: Iterable[Tally], limit: int, by: Callable[[Tally], int]) -> list[Tally]:
    return sorted(tallies, key=lambda t: (-by(t), t.id))[:limit]


# -- a customer's limits, now -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LimitUse:
    """One of a customer's limits in its current window: ``used`` of ``capacity``."""

    name: str
    capacity: int
    used: int
    remaining: int
    window_seconds: int
    resets_in: int
    quota: bool
    algorithm: str


def customer_limits(plans: PlanSet, customer: s.Customer) -> list[RateLimit]:
    """The limits a customer's keys share: its plan's, with its own overrides (keys' own
    overrides are counted per key and are not among them)."""
    overrides = [msgspec.to_builtins(limit) for limit in customer.limits or []]
    return shared_limits(plans.plans[customer.plan], overrides, customer.id)


async def limit_usage(engine: Limiter, plans: PlanSet | None,
                      customer: s.Customer) -> list[LimitUse]:
    """How much of each shared limit the customer has used in the current window."""
    if plans is None or customer.plan not in plans.plans:
        return []
    limits = customer_limits(plans, customer)
    out = []
    for limit, status in zip(limits, await look(engine, plans, customer.id, limits),
                             strict=True):
        bucket = limit.algorithm in (Algorithm.TOKEN_BUCKET, Algorithm.LEAKY_BUCKET)
        capacity = max(limit.requests_per_unit, limit.burst) if bucket else \
            limit.requests_per_unit
        remaining = max(0, min(capacity, status.remaining))
        out.append(LimitUse(limit.name, capacity, capacity - remaining, remaining,
                            limit.window_length_ms // 1000, status.reset_seconds,
                            limit.calendar, limit.algorithm.value))
    return out


# -- a customer's billing periods ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeriodUse:
    """A customer's billing period: its requests (allowed decisions) and meters, and the
    monthly quota of the plan it was on at the period's end (None: that plan has none)."""

    period: Period
    plan: str | None
    requests: int
    quota: RateLimit | None
    meters: dict[str, Decimal]


@dataclass(frozen=True, slots=True)
class PlanSpan:
    plan: str
    starts_at: datetime
    ends_at: datetime | None


def recent_periods(customer: s.Customer, now: datetime, count: int) -> list[Period]:
    """The customer's billing periods, the one under way first, at most ``count``."""
    first, out = Period.of(customer.created_at), [Period.of(now)]
    while len(out) < count and out[-1] > first:
        previous = out[-1].start - timedelta(days=1)
        out.append(Period.of(previous))
    return out


def monthly_quota(limits: Sequence[RateLimit]) -> RateLimit | None:
    return next((x for x in limits if x.calendar and x.unit == Unit.MONTH), None)


async def period_usage(totals: PeriodTotals, plans: PlanSet | None, customer: s.Customer,
                       spans: Sequence[PlanSpan], periods: Sequence[Period]
                       ) -> list[PeriodUse]:
    overrides = [msgspec.to_builtins(x) for x in customer.limits or []]
    out = []
    for billing in periods:
        plan = _plan_at_end(spans, billing)
        quota = None
        if plans is not None and plan in plans.plans:
            quota = monthly_quota(shared_limits(plans.plans[plan], overrides, customer.id))
        meters = await totals.meters(customer.id, billing)
        requests = int(meters.pop(REQUESTS, Decimal(0)))
        out.append(PeriodUse(billing, plan, requests, quota, meters))
    return out


def _plan_at_end(spans: Sequence[PlanSpan], billing: Period) -> str | None:
    """The plan of the last span with time inside ``billing``."""
    inside = [x for x in spans
              if x.starts_at < billing.end and (x.ends_at is None or x.ends_at > billing.start)]
    return max(inside, key=lambda x: x.starts_at).plan if inside else None
