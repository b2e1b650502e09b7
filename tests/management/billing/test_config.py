"""Meters and prices in the plans files: read exactly (no floats), and every mistake named
with its file, line and path, as the rest of the plans are."""

from __future__ import annotations

from decimal import Decimal

import pytest

from sidecar.errors import RuleSetError
from sidecar.management.billing.prices import Model
from sidecar.management.meters import Aggregation
from sidecar.management.plans import build_plans, load_plans
from sidecar.rules.loader import RuleFile
from tests.support import ROOT


def problems(*files: tuple[str, str]) -> list[str]:
    with pytest.raises(RuleSetError) as caught:
        build_plans([RuleFile(name, text) for name, text in files])
    return [str(e) for e in caught.value.errors]


def test_the_shipped_plans_declare_meters_and_prices() -> None:
    plans = load_plans(str(ROOT / "config"))
    assert {m.name: m.aggregation for m in plans.meters.values()} == {
        "tokens": Aggregation.SUM, "storage_gb": Aggregation.MAX,
        "active_users": Aggregation.UNIQUE_COUNT}
    pro = plans.plans["pro"].price
    assert pro is not None and pro.currency == "EUR" and pro.base_fee == Decimal("49.00")
    requests = pro.meters["requests"]
    assert (requests.model, requests.included) == (Model.GRADUATED, Decimal(100000))
    assert [t.unit_price for t in requests.tiers] == [Decimal("0.0001"), Decimal("0.00005")]
    assert plans.plans["free"].price is not None


def test_unquoted_prices_are_exact_decimals() -> None:
    plans = build_plans([RuleFile("p.yaml", "meters: {t: {aggregation: sum}}\nplans:\n  a:\n"
                                            "    price: {currency: USD, base_fee: 0.1, meters: "
                                            "{t: {model: per_unit, unit_price: 0.000003}}}\n")])
    price = plans.plans["a"].price
    assert price is not None
    assert price.base_fee == Decimal("0.1") and price.meters["t"].unit_price == Decimal(
        "0.000003")


def test_every_problem_is_named_with_its_place() -> None:
    found = problems(("plans.yaml", """\
meters:
  requests: {aggregation: sum}
  bad: {aggregation: avg}
  typo: {agregation: sum}
plans:
  pro:
    price:
      currency: euro
      base_fee: -5
      meters:
        bad: {model: per_unit, unit_price: 1, tiers: [{unit_price: 1}]}
        typo: {model: tiered}
        nowhere: {model: flat, amount: 1}
        edges: {model: graduated, tiers: [{up_to: 10, unit_price: 1}, {up_to: 5, unit_price: 1},
                                          {unit_price: 1, up_to: 20}]}
        pack: {model: package, package_size: 0}
"""))
    assert found == [
        "plans.yaml:2: meters.requests: 'requests' is built in (allowed decisions); expected "
        "another name for a reported meter",
        "plans.yaml:3: meters.bad.aggregation: 'avg' is not an aggregation; expected one of "
        "count, sum, max, unique_count",
        "plans.yaml:4: meters.typo.agregation: unknown key 'agregation' (did you mean "
        "'aggregation'?); expected one of aggregation",
        "plans.yaml:4: meters.typo.aggregation: no aggregation; expected one of count, sum, "
        "max, unique_count",
        "plans.yaml:8: plans.pro.price.currency: 'euro' is not a currency code; expected an "
        "ISO 4217 code in capitals, such as EUR or USD",
        "plans.yaml:9: plans.pro.price.base_fee: '-5' is not an amount; expected a number of "
        "at least 0 with at most 12 decimals, such as \"0.0001\"",
        "plans.yaml:11: plans.pro.price.meters.bad.tiers: 'tiers' is not used by the per_unit "
        "model; expected only model, included, unit_price",
        "plans.yaml:12: plans.pro.price.meters.typo.model: 'tiered' is not a price model; "
        "expected one of flat, per_unit, graduated, volume, package",
        "plans.yaml:14: plans.pro.price.meters.edges.tiers[1].up_to: 5 is not above the "
        "previous tier's 10; expected up_to growing from tier to tier",
        "plans.yaml:15: plans.pro.price.meters.edges.tiers[2].up_to: the last tier has an "
        "up_to; expected no up_to on the last tier (it takes every unit above the others)",
        "plans.yaml:16: plans.pro.price.meters.pack.package_price: the package model needs "
        "'package_price'; expected a number of at least 0 with at most 12 decimals, such as "
        "\"0.0001\"",
        "plans.yaml:16: plans.pro.price.meters.pack.package_size: '0' is not an amount; "
        "expected a number above 0",
        "plans.yaml: plans.pro.price.meters.nowhere: no meter 'nowhere' is declared; expected "
        "one of requests (declare it under the top-level 'meters:')",
    ]


def test_prices_across_files_share_meters_and_one_currency() -> None:
    found = problems(("a.yaml", "meters: {tokens: {aggregation: sum}}\nplans: {a: {price: "
                                "{currency: EUR, meters: {tokens: {model: per_unit, unit_price: "
                                "1}}}}}\n"),
                     ("b.yaml", "meters: {tokens: {aggregation: max}}\nplans: {b: {price: "
                                "{currency: USD}}}\n"))
    assert found == [
        "b.yaml: meters.tokens: meter 'tokens' is declared in another plans file too; "
        "expected each meter once",
        "b.yaml: plans.b.price.currency: USD differs from EUR of plan 'a'; expected one "
        "currency for every priced plan",
    ]
