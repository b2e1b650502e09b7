"""The customer's self-service portal (/portal), and the admin call that lets a customer in.

    POST /v1/portal/sessions {"customer_id"}  (root key scope portal:write)
        → 201 {"url", "expires_at"}: a one-time link, good for 15 minutes
    GET  /portal/enter?token=…  a page with a button; POST /portal/enter spends the link and
                                opens a 24-hour session bound to that customer
    GET  /portal                its keys (create, rotate, revoke), its usage, its invoices
    GET  /portal/invoices/{id}[?format=csv], /portal/invoices/running[?format=csv]

Opening the link takes a POST on purpose: mail scanners that fetch every link in a message
would otherwise spend it. Every query of the portal filters by the session's customer id on
the server; a key of another customer is answered exactly as a key that does not exist (404),
so ids cannot be probed; invoices likewise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiohttp import web

from sidecar.management import schemas as s
from sidecar.management.admin import RootKeys, decode
from sidecar.management.catalog import MAX_PAGE, Actor, Catalog
from sidecar.management.errors import Invalid, NotFound
from sidecar.management.plans import PlanSet
from sidecar.management.web.customers import GRACES, key_state
from sidecar.management.web.forms import struct, text, whole_number
from sidecar.management.web.invoices import Invoices, document
from sidecar.management.web.pages import Form, Route, Section, one_of, query
from sidecar.management.web.render import Renderer
from sidecar.management.web.security import origin_of, protect, same_origin
from sidecar.management.web.sessions import PORTAL, Session, SessionStore
from sidecar.management.web.usage import LABELS
from sidecar.management.web.usage_view import CustomerUsage

PORTAL_ACTOR = Actor("portal", frozenset())
MAX_LINK_BODY = 4096
DONE = {"revoked": "Key revoked; it stops working within a second."}


@dataclass(frozen=True, slots=True)
class Visit:
    """A signed-in customer and its forms' token."""

    customer: s.Customer
    csrf: str


class Portal(Section[Visit]):
    kind = PORTAL
    cookie = "viva_portal"
    path = "/portal"
    title = "Portal"

    def __init__(self, store: SessionStore, renderer: Renderer, public_url: str,
                 catalog: Catalog, usage: CustomerUsage, invoices: Invoices,
                 plans: Callable[[], PlanSet | None],
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(store, renderer, public_url)
        self.catalog = catalog
        self.usage = usage
        self.invoices = invoices
        self.plans = plans
        self.clock = clock

    def register(self, add: Route) -> None:
        add("GET", "/portal/enter", self.enter_form)
        add("POST", "/portal/enter", self.enter)
        add("POST", "/portal/sign-out", self.action(self.sign_out))
        add("GET", "/portal", self.page(self.home))
        add("GET", "/portal/", self.page(self.home))
        add("POST", "/portal/keys", self.action(self.create_key))
        add("POST", "/portal/keys/{id}/rotate", self.action(self.rotate_key))
        add("POST", "/portal/keys/{id}/revoke", self.action(self.revoke_key))
        add("GET", "/portal/invoices/running", self.page(self.running_invoice))
        add("GET", "/portal/invoices/{id}", self.page(self.invoice))

    async def visit(self, request: web.Request, session: Session) -> Visit | None:
        try:
            return Visit(await self.catalog.get_customer(session.subject), session.csrf)
        except NotFound:  # the customer was deleted: its sessions are over
            return None

    def signed_out(self, request: web.Request) -> web.StreamResponse:
        return self.error(None, 401, "Signed out", "Your portal session has ended. Ask your "
                          "provider for a new portal link.")

    # -- entering ----------------------------------------------------------------------------

    async def enter_form(self, request: web.Request) -> web.StreamResponse:
        return self.render("portal_enter.html", None, token=query(request, "token", 100))

    async def enter(self, request: web.Request) -> web.StreamResponse:
        if not same_origin(request, self.public_url):
            return self.error(None, 403, "Request refused",
                              "this form was sent from another site")
        form = await self.form(request)
        redeemed = await self.store.redeem_link(str(form.get("token", ""))[:100])
        if redeemed is None:
            return self.error(None, 404, "Link not valid", "This portal link has been used "
                              "already, has expired or is not a link. Ask your provider for a "
                              "new one.")
        secret, _ = redeemed
        return self.start(request, secret, "/portal")

    async def sign_out(self, request: web.Request, visit: Visit,
                       form: Form) -> web.StreamResponse:
        await self.store.close(request.cookies.get(self.cookie, ""))
        return self.end(request, "/portal/enter")

    # -- the customer's own data -------------------------------------------------------------

    async def home(self, request: web.Request, visit: Visit) -> web.StreamResponse:
        customer = visit.customer
        name = one_of(query(request, "period"), LABELS, "day")
        keys = (await self.catalog.list_keys(customer.id, MAX_PAGE, None)).items
        now = self.now()
        plans = self.plans()
        plan = plans.plans.get(customer.plan) if plans else None
        active = sum(1 for k in keys if key_state(k, now) in ("active", "expiring", "disabled"))
        return self.render(
            "portal.html", visit, customer=customer, plan=plan, keys=keys, now=now,
            state=key_state, active=active, graces=GRACES,
            usage=await self.usage.context(customer, name, "Your"),
            invoices=await self.invoices.of_customer(customer.id),
            done=DONE.get(query(request, "done"), ""))

    async def invoice(self, request: web.Request, visit: Visit) -> web.StreamResponse:
        found = await self.invoices.final(request.match_info["id"], visit.customer.id)
        return document(found, query(request, "format") or "html")

    async def running_invoice(self, request: web.Request, visit: Visit) -> web.StreamResponse:
        found = await self.invoices.running(visit.customer.id)
        return document(found, query(request, "format") or "html")

    async def create_key(self, request: web.Request, visit: Visit,
                         form: Form) -> web.StreamResponse:
        body = struct(s.KeyCreate, {"customer_id": visit.customer.id,
                                    "name": text(form, "name")})
        made = await self.catalog.create_key(PORTAL_ACTOR, body)
        return self.render("key_created.html", visit, 201, made=made, replaced=None,
                           back="/portal")

    async def rotate_key(self, request: web.Request, visit: Visit,
                         form: Form) -> web.StreamResponse:
        key_id = await self._own_key(request, visit)
        grace = struct(s.Rotate, {"grace_seconds": whole_number(form, "grace_seconds")})
        made = await self.catalog.rotate_key(PORTAL_ACTOR, key_id, grace.grace_seconds)
        until = self.now() + timedelta(seconds=grace.grace_seconds)
        return self.render("key_created.html", visit, 201, made=made,
                           replaced=(key_id, until), back="/portal")

    async def revoke_key(self, request: web.Request, visit: Visit,
                         form: Form) -> web.StreamResponse:
        key_id = await self._own_key(request, visit)
        await self.catalog.revoke_key(PORTAL_ACTOR, key_id)
        return protect(web.HTTPSeeOther("/portal?done=revoked"))

    async def _own_key(self, request: web.Request, visit: Visit) -> str:
        """The key id of the request when the key is the customer's; any other key is
        answered as one that does not exist."""
        key_id = request.match_info["id"]
        try:
            key = await self.catalog.get_key(key_id)
        except NotFound:
            key = None
        if key is None or key.customer_id != visit.customer.id:
            raise NotFound(f"no key {key_id!r}")
        return key_id

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)


class PortalLinksApi:
    """``POST /v1/portal/sessions``: a one-time portal link for a customer."""

    def __init__(self, store: SessionStore, roots: RootKeys, public_url: str) -> None:
        self.store = store
        self.roots = roots
        self.public_url = public_url

    async def create(self, request: web.Request) -> web.Response:
        actor = self.roots.actor(request, "portal:write")
        data = await request.content.read(MAX_LINK_BODY + 1)
        if len(data) > MAX_LINK_BODY:
            raise Invalid(f"the body is larger than {MAX_LINK_BODY} bytes")
        body = decode(data, s.PortalSessionCreate)
        token, expires = await self.store.issue_link(actor.id, body.customer_id)
        url = f"{origin_of(request, self.public_url)}/portal/enter?token={token}"
        return web.Response(body=s.to_json(s.PortalLink(url, expires)), status=201,
                            content_type="application/json")
