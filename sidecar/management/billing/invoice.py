"""An invoice's lines from what a customer used on each plan of a period (pure: no I/O).

    base fee   one line per stretch of time on a priced plan: the plan's monthly base fee x
               the share of the period spent on it (seconds on the plan / seconds in the
               month), so a plan change mid-period prorates both fees by time
    meters     per plan, each priced meter's quantity while on that plan, priced by the
               plan's model (prices.py): one line per charge (included units, each tier)

Usage is priced on the plan in force when it happened: decisions carry the plan that
decided them, reported events fall in the plan periods by their time. Every line is rounded
to the currency's minor unit, half to even; the subtotal is the sum of the rounded lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from sidecar.management.billing import schemas as b
from sidecar.management.billing.money import EXACT, plain, round_line
from sidecar.management.billing.period import Period
from sidecar.management.billing.prices import Charge, MeterPrice, Model, price_meter
from sidecar.management.plans import Plan

SHARE_DECIMALS = Decimal("0.000001")  # how a prorated share is shown (the amount is exact)


@dataclass(frozen=True, slots=True)
class Segment:
    """Time on one plan within the period (already clipped to it)."""

    plan: str
    starts_at: datetime
    ends_at: datetime

    @property
    def seconds(self) -> Decimal:
        span = self.ends_at - self.starts_at
        return Decimal(span.days * 86400 + span.seconds) + Decimal(span.microseconds).scaleb(-6)


@dataclass(slots=True)
class PlanUsage:
    """What a customer used while on ``plan``, and when it was on it."""

    plan: Plan
    segments: list[Segment] = field(default_factory=list)
    quantities: dict[str, Decimal] = field(default_factory=dict)


def invoice_lines(period: Period, usages: list[PlanUsage]
                  ) -> tuple[str, list[b.InvoiceLine], Decimal] | None:
    """(currency, lines, subtotal); None when no plan of ``usages`` has a price."""
    priced = [usage for usage in usages if usage.plan.price is not None]
    prices = [usage.plan.price for usage in priced if usage.plan.price is not None]
    if not prices:
        return None
    currency = prices[0].currency  # every priced plan has the same (plans.build_plans)
    lines: list[b.InvoiceLine] = []
    for usage in priced:
        lines.extend(_base_fees(usage, period, currency))
        lines.extend(_meter_lines(usage, currency))
    subtotal = sum((Decimal(line.amount) for line in lines), Decimal(0))
    return currency, lines, round_line(subtotal, currency)


def _base_fees(usage: PlanUsage, period: Period, currency: str) -> list[b.InvoiceLine]:
    price = usage.plan.price
    assert price is not None
    if price.base_fee <= 0:
        return []
    out = []
    whole = Decimal(period.seconds)
    for segment in usage.segments:
        share = EXACT.divide(segment.seconds, whole)
        amount = round_line(EXACT.multiply(price.base_fee, share), currency)
        prorated = "" if segment.seconds == whole else " (prorated)"
        out.append(b.InvoiceLine(
            usage.plan.id, f"{usage.plan.name} base fee{prorated}", None, None,
            plain(share.quantize(SHARE_DECIMALS, rounding=ROUND_HALF_EVEN).normalize()),
            plain(price.base_fee), plain(amount), segment.starts_at, segment.ends_at))
    return out


def _meter_lines(usage: PlanUsage, currency: str) -> list[b.InvoiceLine]:
    price = usage.plan.price
    assert price is not None
    out = []
    for name, meter_price in price.meters.items():
        quantity = usage.quantities.get(name, Decimal(0))
        for charge in price_meter(meter_price, quantity):
            out.append(b.InvoiceLine(
                usage.plan.id, _describe(name, meter_price, charge), name, charge.tier,
                plain(charge.quantity), plain(charge.unit_price),
                plain(round_line(charge.amount, currency))))
    return out


def _describe(meter: str, price: MeterPrice, charge: Charge) -> str:
    if charge.included:
        return f"{meter}: included ({plain(price.included)})"
    if price.model in (Model.GRADUATED, Model.VOLUME):
        return f"{meter}: tier {charge.tier} ({price.model})"
    if price.model == Model.PACKAGE:
        return f"{meter}: packages of {plain(price.package_size)}"
    if price.model == Model.FLAT:
        return f"{meter}: flat fee"
    return meter
