"""A customer's totals over a billing period, every meter at once (``requests`` from the
ledger, the others from the reported events): what a dashboard or portal page shows as
"this month so far". As fresh as the last flush.

How much of each *limit* a customer has used right now is read from the engine's counters,
not from here: alerts/usage.py (EngineUsageReader).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sidecar.management.billing.period import Period
from sidecar.management.meters import REQUESTS
from sidecar.management.plans import PlanSet
from sidecar.management.usage import ledger, readings


class PeriodTotals:
    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 plans: Callable[[], PlanSet | None]) -> None:
        self.sessions = sessions
        self.plans = plans

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
