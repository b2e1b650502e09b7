"""The API provider's dashboard (/dashboard): sign-in with a root key, overview, plans, audit.

Signing in needs a root key with the ``dashboard`` scope (or ``admin``); each page and action
then needs the scope the matching admin API call needs (``customers:read`` to list
customers, ``usage:read`` for decisions and usage, ``keys:write`` to rotate a key, ``admin``
for the audit log …), and every change goes through the catalog's own transactions, audited
under the root key's id. The customer and key pages are in customers.py, the webhook pages
in webhooks.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sidecar.management import schemas as s
from sidecar.management.admin import RootKeys
from sidecar.management.catalog import Actor, Catalog
from sidecar.management.errors import Forbidden, Invalid
from sidecar.management.keys import hash_key
from sidecar.management.verify import Verifier
from sidecar.management.web.charts import COLOURS, codes_present, decisions_chart
from sidecar.management.web.pages import Form, Route, Section, query
from sidecar.management.web.queries import PageQueries
from sidecar.management.web.render import Renderer
from sidecar.management.web.security import protect, same_origin
from sidecar.management.web.sessions import DASHBOARD, Session, SessionStore
from sidecar.management.web.usage import ALLOWED, LABELS, LedgerDecisions, Tally, period
from sidecar.management.web.usage_view import slot_label

TOP = 10


@dataclass(frozen=True, slots=True)
class Console:
    """A signed-in dashboard user: the root key's id and scopes, and the forms' token."""

    actor: Actor
    csrf: str

    def can(self, scope: str) -> bool:
        return scope in self.actor.scopes or "admin" in self.actor.scopes

    def need(self, scope: str) -> None:
        if not self.can(scope):
            raise Forbidden(f"the root key lacks the scope {scope!r}")


def refusals(tally: Tally) -> str:
    """A tally's refusals by code: "RATE_LIMITED 3, REVOKED 1"."""
    return ", ".join(f"{code} {n:,}" for code, n in sorted(tally.codes.items())
                     if code != ALLOWED and n)


class Dashboard(Section[Console]):
    kind = DASHBOARD
    cookie = "viva_dashboard"
    path = "/dashboard"
    title = "Dashboard"

    def __init__(self, store: SessionStore, renderer: Renderer, public_url: str,
                 catalog: Catalog, queries: PageQueries, decisions: LedgerDecisions,
                 roots: RootKeys, verifier: Verifier, plans_view: Callable[[], s.Plans],
                 clock: Callable[[], float] = time.time, metering: str = "") -> None:
        super().__init__(store, renderer, public_url)
        self.catalog = catalog
        self.queries = queries
        self.decisions = decisions
        # Where the decision counts come from, in a sentence for the pages.
        self.metering = metering
        self.roots = roots
        self.verifier = verifier
        self.plans_view = plans_view
        self.clock = clock

    def register(self, add: Route) -> None:
        add("GET", "/dashboard/sign-in", self.sign_in_form)
        add("POST", "/dashboard/sign-in", self.sign_in)
        add("POST", "/dashboard/sign-out", self.action(self.sign_out))
        add("GET", "/dashboard", self.page(self.overview))
        add("GET", "/dashboard/", self.page(self.overview))
        add("GET", "/dashboard/plans", self.page(self.plans))
        add("GET", "/dashboard/audit", self.page(self.audit))

    # -- sessions ----------------------------------------------------------------------------

    async def visit(self, request: web.Request, session: Session) -> Console | None:
        """The session's root key, if it still exists and may still sign in."""
        for actor in self.roots.by_hash.values():
            if actor.id == session.subject:
                may = "dashboard" in actor.scopes or "admin" in actor.scopes
                return Console(actor, session.csrf) if may else None
        return None

    def signed_out(self, request: web.Request) -> web.StreamResponse:
        return protect(web.HTTPSeeOther("/dashboard/sign-in"))

    async def sign_in_form(self, request: web.Request) -> web.StreamResponse:
        return self.render("sign_in.html", None, error=None)

    async def sign_in(self, request: web.Request) -> web.StreamResponse:
        """A root key with the dashboard scope opens a session. Failures count against the
        client address's failed-verification budget, as a bad API key does."""
        if not same_origin(request, self.public_url):
            return self.error(None, 403, "Request refused", "this form was sent from another "
                              "site")
        client = request.remote or ""
        if await self.verifier.throttled(client):
            return self.render("sign_in.html", None, 429,
                               error="Too many failed attempts from this address; wait a "
                                     "minute and try again.")
        form = await self.form(request)
        secret = str(form.get("root_key", "")).strip()
        actor = self.roots.by_hash.get(hash_key(secret)) if 0 < len(secret) <= 512 else None
        if actor is None:
            await self.verifier.failed(client)
            return self.render("sign_in.html", None, 401, error="That root key is not valid.")
        if "dashboard" not in actor.scopes and "admin" not in actor.scopes:
            return self.render("sign_in.html", None, 403,
                               error="That root key lacks the 'dashboard' scope.")
        await self.store.prune()
        cookie, _ = await self.store.open(DASHBOARD, actor.id)
        return self.start(request, cookie, "/dashboard")

    async def sign_out(self, request: web.Request, visit: Console,
                       form: Form) -> web.StreamResponse:
        await self.store.close(request.cookies.get(self.cookie, ""))
        return self.end(request, "/dashboard/sign-in")

    # -- pages -------------------------------------------------------------------------------

    async def overview(self, request: web.Request, visit: Console) -> web.StreamResponse:
        name = query(request, "period") or "day"
        if name not in LABELS:
            raise Invalid(f"expected one of {', '.join(LABELS)}", "period")
        context = await self._usage(name) if visit.can("usage:read") else {}
        return self.render(
            "overview.html", visit, periods=LABELS, period=name, metering=self.metering,
            customers_per_plan=await self.queries.customers_per_plan()
            if visit.can("customers:read") else {},
            alerts=await self.queries.recent_alerts(TOP)
            if visit.can("customers:read") else None,
            failures=await self.queries.recent_failures(TOP)
            if visit.can("webhooks:read") else None, **context)

    async def _usage(self, name: str) -> dict[str, Any]:
        """The overview's decisions: over time by code, top customers, top refused keys,
        per plan."""
        since, until, step = period(name, self.clock())
        slots = await self.decisions.decisions(since, until, step)
        tallies = await self.decisions.tallies(since, until, TOP)
        names = await self.queries.customer_names(
            [t.id for t in tallies.customers] + [t.customer_id for t in tallies.refused_keys])
        totals: dict[str, int] = {}
        for slot in slots:
            for code, n in slot.codes.items():
                totals[code] = totals.get(code, 0) + n
        label = slot_label(step.total_seconds())
        return {"slots": slots, "label": label, "codes": codes_present(slots),
                "chart": decisions_chart(slots, f"Decisions, {LABELS[name].lower()}", label),
                "colours": COLOURS, "totals": totals, "top_customers": tallies.customers,
                "top_keys": tallies.refused_keys, "by_plan": tallies.plans, "names": names,
                "labels": await self.queries.key_labels(t.id for t in tallies.refused_keys),
                "refusals": refusals, "since": since}

    async def plans(self, request: web.Request, visit: Console) -> web.StreamResponse:
        visit.need("customers:read")
        return self.render("plans.html", visit, plans=self.plans_view(),
                           customers_per_plan=await self.queries.customers_per_plan())

    async def audit(self, request: web.Request, visit: Console) -> web.StreamResponse:
        visit.need("admin")
        target = query(request, "target", 80)
        cursor = query(request, "cursor", 20)
        if cursor and not cursor.isdigit():
            raise Invalid("not a cursor this page gave", "cursor")
        events = await self.catalog.list_audit(target or None, 50,
                                               int(cursor) if cursor else None)
        return self.render("audit.html", visit, events=events, target=target)
