"""Billing API types (msgspec): invoices and closed periods.

Amounts, quantities and prices are decimal strings (``"49.00"``, ``"0.0001"``): exact, and
each line's ``amount`` already rounded by the invoice rule (money.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from msgspec import Struct


class InvoiceLine(Struct):
    plan: str
    description: str
    meter: str | None  # None: the plan's base fee
    tier: int | None
    quantity: str
    unit_price: str
    amount: str
    starts_at: datetime | None = None  # the time on the plan a base fee covers
    ends_at: datetime | None = None


class Invoice(Struct):
    """A final invoice (``status: final``: numbered, never changed) or the running one of an
    open period (``status: draft``: no id, no number)."""

    id: str | None
    number: str | None
    status: Literal["draft", "final"]
    customer_id: str
    customer_name: str
    customer_email: str | None
    period: str
    period_start: datetime
    period_end: datetime
    currency: str
    lines: list[InvoiceLine]
    subtotal: str
    total: str
    created_at: datetime | None


class InvoiceList(Struct):
    items: list[Invoice]
    next_cursor: str | None


class PeriodClosed(Struct):
    """A closed period and its invoices; closing it again answers the same."""

    period: str
    closed_at: datetime
    invoices: list[str]  # ids, by invoice number
