"""How much of its limits and meters a customer has used: what usage alerts read.

``UsageReader.limits(customer_id)`` peeks (charges nothing) at every limit that counts per
customer (the plan's, with the customer's overrides) in the same engine and store that
verification charges, so the answer is exact for every algorithm and shared by every
instance on the same Redis. ``UsageReader.meters(customer_id, period)`` totals the meters of
a billing period from the ledger and the reported events (as fresh as the last flush).

The flusher's ``flushed`` hooks (flusher.py) name the customers whose usage just changed:
an alerting component subscribes there and reads these two for those customers only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sidecar.errors import RuleSetError
from sidecar.limiter.engine import Engine
from sidecar.management.billing.period import Period
from sidecar.management.db.models import Customer
from sidecar.management.errors import NotFound
from sidecar.management.meters import REQUESTS
from sidecar.management.plans import DOMAIN, PlanSet, check_limits, merge_limits, scoped
from sidecar.management.usage import ledger, readings
from sidecar.model import Descriptor


@dataclass(frozen=True, slots=True)
class LimitUsage:
    """One limit in its current window: ``used`` of ``limit``, until ``reset_at``."""

    name: str
    limit: int
    used: int
    remaining: int
    reset_at: float  # epoch seconds
    window_seconds: int
    quota: bool  # calendar: true (QUOTA_EXCEEDED when used up)

    @property
    def share(self) -> float:
        """How much of the limit is used, from 0.0 to 1.0 (1.0 for a limit of 0)."""
        return 1.0 if self.limit <= 0 else min(1.0, self.used / self.limit)


class UsageReader:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], engine: Engine,
                 plans: Callable[[], PlanSet | None]) -> None:
        self.sessions = sessions
        self.engine = engine
        self.plans = plans

    async def limits(self, customer_id: str) -> list[LimitUsage]:
        """Every customer-wide limit of ``customer_id`` now; NotFound for no such customer,
        [] when its plan is not in the plans files."""
        async with self.sessions() as session:
            customer = await session.scalar(select(Customer).where(
                Customer.id == customer_id, Customer.deleted_at.is_(None)))
        if customer is None:
            raise NotFound(f"no customer {customer_id!r}", "customer_id")
        plans = self.plans()
        plan = plans.plans.get(customer.plan) if plans is not None else None
        if plans is None or plan is None:
            return []
        try:
            own = check_limits(customer.limits or [], plan.id)
        except RuleSetError:  # checked when written; verification falls back the same way
            own = []
        limits = [scoped(limit, plan.id) for limit in merge_limits(plan.limits, own)]
        if not limits:
            return []
        descriptors = [Descriptor((("customer", customer_id), ("limit", limit.name)), 0, limit)
                       for limit in limits]
        decision = await self.engine.should_rate_limit(DOMAIN, descriptors,
                                                       options=plans.options)
        now = self.engine.clock()
        return [LimitUsage(limit.name, limit.requests_per_unit,
                           max(0, limit.requests_per_unit - status.remaining), status.remaining,
                           now + status.reset_seconds, limit.window_length_ms // 1000,
                           limit.calendar)
                for limit, status in zip(limits, decision.statuses, strict=True)]

    async def meters(self, customer_id: str, period: Period) -> dict[str, Decimal]:
        """``requests`` and every declared meter of ``customer_id`` over ``period``."""
        plans = self.plans()
        declared = plans.meters if plans is not None else {}
        span = [(period.start, period.end)]
        async with self.sessions() as session:
            allowed = await ledger.allowed_by_plan(session, customer_id, period.start,
                                                   period.end)
            out = {REQUESTS: Decimal(sum(allowed.values()))}
            for meter in declared.values():
                out[meter.name] = await readings.quantity(session, customer_id, meter.name,
                                                          meter.aggregation, span)
        return out
