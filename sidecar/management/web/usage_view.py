"""A customer's usage as its pages show it, the same on the dashboard's customer page and in
the customer's own portal: its limits now (bars), its billing periods against the monthly
quota (bars), and its decisions over a period by code (stacked bars), each with its numbers in
a table beside the picture."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sidecar.limiter.engine import Limiter
from sidecar.management import schemas as s
from sidecar.management.plans import PlanSet
from sidecar.management.usage.totals import PeriodTotals
from sidecar.management.web.charts import (
    COLOURS,
    codes_present,
    decisions_chart,
    limit_bars,
    period_bars,
    usage_chart,
)
from sidecar.management.web.queries import PageQueries
from sidecar.management.web.usage import (
    LABELS,
    LedgerDecisions,
    limit_usage,
    period,
    period_usage,
    recent_periods,
)

PERIODS_SHOWN = 6  # billing periods on a customer's page, the one under way first


def slot_label(step_seconds: float) -> Callable[[datetime], str]:
    fmt = "%d %b" if step_seconds >= 86400 else "%H:%M"
    return lambda at: at.astimezone(UTC).strftime(fmt)


class CustomerUsage:
    def __init__(self, decisions: LedgerDecisions, engine: Limiter,
                 plans: Callable[[], PlanSet | None], totals: PeriodTotals,
                 queries: PageQueries, clock: Callable[[], float] = time.time) -> None:
        self.decisions = decisions
        self.engine = engine
        self.plans = plans
        self.totals = totals
        self.queries = queries
        self.clock = clock

    async def context(self, customer: s.Customer, name: str, whose: str) -> dict[str, Any]:
        """What the templates' usage sections need, for the period called ``name`` (one of
        LABELS); ``whose`` starts the charts' titles ("Acme Corp:", "Your")."""
        plans = self.plans()
        since, until, step = period(name, self.clock())
        slots = await self.decisions.decisions(since, until, step, customer.id)
        label = slot_label(step.total_seconds())
        uses = await limit_usage(self.engine, plans, customer)
        now = datetime.fromtimestamp(self.clock(), UTC)
        periods = await period_usage(self.totals, plans, customer,
                                     await self.queries.plan_spans(customer.id),
                                     recent_periods(customer, now, PERIODS_SHOWN))
        return {
            "periods": LABELS, "period": name, "slots": slots, "label": label,
            "codes": codes_present(slots), "colours": COLOURS,
            "chart": decisions_chart(slots, f"{whose} decisions, {LABELS[name].lower()}",
                                     label),
            "uses": uses,
            "usage": usage_chart(limit_bars(uses), f"{whose} limits used in the current "
                                                   "window"),
            "billing_periods": periods,
            "periods_chart": usage_chart(period_bars(periods), f"{whose} requests per "
                                                               "billing period"),
        }
