"""The dashboard's customer and key pages: search, a customer's page (plan, keys, usage of
each limit now and per billing period, decisions over time, invoices, portal access), create,
change plan; keys created (the secret shown once), rotated with grace, revoked, disabled and
enabled again; a customer's invoices as HTML or CSV.

Every change is the admin API's own catalog call (one transaction with its audit event and
change-log row), made as the signed-in root key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from aiohttp import web

from sidecar.management import schemas as s
from sidecar.management.catalog import MAX_PAGE
from sidecar.management.plans import PlanSet
from sidecar.management.web.dashboard import Console, Dashboard
from sidecar.management.web.forms import end_of_day, struct, text, whole_number
from sidecar.management.web.invoices import Invoices, document
from sidecar.management.web.pages import Form, Route, one_of, query
from sidecar.management.web.security import origin_of, protect
from sidecar.management.web.sessions import PORTAL
from sidecar.management.web.usage import LABELS
from sidecar.management.web.usage_view import CustomerUsage

PAGE = 25
DONE = {"created": "Customer created.",
        "plan": "Plan changed; it applies to the customer's keys at once.",
        "revoked": "Key revoked; every instance refuses it within a second.",
        "disabled": "Key disabled; it answers DISABLED until enabled again.",
        "enabled": "Key enabled.", "session-ended": "Portal session ended."}
GRACES = {0: "at once", 3600: "in 1 hour", 86400: "in 24 hours", 7 * 86400: "in 7 days"}


def key_state(key: s.Key, now: datetime) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    if not key.enabled:
        return "disabled"
    return "expiring" if key.expires_at is not None else "active"


class CustomerPages:
    def __init__(self, dashboard: Dashboard, usage: CustomerUsage, invoices: Invoices,
                 plans: Callable[[], PlanSet | None],
                 clock: Callable[[], float] = time.time) -> None:
        self.d = dashboard
        self.catalog = dashboard.catalog
        self.usage = usage
        self.invoices = invoices
        self.plans = plans
        self.clock = clock

    def register(self, add: Route) -> None:
        d = self.d
        add("GET", "/dashboard/customers", d.page(self.customers))
        add("POST", "/dashboard/customers", d.action(self.create_customer))
        add("GET", "/dashboard/customers/{id}", d.page(self.customer))
        add("POST", "/dashboard/customers/{id}/plan", d.action(self.change_plan))
        add("POST", "/dashboard/customers/{id}/keys", d.action(self.create_key))
        add("POST", "/dashboard/customers/{id}/portal-links", d.action(self.portal_link))
        add("POST", "/dashboard/customers/{id}/portal-sessions/{session}/end",
                   d.action(self.end_portal_session))
        add("POST", "/dashboard/keys/{id}/rotate", d.action(self.rotate_key))
        add("POST", "/dashboard/keys/{id}/revoke", d.action(self.revoke_key))
        add("POST", "/dashboard/keys/{id}/enabled", d.action(self.set_enabled))
        add("GET", "/dashboard/customers/{id}/invoices/running", d.page(self.running_invoice))
        add("GET", "/dashboard/invoices/{id}", d.page(self.invoice))

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    # -- customers ---------------------------------------------------------------------------

    async def customers(self, request: web.Request, visit: Console) -> web.StreamResponse:
        visit.need("customers:read")
        found = await self.d.queries.search_customers(query(request, "q"), PAGE,
                                                      query(request, "cursor", 64) or None)
        plans = self.plans()
        return self.d.render("customers.html", visit, found=found, q=query(request, "q"),
                             plan_ids=sorted(plans.plans) if plans else [])

    async def create_customer(self, request: web.Request, visit: Console,
                              form: Form) -> web.StreamResponse:
        visit.need("customers:write")
        body = struct(s.CustomerCreate, {name: text(form, name)
                                         for name in ("id", "name", "email", "plan")})
        made = await self.catalog.create_customer(visit.actor, body)
        return _back(made.id, "created")

    async def customer(self, request: web.Request, visit: Console) -> web.StreamResponse:
        visit.need("customers:read")
        customer = await self.catalog.get_customer(request.match_info["id"])
        name = one_of(query(request, "period"), LABELS, "day")
        plans = self.plans()
        keys = await self.catalog.list_keys(customer.id, MAX_PAGE, None) \
            if visit.can("keys:read") else None
        sessions = await self.d.store.of_subject(PORTAL, customer.id) \
            if visit.can("portal:write") else []
        usage = await self.usage.context(customer, name, f"{customer.name}:") \
            if visit.can("usage:read") else None
        invoices = await self.invoices.of_customer(customer.id) \
            if visit.can("billing:read") else None
        return self.d.render(
            "customer.html", visit, customer=customer, keys=keys, now=self.now(),
            state=key_state, usage=usage, invoices=invoices,
            plan=plans.plans.get(customer.plan) if plans else None,
            plan_ids=sorted(plans.plans) if plans else [], graces=GRACES,
            portal_sessions=sessions, done=DONE.get(query(request, "done"), ""))

    async def invoice(self, request: web.Request, visit: Console) -> web.StreamResponse:
        visit.need("billing:read")
        found = await self.invoices.final(request.match_info["id"])
        return document(found, query(request, "format") or "html")

    async def running_invoice(self, request: web.Request,
                              visit: Console) -> web.StreamResponse:
        visit.need("billing:read")
        customer = await self.catalog.get_customer(request.match_info["id"])
        found = await self.invoices.running(customer.id)
        return document(found, query(request, "format") or "html")

    async def change_plan(self, request: web.Request, visit: Console,
                          form: Form) -> web.StreamResponse:
        visit.need("customers:write")
        body = struct(s.CustomerUpdate, {"plan": text(form, "plan")})
        customer = await self.catalog.update_customer(visit.actor, request.match_info["id"],
                                                      body)
        return _back(customer.id, "plan")

    # -- keys --------------------------------------------------------------------------------

    async def create_key(self, request: web.Request, visit: Console,
                         form: Form) -> web.StreamResponse:
        visit.need("keys:write")
        body = struct(s.KeyCreate, {"customer_id": request.match_info["id"],
                                    "name": text(form, "name"),
                                    "expires_at": end_of_day(form, "expires_on")})
        made = await self.catalog.create_key(visit.actor, body)
        return self.d.render("key_created.html", visit, 201, made=made, replaced=None,
                             back=f"/dashboard/customers/{made.customer_id}")

    async def rotate_key(self, request: web.Request, visit: Console,
                         form: Form) -> web.StreamResponse:
        visit.need("keys:write")
        grace = struct(s.Rotate, {"grace_seconds": whole_number(form, "grace_seconds")})
        old_id = request.match_info["id"]
        made = await self.catalog.rotate_key(visit.actor, old_id, grace.grace_seconds)
        until = self.now() + timedelta(seconds=grace.grace_seconds)
        return self.d.render("key_created.html", visit, 201, made=made,
                             replaced=(old_id, until),
                             back=f"/dashboard/customers/{made.customer_id}")

    async def revoke_key(self, request: web.Request, visit: Console,
                         form: Form) -> web.StreamResponse:
        visit.need("keys:write")
        key = await self.catalog.revoke_key(visit.actor, request.match_info["id"])
        return _back(key.customer_id, "revoked")

    async def set_enabled(self, request: web.Request, visit: Console,
                          form: Form) -> web.StreamResponse:
        visit.need("keys:write")
        enabled = text(form, "enabled") == "true"
        key = await self.catalog.update_key(visit.actor, request.match_info["id"],
                                            s.KeyUpdate(enabled=enabled))
        return _back(key.customer_id, "enabled" if enabled else "disabled")

    # -- portal access -----------------------------------------------------------------------

    async def portal_link(self, request: web.Request, visit: Console,
                          form: Form) -> web.StreamResponse:
        visit.need("portal:write")
        customer_id = request.match_info["id"]
        token, expires = await self.d.store.issue_link(visit.actor.id, customer_id)
        url = f"{origin_of(request, self.d.public_url)}/portal/enter?token={token}"
        return self.d.render("link_created.html", visit, 201, url=url, expires_at=expires,
                             customer_id=customer_id)

    async def end_portal_session(self, request: web.Request, visit: Console,
                                 form: Form) -> web.StreamResponse:
        visit.need("portal:write")
        customer_id = request.match_info["id"]
        await self.d.store.close_by_hash(PORTAL, customer_id, request.match_info["session"])
        return _back(customer_id, "session-ended")


def _back(customer_id: str, done: str) -> web.StreamResponse:
    from urllib.parse import quote

    return protect(web.HTTPSeeOther(f"/dashboard/customers/{quote(customer_id)}?done={done}"))
