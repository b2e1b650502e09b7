"""The price models and the rounding rule, case by case, with totals computed by hand.

Each case is (model settings, quantity used, expected invoice lines' amounts): zero usage,
included units not reached, reached exactly and exceeded, quantities exactly at a tier edge
and one past it, package boundaries, and the half-even rounding of each line."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from sidecar.management.billing.invoice import PlanUsage, Segment, invoice_lines
from sidecar.management.billing.money import minor_digits, parse_amount, round_line
from sidecar.management.billing.period import Period
from sidecar.management.billing.prices import price_meter
from sidecar.management.plans import build_plans
from sidecar.rules.loader import RuleFile

MODELS = {
    "per_unit": "{included: 1000, model: per_unit, unit_price: 0.002}",
    "graduated": "{included: 100, model: graduated, tiers: [{up_to: 1000, unit_price: 0.01}, "
                 "{up_to: 5000, unit_price: 0.008}, {unit_price: 0.005}]}",
    "volume": "{model: volume, tiers: [{up_to: 100, unit_price: 1.00}, "
              "{up_to: 1000, unit_price: 0.80}, {unit_price: 0.50}]}",
    "package": "{included: 10, model: package, package_size: 100, package_price: 5.00}",
    "flat": "{included: 50, model: flat, amount: 20.00}",
    "half_even": "{model: per_unit, unit_price: 0.005}",
}

# (model, quantity, [(description, quantity, unit price, amount) of each line], total)
CASES = [
    # per_unit: 1,000 included, then 0.002 each
    ("per_unit", "0", [("included", "0", "0.00"), ("", "0", "0.00")], "0.00"),
    ("per_unit", "999", [("included", "999", "0.00"), ("", "0", "0.00")], "0.00"),
    ("per_unit", "1000", [("included", "1000", "0.00"), ("", "0", "0.00")], "0.00"),
    ("per_unit", "1001", [("included", "1000", "0.00"), ("", "1", "0.00")], "0.00"),  # 0.002
    ("per_unit", "3500", [("included", "1000", "0.00"), ("", "2500", "5.00")], "5.00"),
    # graduated: 100 included; billable 1-1000 at 0.01, 1001-5000 at 0.008, then 0.005
    ("graduated", "0", [("included", "0", "0.00"), ("tier 1", "0", "0.00")], "0.00"),
    ("graduated", "100", [("included", "100", "0.00"), ("tier 1", "0", "0.00")], "0.00"),
    ("graduated", "1100", [("included", "100", "0.00"), ("tier 1", "1000", "10.00")],
     "10.00"),  # exactly at the first edge: nothing in tier 2
    ("graduated", "1101", [("included", "100", "0.00"), ("tier 1", "1000", "10.00"),
                           ("tier 2", "1", "0.01")], "10.01"),  # 0.008 -> 0.01
    ("graduated", "5100", [("included", "100", "0.00"), ("tier 1", "1000", "10.00"),
                           ("tier 2", "4000", "32.00")], "42.00"),
    ("graduated", "10100", [("included", "100", "0.00"), ("tier 1", "1000", "10.00"),
                            ("tier 2", "4000", "32.00"), ("tier 3", "5000", "25.00")],
     "67.00"),
    # volume: the whole quantity at the price of the tier it falls in
    ("volume", "0", [("tier 1", "0", "0.00")], "0.00"),
    ("volume", "100", [("tier 1", "100", "100.00")], "100.00"),  # the edge stays in tier 1
    ("volume", "101", [("tier 2", "101", "80.80")], "80.80"),
    ("volume", "1000", [("tier 2", "1000", "800.00")], "800.00"),
    ("volume", "1001", [("tier 3", "1001", "500.50")], "500.50"),
    # package: 10 included, then 5.00 per started 100
    ("package", "0", [("included", "0", "0.00"), ("packages", "0", "0.00")], "0.00"),
    ("package", "10", [("included", "10", "0.00"), ("packages", "0", "0.00")], "0.00"),
    ("package", "11", [("included", "10", "0.00"), ("packages", "1", "5.00")], "5.00"),
    ("package", "110", [("included", "10", "0.00"), ("packages", "1", "5.00")], "5.00"),
    ("package", "111", [("included", "10", "0.00"), ("packages", "2", "10.00")], "10.00"),
    ("package", "12.5", [("included", "10", "0.00"), ("packages", "1", "5.00")], "5.00"),
    # flat: 20.00 once usage goes past the 50 included
    ("flat", "0", [("included", "0", "0.00"), ("flat", "0", "0.00")], "0.00"),
    ("flat", "50", [("included", "50", "0.00"), ("flat", "0", "0.00")], "0.00"),
    ("flat", "51", [("included", "50", "0.00"), ("flat", "1", "20.00")], "20.00"),
    ("flat", "100000", [("included", "50", "0.00"), ("flat", "1", "20.00")], "20.00"),
    # each line rounds half to even: 25 x 0.005 = 0.125 -> 0.12, 27 x 0.005 = 0.135 -> 0.14
    ("half_even", "25", [("", "25", "0.12")], "0.12"),
    ("half_even", "27", [("", "27", "0.14")], "0.14"),
    ("half_even", "12.5", [("", "12.5", "0.06")], "0.06"),  # 0.0625
]


def plans_for(model: str, base_fee: str = "0", currency: str = "EUR") -> str:
    return f"""
meters: {{tokens: {{aggregation: sum}}}}
plans:
  p:
    name: P
    price:
      currency: {currency}
      base_fee: {base_fee}
      meters:
        tokens: {MODELS[model]}
"""


NOVEMBER = Period(2026, 11)


def invoice(model: str, quantity: str) -> tuple[list[tuple[str, str, str]], str]:
    plans = build_plans([RuleFile("plans.yaml", plans_for(model))])
    usage = PlanUsage(plans.plans["p"], [Segment("p", NOVEMBER.start, NOVEMBER.end)],
                      {"tokens": Decimal(quantity)})
    priced = invoice_lines(NOVEMBER, [usage])
    assert priced is not None
    currency, lines, subtotal = priced
    assert currency == "EUR"
    return [(line.description, line.quantity, line.amount) for line in lines], str(subtotal)


@pytest.mark.parametrize(("model", "quantity", "lines", "total"), CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_price_models(model: str, quantity: str, lines: list[tuple[str, str, str]],
                      total: str) -> None:
    got, subtotal = invoice(model, quantity)
    assert [(q, a) for _, q, a in got] == [(q, a) for _, q, a in lines]
    for (description, _, _), (part, _, _) in zip(got, lines, strict=True):
        assert part in description, (description, part)
    assert subtotal == total


def test_a_plan_change_mid_period_prorates_the_base_fees_by_time() -> None:
    plans = build_plans([RuleFile("plans.yaml", """
plans:
  small: {price: {currency: EUR, base_fee: 30.00}}
  large: {price: {currency: EUR, base_fee: "60.00"}}
""")])
    change = datetime(2026, 11, 11, tzinfo=UTC)  # 10 of November's 30 days on small
    usages = [PlanUsage(plans.plans["small"], [Segment("small", NOVEMBER.start, change)]),
              PlanUsage(plans.plans["large"], [Segment("large", change, NOVEMBER.end)])]
    priced = invoice_lines(NOVEMBER, usages)
    assert priced is not None
    _, lines, subtotal = priced
    assert [(line.plan, line.quantity, line.unit_price, line.amount) for line in lines] == [
        ("small", "0.333333", "30.00", "10.00"), ("large", "0.666667", "60.00", "40.00")]
    assert subtotal == Decimal("50.00")
    assert lines[0].description == "small base fee (prorated)"
    assert (lines[0].starts_at, lines[0].ends_at) == (NOVEMBER.start, change)


def test_proration_rounds_each_line_half_even() -> None:
    plans = build_plans([RuleFile("plans.yaml", "plans: {pro: {price: {currency: EUR, "
                                                "base_fee: 49.00}}}")])
    december = Period(2026, 12)
    ten_days = datetime(2026, 12, 11, tzinfo=UTC)
    priced = invoice_lines(december, [PlanUsage(plans.plans["pro"],
                                                [Segment("pro", december.start, ten_days)])])
    assert priced is not None
    assert priced[1][0].amount == "15.81"  # 49 x 10/31 = 15.806451...


def test_an_unpriced_plan_makes_no_invoice() -> None:
    plans = build_plans([RuleFile("plans.yaml", "plans: {free: {name: Free}}")])
    assert invoice_lines(NOVEMBER, [PlanUsage(plans.plans["free"], [
        Segment("free", NOVEMBER.start, NOVEMBER.end)])]) is None


@pytest.mark.parametrize(("currency", "amount", "rounded"), [
    ("EUR", "0.125", "0.12"), ("EUR", "0.135", "0.14"), ("USD", "2.675", "2.68"),
    ("JPY", "1.5", "2"), ("JPY", "2.5", "2"), ("KWD", "0.0015", "0.002"),
    ("KWD", "0.0005", "0.000"), ("CLF", "1.00005", "1.0000")])
def test_rounding_to_the_minor_unit_half_even(currency: str, amount: str,
                                              rounded: str) -> None:
    assert str(round_line(Decimal(amount), currency)) == rounded


def test_minor_units_and_amount_syntax() -> None:
    assert (minor_digits("EUR"), minor_digits("JPY"), minor_digits("BHD")) == (2, 0, 3)
    assert parse_amount("0.0001") == Decimal("0.0001")
    for bad in ("-1", "1e3", "NaN", "0.1234567890123", "", "1,5"):
        assert parse_amount(bad) is None, bad


def test_graduated_quantities_may_be_decimal() -> None:
    plans = build_plans([RuleFile("plans.yaml", plans_for("graduated"))])
    price = plans.plans["p"].price
    assert price is not None
    charges = price_meter(price.meters["tokens"], Decimal("1100.5"))
    assert [(c.tier, c.quantity, c.amount) for c in charges] == [
        (None, Decimal(100), Decimal(0)), (1, Decimal(1000), Decimal("10.00")),
        (2, Decimal("0.5"), Decimal("0.0040"))]
