"""Price models of a plan's meters (the vocabulary of Lago and OpenMeter), priced exactly.

A meter's price first takes off its ``included`` units; what is left is the *billable*
quantity, which the model prices:

    flat        ``amount`` once per period when the billable quantity is above zero
    per_unit    billable x ``unit_price``
    graduated   each billable unit at the price of the tier it falls in: a tier covers the
                units above the previous tier's ``up_to`` up to and including its own (the
                last tier has no ``up_to``); one charge per tier reached
    volume      every billable unit at the price of the one tier the whole quantity falls in
    package     ``package_price`` per started package of ``package_size`` units

``up_to`` counts billable units (after the included ones). Every charge is exact; rounding
to the currency happens once per invoice line (money.round_line).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from enum import StrEnum

from sidecar.management.billing.money import EXACT

ZERO = Decimal(0)
ONE = Decimal(1)


class Model(StrEnum):
    FLAT = "flat"
    PER_UNIT = "per_unit"
    GRADUATED = "graduated"
    VOLUME = "volume"
    PACKAGE = "package"


@dataclass(frozen=True, slots=True)
class Tier:
    up_to: Decimal | None  # None: the last tier, without an upper bound
    unit_price: Decimal


@dataclass(frozen=True, slots=True)
class MeterPrice:
    model: Model
    included: Decimal = ZERO
    unit_price: Decimal = ZERO  # per_unit
    tiers: tuple[Tier, ...] = ()  # graduated, volume
    amount: Decimal = ZERO  # flat
    package_size: Decimal = ONE  # package
    package_price: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class PlanPrice:
    """What a plan costs per monthly period: a base fee and a price per meter."""

    currency: str
    base_fee: Decimal = ZERO
    meters: Mapping[str, MeterPrice] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Charge:
    """One priced part of a meter's usage, exact (not rounded yet)."""

    included: bool  # the free units (unit price 0), shown so the invoice explains itself
    tier: int | None  # 1-based, for graduated and volume
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal


def price_meter(price: MeterPrice, quantity: Decimal) -> list[Charge]:
    """The charges of ``quantity`` units of a meter under ``price``."""
    out: list[Charge] = []
    if price.included > 0:
        out.append(Charge(True, None, min(quantity, price.included), ZERO, ZERO))
    billable = max(ZERO, quantity - price.included)
    out.extend(_BY_MODEL[price.model](price, billable))
    return out


def _flat(price: MeterPrice, billable: Decimal) -> list[Charge]:
    used = ONE if billable > 0 else ZERO
    return [Charge(False, None, used, price.amount, used * price.amount)]


def _per_unit(price: MeterPrice, billable: Decimal) -> list[Charge]:
    return [Charge(False, None, billable, price.unit_price,
                   EXACT.multiply(billable, price.unit_price))]


def _graduated(price: MeterPrice, billable: Decimal) -> list[Charge]:
    out: list[Charge] = []
    floor = ZERO
    for number, tier in enumerate(price.tiers, 1):
        top = billable if tier.up_to is None else min(billable, tier.up_to)
        units = max(ZERO, top - floor)
        if units > 0 or not out:  # zero usage still shows the first tier, at 0
            out.append(Charge(False, number, units, tier.unit_price,
                              EXACT.multiply(units, tier.unit_price)))
        if tier.up_to is None or billable <= tier.up_to:
            break
        floor = tier.up_to
    return out


def _volume(price: MeterPrice, billable: Decimal) -> list[Charge]:
    number, tier = next((i, t) for i, t in enumerate(price.tiers, 1)
                        if t.up_to is None or billable <= t.up_to)
    return [Charge(False, number, billable, tier.unit_price,
                   EXACT.multiply(billable, tier.unit_price))]


def _package(price: MeterPrice, billable: Decimal) -> list[Charge]:
    packages = EXACT.divide(billable, price.package_size).to_integral_value(
        rounding=ROUND_CEILING)
    return [Charge(False, None, packages, price.package_price,
                   EXACT.multiply(packages, price.package_price))]


_BY_MODEL = {Model.FLAT: _flat, Model.PER_UNIT: _per_unit, Model.GRADUATED: _graduated,
             Model.VOLUME: _volume, Model.PACKAGE: _package}
