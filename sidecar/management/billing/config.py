"""The ``meters:`` and per-plan ``price:`` sections of a plans file, checked node by node
with the plans' own checker (every problem reported as ``file:line: path: what; expected
…``, a bad version never replacing a good one).

    meters:
      tokens: {aggregation: sum}
    plans:
      pro:
        price:
          currency: EUR                 # ISO 4217; one currency for every priced plan
          base_fee: "49.00"             # per monthly period, prorated on a plan change
          meters:
            requests: {included: 100000, model: graduated,
                       tiers: [{up_to: 1000000, unit_price: "0.0001"},
                               {unit_price: "0.00005"}]}
            tokens:   {model: per_unit, unit_price: "0.000002"}

Amounts and quantities are read from the YAML text itself, so ``0.0001`` written without
quotes is the decimal 0.0001, never a float.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import yaml

from sidecar.management.billing.money import CURRENCY, MAX_DECIMALS, parse_amount
from sidecar.management.billing.prices import ZERO, MeterPrice, Model, PlanPrice, Tier
from sidecar.management.meters import REQUESTS, Aggregation, Meter
from sidecar.rules.checker import NodeChecker, listing
from sidecar.rules.yaml11 import describe, is_null

METER_KEYS = ("aggregation",)
PRICE_KEYS = ("currency", "base_fee", "meters")
METER_PRICE_KEYS = ("model", "included", "unit_price", "tiers", "amount", "package_size",
                    "package_price")
TIER_KEYS = ("up_to", "unit_price")
# What each model reads, besides ``model`` and ``included``.
MODEL_KEYS = {Model.FLAT: ("amount",), Model.PER_UNIT: ("unit_price",),
              Model.GRADUATED: ("tiers",), Model.VOLUME: ("tiers",),
              Model.PACKAGE: ("package_size", "package_price")}
MAX_TIERS = 20
AMOUNT = f"a number of at least 0 with at most {MAX_DECIMALS} decimals, such as \"0.0001\""


def check_meters(checker: NodeChecker, node: yaml.Node | None,
                 valid_name: Callable[[str], bool]) -> dict[str, Meter]:
    """``meters:`` → the declared meters (``requests`` is built in and cannot be declared)."""
    if node is None or is_null(node):
        return {}
    fields = _mapping_of_names(checker, node, "meters", "meter")
    out: dict[str, Meter] = {}
    for name, (key_node, value_node) in fields.items():
        path = f"meters.{name}"
        if name == REQUESTS:
            checker.fail(key_node, path, "'requests' is built in (allowed decisions)",
                         "another name for a reported meter")
            continue
        if not valid_name(name):
            checker.fail(key_node, path, f"meter name '{name}' is not valid",
                         "1 to 64 letters, digits, '_', '.' or '-'")
            continue
        f = checker.mapping(value_node, path, METER_KEYS)
        if f is None:
            continue
        text = checker.string(f.get("aggregation"), f"{path}.aggregation")
        try:
            out[name] = Meter(name, Aggregation(text))
        except ValueError:
            checker.fail(f.get("aggregation", value_node), f"{path}.aggregation",
                         f"'{text}' is not an aggregation" if text else "no aggregation",
                         f"one of {listing(a.value for a in Aggregation)}")
    return out


def check_price(checker: NodeChecker, node: yaml.Node, path: str) -> PlanPrice | None:
    """A plan's ``price:`` → PlanPrice (the meters it names are checked against the declared
    ones once every plans file is read: plans.build_plans)."""
    f = checker.mapping(node, path, PRICE_KEYS)
    if f is None:
        return None
    currency = checker.string(f.get("currency"), f"{path}.currency")
    if not CURRENCY.match(currency):
        checker.fail(f.get("currency", node), f"{path}.currency",
                     f"'{currency}' is not a currency code" if currency else "no currency",
                     "an ISO 4217 code in capitals, such as EUR or USD")
    base_fee = _amount(checker, f.get("base_fee"), f"{path}.base_fee", ZERO)
    meters: dict[str, MeterPrice] = {}
    if not is_null(f.get("meters")):
        named = _mapping_of_names(checker, f["meters"], f"{path}.meters", "meter")
        for name, (_, value_node) in named.items():
            price = _meter_price(checker, value_node, f"{path}.meters.{name}")
            if price is not None:
                meters[name] = price
    return PlanPrice(currency, base_fee, meters)


def _meter_price(checker: NodeChecker, node: yaml.Node, path: str) -> MeterPrice | None:
    errors = len(checker.errors)
    f = checker.mapping(node, path, METER_PRICE_KEYS)
    if f is None:
        return None
    text = checker.string(f.get("model"), f"{path}.model")
    try:
        model = Model(text)
    except ValueError:
        checker.fail(f.get("model", node), f"{path}.model",
                     f"'{text}' is not a price model" if text else "no price model",
                     f"one of {listing(m.value for m in Model)}")
        return None
    wanted = MODEL_KEYS[model]
    for key in f.keys() - {"model", "included", *wanted}:
        checker.fail(f[key], f"{path}.{key}", f"'{key}' is not used by the {model} model",
                     f"only model, included, {listing(wanted)}")
    for key in wanted:
        if key not in f:
            checker.fail(node, f"{path}.{key}", f"the {model} model needs '{key}'",
                         AMOUNT if key != "tiers" else "a list of tiers")
    price = MeterPrice(
        model, included=_amount(checker, f.get("included"), f"{path}.included", ZERO),
        unit_price=_amount(checker, f.get("unit_price"), f"{path}.unit_price", ZERO),
        amount=_amount(checker, f.get("amount"), f"{path}.amount", ZERO),
        package_size=_amount(checker, f.get("package_size"), f"{path}.package_size",
                             Decimal(1), positive=True),
        package_price=_amount(checker, f.get("package_price"), f"{path}.package_price", ZERO),
        tiers=_tiers(checker, f["tiers"], f"{path}.tiers")
        if "tiers" in f and "tiers" in wanted else ())
    return price if len(checker.errors) == errors else None


def _tiers(checker: NodeChecker, node: yaml.Node, path: str) -> tuple[Tier, ...]:
    expected = ("a list of 1 to 20 tiers like {up_to: 1000, unit_price: \"0.01\"}, the last "
                "one without up_to")
    if not isinstance(node, yaml.SequenceNode) or not 1 <= len(node.value) <= MAX_TIERS:
        shown = "an empty list" if isinstance(node, yaml.SequenceNode) else describe(node)
        checker.fail(node, path, f"{shown} is not a list of tiers", expected)
        return ()
    out: list[Tier] = []
    last = len(node.value) - 1
    for i, item in enumerate(node.value):
        where = f"{path}[{i}]"
        f = checker.mapping(item, where, TIER_KEYS)
        if f is None:
            continue
        if "unit_price" not in f:
            checker.fail(item, f"{where}.unit_price", "a tier needs a unit_price", AMOUNT)
        price = _amount(checker, f.get("unit_price"), f"{where}.unit_price", ZERO)
        up_to = None
        if i < last:
            up_to = _amount(checker, f.get("up_to"), f"{where}.up_to", None, positive=True)
            if "up_to" not in f:
                checker.fail(item, f"{where}.up_to", "only the last tier may be unbounded",
                             "up_to on every tier but the last")
            elif up_to is not None and out and out[-1].up_to is not None \
                    and up_to <= out[-1].up_to:
                checker.fail(f["up_to"], f"{where}.up_to", f"{up_to} is not above the "
                             f"previous tier's {out[-1].up_to}", "up_to growing from tier to "
                             "tier")
        elif "up_to" in f:
            checker.fail(f["up_to"], f"{where}.up_to", "the last tier has an up_to",
                         "no up_to on the last tier (it takes every unit above the others)")
        out.append(Tier(up_to, price))
    return tuple(out)


def _amount(checker: NodeChecker, node: yaml.Node | None, path: str,
            default: Decimal | None, positive: bool = False) -> Decimal:
    if is_null(node):
        return default if default is not None else ZERO
    assert node is not None
    text = str(node.value) if isinstance(node, yaml.ScalarNode) else ""
    value = parse_amount(text)
    if value is None or (positive and value == 0):
        checker.fail(node, path, f"{describe(node)} is not an amount",
                     "a number above 0" if positive else AMOUNT)
        return default if default is not None else ZERO
    return value


def _mapping_of_names(checker: NodeChecker, node: yaml.Node, path: str,
                      what: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    """A mapping whose keys are names chosen by the author (meters), each once."""
    if not isinstance(node, yaml.MappingNode):
        checker.fail(node, path, f"{describe(node)} is not a mapping",
                     f"a mapping of {what} names to their settings")
        return {}
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key_node, value_node in node.value:
        name = checker.string(key_node, path)
        if name in out:
            checker.fail(key_node, f"{path}.{name}", f"{what} '{name}' appears twice",
                         f"each {what} once")
        elif name:
            out[name] = (key_node, value_node)
    return out
