"""usage.threshold: a customer's usage of a plan limit reached a share the plan names
(``alerts: {thresholds: [0.8, 1.0]}``), raised once per threshold, limit and period.

Usage comes from a UsageReader: ``EngineUsageReader`` (usage.py) reads the engine's live
counters; a reader over the billing ledger fits the same protocol. The customers looked at are
those ``touch``ed since the last round (key verification touches the customer whose limits it
charged: one set insertion on the hot path), every VIVA_ALERTS_INTERVAL. An alert is a mark
(kind, "<customer>/<limit>", period start, threshold) written with its event (marks.py), so
instances sharing the database raise it once between them; each remembers the marks it has
seen, so a customer above a threshold costs no SQL on later rounds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sidecar.management.alerts.marks import raise_once
from sidecar.management.alerts.outbox import Outbox
from sidecar.management.alerts.schemas import UsageThresholdData
from sidecar.management.plans import Plan, PlanSet
from sidecar.model import RateLimit

log = logging.getLogger("sidecar.alerts")

KIND = "usage.threshold"
MAX_REMEMBERED = 100_000


@dataclass(frozen=True, slots=True)
class LimitUsage:
    """How much of ``limit`` a customer used in the period [period_start, period_end)."""

    limit: RateLimit  # as in force for the customer (the plan's, or its override)
    used: int
    period_start: datetime
    period_end: datetime

    @property
    def allowed(self) -> int:
        return self.limit.requests_per_unit


@dataclass(frozen=True, slots=True)
class CustomerUsage:
    plan: str
    limits: Sequence[LimitUsage]


class UsageReader(Protocol):
    """A customer's usage of each of its limits in the current period (None: no such
    customer, or deleted)."""

    async def usage(self, customer_id: str) -> CustomerUsage | None: ...


def crossed(usage: LimitUsage, thresholds: Sequence[Fraction]) -> list[Fraction]:
    """The thresholds ``usage`` has reached (exact: 0.8 of 5 is 4)."""
    if usage.allowed <= 0:
        return []
    return [t for t in thresholds if usage.used * t.denominator >= t.numerator * usage.allowed]


class ThresholdAlerts:
    def __init__(self, reader: UsageReader, sessions: async_sessionmaker[AsyncSession],
                 outbox: Outbox, plans: Callable[[], PlanSet | None],
                 raised: Callable[[str], None] = lambda kind: None) -> None:
        self.reader = reader
        self.sessions = sessions
        self.outbox = outbox
        self.plans = plans
        self.raised = raised
        self._touched: set[str] = set()
        self._seen: set[tuple[str, str, str]] = set()  # marks known to exist

    def touch(self, customer_id: str) -> None:
        self._touched.add(customer_id)

    async def run_once(self) -> int:
        """Look at every customer touched since the last round; returns the alerts raised.
        A customer that could not be read is looked at again next round."""
        customers, self._touched = self._touched, set()
        count = 0
        for customer_id in sorted(customers):
            try:
                count += await self.evaluate(customer_id)
            except Exception as exc:  # the store or the database away: next round
                self._touched.add(customer_id)
                log.warning("usage alerts: cannot read customer %s's usage (%s)", customer_id,
                            type(exc).__name__)
        return count

    async def evaluate(self, customer_id: str) -> int:
        usage = await self.reader.usage(customer_id)
        plans = self.plans()
        plan = plans.plans.get(usage.plan) if usage is not None and plans else None
        if usage is None or plan is None or plan.alerts is None:
            return 0
        count = 0
        for item in usage.limits:
            if plan.alerted(item.limit):
                for threshold in crossed(item, plan.alerts.thresholds):
                    count += await self._raise(customer_id, plan, item, threshold)
        return count

    async def _raise(self, customer_id: str, plan: Plan, item: LimitUsage,
                     threshold: Fraction) -> int:
        subject = f"{customer_id}/{item.limit.name}"
        mark = (subject, item.period_start.isoformat(), f"{float(threshold):g}")
        if mark in self._seen:
            return 0
        data = UsageThresholdData(customer_id, plan.id, item.limit.name, float(threshold),
                                  item.used, item.allowed, item.period_start, item.period_end)
        raised = await raise_once(self.sessions, self.outbox, KIND, *mark, data)
        if len(self._seen) >= MAX_REMEMBERED:
            self._seen.clear()
        self._seen.add(mark)
        if raised:
            self.raised(KIND)
            log.info("usage.threshold: customer %s reached %s of %s", customer_id, mark[2],
                     item.limit.name)
        return int(raised)
