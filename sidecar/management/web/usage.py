"""What the pages show of usage: decisions over time by code, top customers, top refused
keys, decisions by plan (a UsageSource), and a customer's use of each of its limits now.

``UsageSource`` is the seam the usage ledger (metering) fills. Until it exists, LiveDecisions
is the source: it hears every key verification of this process (a Verifier listener) and
keeps counts in memory by minute (2 hours), hour (2 days) and day (31 days). What that means
for the pages: counts start at zero when the process starts, and with several instances
each one's dashboard shows its own instance's decisions. Each bucket keeps at most
MAX_ROWS distinct (customer, key, plan, code) rows; past that, new customers' and keys'
decisions are still counted, under their plan and code only.

``limit_usage`` needs no ledger: it peeks at the counters themselves (0 hits, so nothing is
charged) with the limits verification applies, so it is exact and shared across instances.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sidecar.limiter.engine import Engine
from sidecar.management import schemas as s
from sidecar.management.plans import DOMAIN, PlanSet, check_limits, merge_limits, scoped
from sidecar.management.verify import Outcome
from sidecar.model import Algorithm, Descriptor, RateLimit

ALLOWED = "VALID"
MINUTE, HOUR, DAY = 60, 3600, 86400
KEEP = {MINUTE: 120, HOUR: 48, DAY: 31}  # buckets kept per resolution
MAX_ROWS = 50_000
Row = tuple[str, str, str, str]  # customer id, key id, plan, code ("" when unknown)


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


class UsageSource(Protocol):
    """Counts of decisions, as the pages need them (async: the ledger answers from SQL).
    ``description`` tells the reader of a page where the counts come from."""

    description: str

    async def decisions(self, since: datetime, until: datetime, step: timedelta,
                        customer_id: str | None = None) -> list[Slot]: ...

    async def top_customers(self, since: datetime, until: datetime,
                            limit: int) -> list[Tally]: ...

    async def top_refused_keys(self, since: datetime, until: datetime,
                               limit: int) -> list[Tally]: ...

    async def by_plan(self, since: datetime, until: datetime) -> list[Tally]: ...


class LiveDecisions:
    """This process's key verifications, counted in memory (see the module's docstring)."""

    description = ("decisions this instance made since it started (in memory, until the "
                   "usage ledger replaces it)")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._buckets: dict[int, dict[int, Counter[Row]]] = {step: {} for step in KEEP}
        # The overview asks for customers, keys and plans over one period in a row: one pass
        # over the buckets answers all three, while nothing new was counted.
        self._version = 0
        self._memo: tuple[tuple[datetime, datetime, int], list[dict[str, Tally]]] | None = None

    # -- recording (the verification path: a few dict updates) -------------------------------

    def heard(self, outcome: Outcome) -> None:
        key = outcome.key
        if key is None:
            self.add("", "", "", outcome.code, self.clock())
        else:
            self.add(key.customer_id, key.key_id, key.plan, outcome.code, self.clock())

    def add(self, customer_id: str, key_id: str, plan: str, code: str, at: float,
            count: int = 1) -> None:
        row = (customer_id, key_id, plan, code)
        self._version += 1
        for step, buckets in self._buckets.items():
            index = int(at // step)
            bucket = buckets.get(index)
            if bucket is None:
                bucket = buckets[index] = Counter()
                self._forget(buckets, index - KEEP[step] + 1)
            if row not in bucket and len(bucket) >= MAX_ROWS:
                bucket[("", "", plan, code)] += count
            else:
                bucket[row] += count

    @staticmethod
    def _forget(buckets: dict[int, Counter[Row]], oldest: int) -> None:
        for index in [i for i in buckets if i < oldest]:
            del buckets[index]

    # -- reading -----------------------------------------------------------------------------

    def _rows(self, since: datetime, until: datetime,
              step: int | None = None) -> Iterable[tuple[int, Counter[Row]]]:
        """(bucket start, rows) of the coarsest resolution that covers [since, until)."""
        span = (until - since).total_seconds()
        if step is None:
            step = DAY if span > 2 * DAY else HOUR if span > 2 * HOUR else MINUTE
        first, last = since.timestamp(), until.timestamp()
        for index, rows in sorted(self._buckets[step].items()):
            if first <= index * step < last:
                yield index * step, rows

    async def decisions(self, since: datetime, until: datetime, step: timedelta,
                        customer_id: str | None = None) -> list[Slot]:
        width = int(step.total_seconds())
        resolution = max(s for s in KEEP if width % s == 0 and s <= width)
        slots: dict[int, Counter[str]] = {}
        start = since.timestamp()
        for at, rows in self._rows(since, until, resolution):
            codes = slots.setdefault(int((at - start) // width), Counter())
            for (customer, _, _, code), n in rows.items():
                if customer_id is None or customer == customer_id:
                    codes[code] += n
        count = int(-(-(until - since).total_seconds() // width))
        return [Slot(since + i * step, dict(slots.get(i, {}))) for i in range(count)]

    async def top_customers(self, since: datetime, until: datetime,
                            limit: int) -> list[Tally]:
        return _top(self._tallies(since, until, 0), limit, lambda t: t.total)

    async def top_refused_keys(self, since: datetime, until: datetime,
                               limit: int) -> list[Tally]:
        tallies = [t for t in self._tallies(since, until, 1) if t.refused]
        return _top(tallies, limit, lambda t: t.refused)

    async def by_plan(self, since: datetime, until: datetime) -> list[Tally]:
        return sorted(self._tallies(since, until, 2), key=lambda t: t.id)

    def _tallies(self, since: datetime, until: datetime, by: int) -> list[Tally]:
        """Tallies by customer (by=0), key (1) or plan (2) over [since, until)."""
        memo_key = (since, until, self._version)
        if self._memo is None or self._memo[0] != memo_key:
            self._memo = (memo_key, tally_rows(rows for _, rows in self._rows(since, until)))
        return list(self._memo[1][by].values())


def tally_rows(buckets: Iterable[Counter[Row]]) -> list[dict[str, Tally]]:
    """Tallies by customer, by key and by plan (in that order) of the rows of ``buckets``."""
    out: list[dict[str, Tally]] = [{}, {}, {}]
    for rows in buckets:
        for row, n in rows.items():
            code = row[3]
            allowed = code == ALLOWED
            for by in (0, 1, 2):
                name = row[by]
                if not name:
                    continue
                tally = out[by].get(name)
                if tally is None:
                    tally = out[by][name] = Tally(name, customer_id=row[0])
                tally.codes[code] += n
                if allowed:
                    tally.allowed += n
                else:
                    tally.refused += n
    return out


def _top(tallies: list[Tally], limit: int, by: Callable[[Tally], int]) -> list[Tally]:
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

    @property
    def ratio(self) -> float:
        return min(1.0, self.used / self.capacity) if self.capacity else 1.0


def customer_limits(plans: PlanSet, customer: s.Customer) -> tuple[RateLimit, ...]:
    """The limits a customer's keys share: its plan's, with its own overrides (keys' own
    overrides are counted per key and are not among them)."""
    plan = plans.plans[customer.plan]
    own = check_limits([_builtin(x) for x in customer.limits or []], plan.id)
    return tuple(scoped(limit, plan.id) for limit in merge_limits(plan.limits, own))


def _builtin(limit: s.Limit) -> dict[str, object]:
    import msgspec

    out: dict[str, object] = msgspec.to_builtins(limit)
    return out


async def limit_usage(engine: Engine, plans: PlanSet | None,
                      customer: s.Customer) -> list[LimitUse]:
    """How much of each shared limit the customer has used in the current window, read
    from the counters with a 0-hit check (the store is not changed)."""
    if plans is None or customer.plan not in plans.plans:
        return []
    limits = customer_limits(plans, customer)
    if not limits:
        return []
    descriptors = [Descriptor((("customer", customer.id), ("limit", limit.name)), 0, limit)
                   for limit in limits]
    decision = await engine.should_rate_limit(DOMAIN, descriptors, options=plans.options)
    out = []
    for limit, status in zip(limits, decision.statuses, strict=True):
        bucket = limit.algorithm in (Algorithm.TOKEN_BUCKET, Algorithm.LEAKY_BUCKET)
        capacity = max(limit.requests_per_unit, limit.burst) if bucket else \
            limit.requests_per_unit
        remaining = max(0, min(capacity, status.remaining))
        out.append(LimitUse(limit.name, capacity, capacity - remaining, remaining,
                            limit.window_length_ms // 1000, status.reset_seconds,
                            limit.calendar, limit.algorithm.value))
    return out


def period(name: str, now: float) -> tuple[datetime, datetime, timedelta]:
    """The overview's periods: the last hour by minute, day by hour, 30 days by day."""
    step = {"hour": timedelta(minutes=1), "day": timedelta(hours=1),
            "month": timedelta(days=1)}[name]
    count = {"hour": 60, "day": 24, "month": 30}[name]
    width = int(step.total_seconds())
    end = datetime.fromtimestamp((int(now) // width + 1) * width, UTC)
    return end - count * step, end, step
