"""The webhooks admin API (full mode, on the HTTP port), over ``Webhooks`` (webhooks.py).

    POST   /v1/webhooks                                         webhooks:write  (201, secret)
    GET    /v1/webhooks[/{id}]                                  webhooks:read
    PATCH  /v1/webhooks/{id}, DELETE /v1/webhooks/{id}          webhooks:write
    GET    /v1/webhooks/{id}/deliveries[/{delivery_id}]         webhooks:read
    POST   /v1/webhooks/{id}/deliveries/{delivery_id}/retry     webhooks:write  (202)

Authentication, errors and measuring are the admin API's (admin.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from sidecar.management.admin import Handler, RootKeys, guarded, paged, read_body, reply
from sidecar.management.alerts import schemas as w
from sidecar.management.alerts.webhooks import Webhooks

READ, WRITE = "webhooks:read", "webhooks:write"


class WebhooksApi:
    def __init__(self, webhooks: Webhooks, roots: RootKeys, max_body: int) -> None:
        self.webhooks = webhooks
        self.roots = roots
        self.max_body = max_body

    def register(self, app: web.Application,
                 measured: Callable[[Handler, str], Handler]) -> None:
        page = ("limit", "cursor")
        one = "/v1/webhooks/{id}"
        delivery = f"{one}/deliveries/{{delivery_id}}"
        routes: list[tuple[str, str, Callable[[web.Request], Awaitable[web.Response]],
                           tuple[str, ...]]] = [
            ("POST", "/v1/webhooks", self.create, ()),
            ("GET", "/v1/webhooks", self.listing, page),
            ("GET", one, self.get, ()),
            ("PATCH", one, self.update, ()),
            ("DELETE", one, self.delete, ()),
            ("GET", f"{one}/deliveries", self.deliveries, ("status", *page)),
            ("GET", delivery, self.delivery, ()),
            ("POST", f"{delivery}/retry", self.retry, ()),
        ]
        for method, path, handler, query in routes:
            app.router.add_route(method, path, measured(guarded(handler, query), "admin"))

    async def create(self, request: web.Request) -> web.Response:
        actor = self.roots.actor(request, WRITE)
        body = await read_body(request, w.WebhookCreate, self.max_body)
        return reply(await self.webhooks.create_webhook(actor, body), 201)

    async def listing(self, request: web.Request) -> web.Response:
        self.roots.actor(request, READ)
        limit, cursor = paged(request)
        return reply(await self.webhooks.list_webhooks(limit, cursor))

    async def get(self, request: web.Request) -> web.Response:
        self.roots.actor(request, READ)
        return reply(await self.webhooks.get_webhook(request.match_info["id"]))

    async def update(self, request: web.Request) -> web.Response:
        actor = self.roots.actor(request, WRITE)
        body = await read_body(request, w.WebhookUpdate, self.max_body)
        return reply(await self.webhooks.update_webhook(actor, request.match_info["id"], body))

    async def delete(self, request: web.Request) -> web.Response:
        actor = self.roots.actor(request, WRITE)
        await self.webhooks.delete_webhook(actor, request.match_info["id"])
        return web.Response(status=204)

    async def deliveries(self, request: web.Request) -> web.Response:
        self.roots.actor(request, READ)
        limit, cursor = paged(request)
        return reply(await self.webhooks.list_deliveries(
            request.match_info["id"], request.query.get("status"), limit, cursor))

    async def delivery(self, request: web.Request) -> web.Response:
        self.roots.actor(request, READ)
        return reply(await self.webhooks.get_delivery(request.match_info["id"],
                                                      request.match_info["delivery_id"]))

    async def retry(self, request: web.Request) -> web.Response:
        actor = self.roots.actor(request, WRITE)
        retried = await self.webhooks.retry_delivery(actor, request.match_info["id"],
                                                     request.match_info["delivery_id"])
        return reply(retried, 202)
