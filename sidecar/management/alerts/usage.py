"""A UsageReader over the engine's live counters: what verification has charged so far.

It checks the customer's limits with zero hits (a look that charges nothing) through the same
engine, store and counter keys as key verification: the plan's limits with the customer's
overrides, which every key of the customer shares. A key's own override counts per key and is
not read here. The period of a calendar quota is its calendar window in the plans' time zone;
of any other limit, its epoch-aligned window (for sliding windows, the fixed window now under
way: a threshold is raised at most once in each). ``shared_limits`` and ``look`` also give
the web pages a customer's use of every limit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sidecar.errors import RuleSetError
from sidecar.limiter.engine import Limiter
from sidecar.limiter.windows import aligned_window, calendar_window
from sidecar.management.alerts.thresholds import CustomerUsage, LimitUsage
from sidecar.management.db.models import Customer
from sidecar.management.plans import DOMAIN, Plan, PlanSet, check_limits, merge_limits, scoped
from sidecar.model import Descriptor, DescriptorStatus, RateLimit

log = logging.getLogger("sidecar.alerts")


def period(limit: RateLimit, now_ms: int, zone: ZoneInfo) -> tuple[datetime, datetime]:
    if limit.calendar:
        start, end = calendar_window(now_ms, limit.unit.name.lower(), zone)
    else:
        start, end = aligned_window(now_ms, limit.window_length_ms)
    return datetime.fromtimestamp(start / 1000, UTC), datetime.fromtimestamp(end / 1000, UTC)


def shared_limits(plan: Plan, overrides: Sequence[Mapping[str, Any]] | None,
                  customer_id: str) -> list[RateLimit]:
    """The limits every key of a customer shares: its plan's, with its own overrides (as
    stored), scoped to the plan as verification scopes them."""
    try:
        own = check_limits(list(overrides or []), plan.id)
    except RuleSetError as exc:  # checked when written, as verification assumes
        log.error("customer %s: stored limits are invalid (%s)", customer_id, exc)
        own = []
    return [scoped(limit, plan.id) for limit in merge_limits(plan.limits, own)]


async def look(engine: Limiter, plans: PlanSet, customer_id: str,
               limits: Sequence[RateLimit]) -> list[DescriptorStatus]:
    """Each limit's status for ``customer_id`` now, read through the same engine, store and
    counter keys as verification, with zero hits: nothing is charged."""
    if not limits:
        return []
    descriptors = [Descriptor((("customer", customer_id), ("limit", limit.name)), 0, limit)
                   for limit in limits]
    decision = await engine.should_rate_limit(DOMAIN, descriptors, options=plans.options)
    return list(decision.statuses)


class EngineUsageReader:
    def __init__(self, engine: Limiter, sessions: async_sessionmaker[AsyncSession],
                 plans: Callable[[], PlanSet | None]) -> None:
        self.engine = engine
        self.sessions = sessions
        self.plans = plans

    async def usage(self, customer_id: str) -> CustomerUsage | None:
        async with self.sessions() as session:
            customer = await session.scalar(select(Customer).where(
                Customer.id == customer_id, Customer.deleted_at.is_(None)))
        plans = self.plans()
        plan = plans.plans.get(customer.plan) if customer is not None and plans else None
        if customer is None or plans is None or plan is None:
            return None
        watched = [limit for limit in shared_limits(plan, customer.limits, customer_id)
                   if plan.alerted(limit)]
        statuses = await look(self.engine, plans, customer_id, watched)
        now_ms = int(self.engine.clock() * 1000)
        zone = ZoneInfo(plans.time_zone)
        return CustomerUsage(plan.id, [
            LimitUsage(limit, max(0, limit.requests_per_unit - status.remaining),
                       *period(limit, now_ms, zone))
            for limit, status in zip(watched, statuses, strict=True)])
