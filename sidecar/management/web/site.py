"""The web pages, wired: sessions, what they read, the dashboard, the portal, static files.

    SessionStore ─ Dashboard (+ CustomerPages, WebhookPages)   /dashboard…
                 └ Portal                                      /portal…
                 └ PortalLinksApi              POST /v1/portal/sessions (admin API)
    usage ledger ─ LedgerDecisions ┐
    engine counters, PeriodTotals ─ CustomerUsage ─ customer page, portal
    Billing ─ Invoices ───────────┘   Webhooks ─ WebhookPages
    /web/static/<file>                          CSS and the little JavaScript, from the package
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

from sidecar.limiter.engine import Limiter
from sidecar.management import schemas as s
from sidecar.management.admin import RootKeys, guarded
from sidecar.management.alerts.webhooks import Webhooks
from sidecar.management.billing.invoicing import Billing
from sidecar.management.catalog import Catalog
from sidecar.management.plans import PlanSet
from sidecar.management.usage.totals import PeriodTotals
from sidecar.management.verify import Verifier
from sidecar.management.web.customers import CustomerPages
from sidecar.management.web.dashboard import Dashboard
from sidecar.management.web.invoices import Invoices
from sidecar.management.web.portal import Portal, PortalLinksApi
from sidecar.management.web.queries import PageQueries
from sidecar.management.web.render import Renderer
from sidecar.management.web.security import protect
from sidecar.management.web.sessions import SessionStore
from sidecar.management.web.usage import LedgerDecisions
from sidecar.management.web.usage_view import CustomerUsage
from sidecar.management.web.webhooks import WebhookPages

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}


class StaticFiles:
    """The package's static files, read once; URLs carry a hash of the content so browsers
    may keep them for a long time and still never use a stale one."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        self.versions: dict[str, str] = {}
        folder = resources.files("sidecar.management.web") / "static"
        for item in folder.iterdir():
            suffix = "." + item.name.rpartition(".")[2]
            if item.is_file() and suffix in TYPES:
                data = item.read_bytes()
                self.files[item.name] = (data, TYPES[suffix])
                self.versions[item.name] = hashlib.sha256(data).hexdigest()[:12]

    def url(self, name: str) -> str:
        return f"/web/static/{name}?v={self.versions[name]}"

    async def serve(self, request: web.Request) -> web.StreamResponse:
        found = self.files.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        data, kind = found
        response = web.Response(body=data, content_type=kind, charset="utf-8")
        protect(response)
        response.headers["Cache-Control"] = "public, max-age=86400"
        return response


@dataclass(frozen=True, slots=True)
class Sources:
    """What the pages read and change besides the catalog: full mode's other parts."""

    engine: Limiter
    plans: Callable[[], PlanSet | None]
    plans_view: Callable[[], s.Plans]
    totals: PeriodTotals
    billing: Billing
    webhooks: Webhooks
    metering: str  # where decision counts come from, in a sentence


class WebSite:
    def __init__(self, catalog: Catalog, roots: RootKeys, verifier: Verifier,
                 sources: Sources, public_url: str = "",
                 clock: Callable[[], float] = time.time) -> None:
        self.store = SessionStore(catalog.sessions, clock)
        self.static = StaticFiles()
        renderer = Renderer()
        renderer.env.globals["static"] = self.static.url
        queries = PageQueries(catalog.sessions)
        # A day is over for the pages when billing could close it: every instance has flushed it.
        decisions = LedgerDecisions(catalog.sessions, clock,
                                    sources.billing.grace.total_seconds())
        usage = CustomerUsage(decisions, sources.engine, sources.plans, sources.totals,
                              queries, clock)
        invoices = Invoices(sources.billing)
        self.dashboard = Dashboard(self.store, renderer, public_url, catalog, queries,
                                   decisions, roots, verifier, sources.plans_view, clock,
                                   sources.metering)
        self.customers = CustomerPages(self.dashboard, usage, invoices, sources.plans, clock)
        self.webhooks = WebhookPages(self.dashboard, sources.webhooks)
        self.portal = Portal(self.store, renderer, public_url, catalog, usage, invoices,
                             sources.plans, clock)
        self.links = PortalLinksApi(self.store, roots, public_url)

    def register(self, app: web.Application,
                 measured: Callable[[Handler, str], Handler]) -> None:
        """Mount the pages on ``app``; ``measured`` counts a handler in the HTTP metrics."""
        def add(method: str, path: str, handler: Handler) -> None:
            app.router.add_route(method, path, measured(handler, "web"))

        self.dashboard.register(add)
        self.customers.register(add)
        self.webhooks.register(add)
        self.portal.register(add)
        app.router.add_get("/web/static/{name}", self.static.serve)
        app.router.add_post("/v1/portal/sessions",
                            measured(guarded(self.links.create, ()), "admin"))
