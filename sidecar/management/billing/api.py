"""The billing endpoints of the admin API (root key, as every admin call).

    GET  /v1/invoices/preview?customer_id=&period=   billing:read   the running invoice
    POST /v1/billing/periods/{YYYY-MM}/close         billing:write  final invoices, once
    GET  /v1/invoices?customer_id=&period=            billing:read   final invoices
    GET  /v1/invoices/{id}[?format=json|csv|html]     billing:read
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from sidecar.management.admin import RootKeys, guarded, paged, reply
from sidecar.management.billing.invoicing import Billing
from sidecar.management.billing.period import Period
from sidecar.management.billing.render import invoice_csv, invoice_html
from sidecar.management.errors import Invalid
from sidecar.management.usage.api import id_param

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
INVOICE_ID = "{id:(?!preview$)[^/]+}"  # "preview" has its own route


class BillingApi:
    def __init__(self, billing: Billing, roots: RootKeys) -> None:
        self.billing = billing
        self.roots = roots

    def register(self, app: web.Application,
                 measured: Callable[[Handler, str], Handler]) -> None:
        routes: list[tuple[str, str, Handler, tuple[str, ...]]] = [
            ("GET", "/v1/invoices/preview", self.preview, ("customer_id", "period")),
            ("POST", "/v1/billing/periods/{period}/close", self.close, ()),
            ("GET", "/v1/invoices", self.list_invoices,
             ("customer_id", "period", "limit", "cursor")),
            ("GET", f"/v1/invoices/{INVOICE_ID}", self.get_invoice, ("format",)),
        ]
        for method, path, handler, query in routes:
            app.router.add_route(method, path, measured(guarded(handler, query), "admin"))

    async def preview(self, request: web.Request) -> web.Response:
        self.roots.actor(request, "billing:read")
        customer_id = id_param(request, "customer_id")
        if customer_id is None:
            raise Invalid("which customer? expected customer_id", "customer_id")
        text = request.query.get("period")
        period = Period.of(self.billing.now()) if text is None else Period.parse(text)
        return reply(await self.billing.preview(customer_id, period))

    async def close(self, request: web.Request) -> web.Response:
        actor = self.roots.actor(request, "billing:write")
        period = Period.parse(request.match_info["period"])
        return reply(await self.billing.close(actor, period))

    async def list_invoices(self, request: web.Request) -> web.Response:
        self.roots.actor(request, "billing:read")
        limit, cursor = paged(request)
        if cursor is not None and not cursor.isdigit():
            raise Invalid("not a cursor this API gave", "cursor")
        text = request.query.get("period")
        return reply(await self.billing.list_invoices(
            id_param(request, "customer_id"),
            None if text is None else Period.parse(text), limit,
            int(cursor) if cursor else None))

    async def get_invoice(self, request: web.Request) -> web.Response:
        self.roots.actor(request, "billing:read")
        kind = request.query.get("format", "json")
        if kind not in ("json", "csv", "html"):
            raise Invalid(f"{kind[:20]!r} is not a format; expected json, csv or html",
                          "format")
        invoice = await self.billing.get_invoice(request.match_info["id"])
        if kind == "json":
            return reply(invoice)
        name = f"{invoice.number or 'invoice'}.{kind}"
        if kind == "csv":
            response = web.Response(text=invoice_csv(invoice), content_type="text/csv")
            response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
            return response
        return web.Response(text=invoice_html(invoice), content_type="text/html")
