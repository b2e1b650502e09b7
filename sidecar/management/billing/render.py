"""An invoice as CSV (one row per line, then the subtotal) and as a printable HTML page
(a Jinja2 template with its style inline: nothing is fetched, so a customer can save it as
a PDF from any browser)."""

from __future__ import annotations

import csv
import io
from datetime import datetime

from jinja2 import Environment, PackageLoader, select_autoescape

from sidecar.management.billing import schemas as b

CSV_COLUMNS = ("invoice", "period", "customer_id", "currency", "plan", "description", "meter",
               "tier", "quantity", "unit_price", "amount")

_pages = Environment(loader=PackageLoader("sidecar.management.billing", "templates"),
                     autoescape=select_autoescape(default=True), trim_blocks=True,
                     lstrip_blocks=True)


def invoice_csv(invoice: b.Invoice) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    head = (invoice.number or "draft", invoice.period, invoice.customer_id, invoice.currency)
    for line in invoice.lines:
        writer.writerow(map(_cell, (*head, line.plan, line.description, line.meter or "",
                                    "" if line.tier is None else str(line.tier),
                                    line.quantity, line.unit_price, line.amount)))
    writer.writerow(map(_cell, (*head, "", "subtotal", "", "", "", "", invoice.subtotal)))
    return out.getvalue()


def _cell(text: str) -> str:
    """Text a spreadsheet will not run as a formula (an id may start with '-')."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@") else text


def invoice_html(invoice: b.Invoice) -> str:
    return _pages.get_template("invoice.html").render(invoice=invoice, day=_day, moment=_moment)


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def _moment(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M")
