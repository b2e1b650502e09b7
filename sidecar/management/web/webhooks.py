"""The dashboard's webhook pages: endpoints (create, with the signing secret shown once;
enable, disable, delete), each endpoint's deliveries newest first, one delivery with its
payload and every attempt, and retrying one.

Every change is the webhooks admin API's own call (alerts/webhooks.py), audited under the
signed-in root key; the pages need the scopes those calls need.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from aiohttp import web

from sidecar.management.alerts import schemas as w
from sidecar.management.alerts.webhooks import Webhooks
from sidecar.management.web.dashboard import Console, Dashboard
from sidecar.management.web.forms import struct, text
from sidecar.management.web.pages import Form, Route, query
from sidecar.management.web.security import protect

READ, WRITE = "webhooks:read", "webhooks:write"
DONE = {"retried": "Delivery queued to be sent again now.",
        "enabled": "Webhook enabled.", "disabled": "Webhook disabled; its deliveries wait.",
        "deleted": "Webhook deleted; its pending deliveries fail."}


class WebhookPages:
    def __init__(self, dashboard: Dashboard, webhooks: Webhooks) -> None:
        self.d = dashboard
        self.webhooks = webhooks

    def register(self, add: Route) -> None:
        d = self.d
        add("GET", "/dashboard/webhooks", d.page(self.listing))
        add("POST", "/dashboard/webhooks", d.action(self.create))
        add("GET", "/dashboard/webhooks/{id}", d.page(self.endpoint))
        add("POST", "/dashboard/webhooks/{id}/enabled", d.action(self.set_enabled))
        add("POST", "/dashboard/webhooks/{id}/delete", d.action(self.delete))
        add("GET", "/dashboard/webhooks/{id}/deliveries/{delivery}", d.page(self.delivery))
        add("POST", "/dashboard/webhooks/{id}/deliveries/{delivery}/retry",
            d.action(self.retry))

    async def listing(self, request: web.Request, visit: Console) -> web.StreamResponse:
        visit.need(READ)
        found = await self.webhooks.list_webhooks(100, query(request, "cursor", 64) or None)
        return self.d.render("webhooks.html", visit, found=found, event_types=w.EVENT_TYPES,
                             done=DONE.get(query(request, "done"), ""))

    async def create(self, request: web.Request, visit: Console,
                     form: Form) -> web.StreamResponse:
        visit.need(WRITE)
        events = [str(e) for e in form.getall("events", [])]
        body = struct(w.WebhookCreate, {"url": text(form, "url"), "events": events or None,
                                        "description": text(form, "description")})
        made = await self.webhooks.create_webhook(visit.actor, body)
        return self.d.render("webhook_created.html", visit, 201, made=made)

    async def endpoint(self, request: web.Request, visit: Console) -> web.StreamResponse:
        visit.need(READ)
        endpoint_id = request.match_info["id"]
        webhook = await self.webhooks.get_webhook(endpoint_id)
        status = query(request, "status") or None
        deliveries = await self.webhooks.list_deliveries(
            endpoint_id, status, 50, query(request, "cursor", 64) or None)
        return self.d.render("webhook.html", visit, webhook=webhook, deliveries=deliveries,
                             wanted=status or "", statuses=w.DELIVERY_STATUSES,
                             done=DONE.get(query(request, "done"), ""))

    async def set_enabled(self, request: web.Request, visit: Console,
                          form: Form) -> web.StreamResponse:
        visit.need(WRITE)
        enabled = text(form, "enabled") == "true"
        webhook = await self.webhooks.update_webhook(visit.actor, request.match_info["id"],
                                                     w.WebhookUpdate(enabled=enabled))
        return _back(webhook.id, "enabled" if enabled else "disabled")

    async def delete(self, request: web.Request, visit: Console,
                     form: Form) -> web.StreamResponse:
        visit.need(WRITE)
        await self.webhooks.delete_webhook(visit.actor, request.match_info["id"])
        return protect(web.HTTPSeeOther("/dashboard/webhooks?done=deleted"))

    async def delivery(self, request: web.Request, visit: Console) -> web.StreamResponse:
        visit.need(READ)
        endpoint_id = request.match_info["id"]
        webhook = await self.webhooks.get_webhook(endpoint_id)
        found = await self.webhooks.get_delivery(endpoint_id, request.match_info["delivery"])
        payload = json.dumps(found.payload, indent=2, sort_keys=True)
        return self.d.render("webhook_delivery.html", visit, webhook=webhook, delivery=found,
                             payload=payload)

    async def retry(self, request: web.Request, visit: Console,
                    form: Form) -> web.StreamResponse:
        visit.need(WRITE)
        endpoint_id = request.match_info["id"]
        await self.webhooks.retry_delivery(visit.actor, endpoint_id,
                                           request.match_info["delivery"])
        return _back(endpoint_id, "retried")


def _back(endpoint_id: str, done: str) -> web.StreamResponse:
    return protect(web.HTTPSeeOther(f"/dashboard/webhooks/{quote(endpoint_id)}?done={done}"))
