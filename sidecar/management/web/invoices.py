"""Invoices on the pages: a customer's final invoices and the running one of the period under
way, each as billing's own printable HTML page or CSV (billing/render.py).

The printable page carries its style inline (nothing is fetched, so it prints alike
anywhere); it is sent with a Content-Security-Policy that allows exactly that style, by its
hash, and nothing else: no script, no other style, no framing.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

from aiohttp import web

from sidecar.management.billing import schemas as b
from sidecar.management.billing.invoicing import Billing
from sidecar.management.billing.period import Period
from sidecar.management.billing.render import invoice_csv, invoice_html
from sidecar.management.errors import Conflict, Invalid, NotFound
from sidecar.management.web.security import protect

SHOWN = 24  # final invoices on a customer's page (two years of monthly periods)
PAGE = 100
FORMATS = ("html", "csv")
_STYLE = re.compile(r"<style>(.*?)</style>", re.S)


@dataclass(frozen=True, slots=True)
class CustomerInvoices:
    running: b.Invoice | None  # the period under way (None: on no priced plan)
    finals: list[b.Invoice]  # newest first


class Invoices:
    def __init__(self, billing: Billing) -> None:
        self.billing = billing

    async def of_customer(self, customer_id: str) -> CustomerInvoices:
        try:
            running: b.Invoice | None = await self.billing.preview(
                customer_id, Period.of(self.billing.now()))
        except (NotFound, Conflict):  # on no priced plan, or no plans loaded
            running = None
        if running is not None and running.status == "final":
            running = None  # the period is closed already: it is among the finals
        # By number, oldest first, a page at a time (a customer has one a month): keep the
        # newest SHOWN.
        finals: list[b.Invoice] = []
        cursor: int | None = None
        while True:
            page = await self.billing.list_invoices(customer_id, None, PAGE, cursor)
            finals = (finals + page.items)[-SHOWN:]
            if page.next_cursor is None:
                return CustomerInvoices(running, finals[::-1])
            cursor = int(page.next_cursor)

    async def final(self, invoice_id: str, customer_id: str | None = None) -> b.Invoice:
        """A final invoice; NotFound when it is not ``customer_id``'s (when given), exactly
        as when it does not exist."""
        invoice = await self.billing.get_invoice(invoice_id)
        if customer_id is not None and invoice.customer_id != customer_id:
            raise NotFound(f"no invoice {invoice_id[:64]!r}")
        return invoice

    async def running(self, customer_id: str) -> b.Invoice:
        invoice = (await self.of_customer(customer_id)).running
        if invoice is None:
            raise NotFound("no running invoice: the customer is on no priced plan this "
                           "period")
        return invoice


def document(invoice: b.Invoice, kind: str) -> web.StreamResponse:
    """``invoice`` as ``kind`` (html or csv)."""
    if kind not in FORMATS:
        raise Invalid(f"{kind[:20]!r} is not a format; expected html or csv", "format")
    name = f"{invoice.number or 'invoice-' + invoice.period + '-draft'}"
    if kind == "csv":
        response = web.Response(text=invoice_csv(invoice), content_type="text/csv",
                                charset="utf-8")
        response.headers["Content-Disposition"] = f'attachment; filename="{name}.csv"'
        return protect(response)
    page = invoice_html(invoice)
    styles = " ".join(f"'sha256-{_digest(css)}'" for css in _STYLE.findall(page))
    response = web.Response(text=page, content_type="text/html", charset="utf-8")
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src {styles}; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'none'")
    return protect(response)


def _digest(css: str) -> str:
    return base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
