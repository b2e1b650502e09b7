"""The admin REST API (full mode, on the HTTP port): customers, keys, audit, verification.

Every call sends ``Authorization: Bearer <root key>``: 401 without a valid one, 403 without
the scope (``admin`` holds every scope). Errors are ``{"error", "field"}`` as in the rest of
the HTTP API; a failed call changes nothing (catalog.py: one transaction per call).

    POST   /v1/customers                 customers:write    GET /v1/customers[/{id}]  :read
    PATCH  /v1/customers/{id}            customers:write    DELETE /v1/customers/{id} :write
    POST   /v1/keys                      keys:write         GET /v1/keys[/{id}]       keys:read
    PATCH  /v1/keys/{id}                 keys:write         POST /v1/keys/{id}/rotate|revoke
    POST   /v1/keys/verify               keys:verify        GET /v1/audit             admin
    GET    /v1/plans                     customers:read     (the plans in force, last error)
    GET    /v1/admin/openapi.json        (no credentials: the document of all of the above)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from sidecar.errors import RequestError, StorageError
from sidecar.management import schemas as s
from sidecar.management.answers import headers, rate_answer, verification
from sidecar.management.catalog import MAX_PAGE, Actor, Catalog
from sidecar.management.errors import AdminError, Forbidden, Invalid, Unauthorized
from sidecar.management.keys import hash_key
from sidecar.management.verify import Verifier
from sidecar.transports.reply import Reply, RequestParts

log = logging.getLogger("sidecar.admin")

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_AT = re.compile(r" - at `\$\.?(.*)`$")
_NUL = b"\\u0000"


class RootKeys:
    """Root keys by hash, in memory (refreshed from the catalog when the change log says
    root keys changed), so authenticating an admin call runs no SQL."""

    def __init__(self) -> None:
        self.by_hash: dict[str, Actor] = {}

    def replace(self, rows: list[Any]) -> None:
        self.by_hash = {r.hash: Actor(r.id, frozenset(r.scopes)) for r in rows}

    def actor(self, request: web.Request | RequestParts, scope: str) -> Actor:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("send 'Authorization: Bearer <root key>'")
        actor = self.by_hash.get(hash_key(token.strip()))
        if actor is None:
            raise Unauthorized("the root key is not valid")
        if scope not in actor.scopes and "admin" not in actor.scopes:
            raise Forbidden(f"the root key lacks the scope {scope!r}")
        return actor


class AdminApi:
    def __init__(self, catalog: Catalog, verifier: Verifier, roots: RootKeys,
                 rate_headers: frozenset[str], max_body: int, openapi: bytes,
                 plans: Callable[[], s.Plans] | None = None) -> None:
        self.plans_view = plans
        self.catalog = catalog
        self.verifier = verifier
        self.roots = roots
        self.rate_headers = rate_headers
        self.max_body = max_body
        self.openapi = openapi

    def register(self, app: web.Application,
                 measured: Callable[[Handler, str], Handler]) -> None:
        r = app.router
        r.add_post("/v1/keys/verify", measured(self.verify, "key_verify"))
        r.add_get("/v1/admin/openapi.json", self.openapi_json)
        page = ("limit", "cursor")
        # A key id never is "verify" or "forward-auth": those paths have their own routes.
        key = "/v1/keys/{id:(?!verify$|forward-auth(?:/|$))[^/]+}"
        admin: list[tuple[str, str, Handler, tuple[str, ...]]] = [
            ("POST", "/v1/customers", self.create_customer, ()),
            ("GET", "/v1/customers", self.list_customers, page),
            ("GET", "/v1/customers/{id}", self.get_customer, ()),
            ("PATCH", "/v1/customers/{id}", self.update_customer, ()),
            ("DELETE", "/v1/customers/{id}", self.delete_customer, ()),
            ("POST", "/v1/keys", self.create_key, ()),
            ("GET", "/v1/keys", self.list_keys, ("customer_id", *page)),
            ("GET", key, self.get_key, ()),
            ("PATCH", key, self.update_key, ()),
            ("POST", f"{key}/rotate", self.rotate_key, ()),
            ("POST", f"{key}/revoke", self.revoke_key, ()),
            ("GET", "/v1/audit", self.list_audit, ("target", *page)),
            ("GET", "/v1/plans", self.list_plans, ()),
        ]
        for method, path, handler, query in admin:
            r.add_route(method, path, measured(guarded(handler, query), "admin"))

    # -- customers ---------------------------------------------------------------------------

    async def create_customer(self, request: web.Request) -> web.Response:
        actor = self.roots.actor(request, "customers:write")
        body = await self._body(request, s.CustomerCreate)
        return reply(await self.catalog.create_customer(actor, body), 201)

    async def list_customers(self, request: web.Request) -> web.Response:
        self.roots.actor(request, "customers:read")
        limit, cursor = paged(request)
        return reply(await self.catalog.list_customers(limit, cursor))

    async def get_customer(self, request: web.Request) -> web.Response:
        self.roots.actor(request, "customers:read")
        return reply(await self.catalog.get_customer(request.match_info["id"]))

    async def update_customer(self, request: web.Request) -> web.Response:
        actor = self.roots.actor(request, "customers:write")
        body = await self._body(request, s.CustomerUpdate)
        return reply(await self.catalog.update_customer(actor, request.match_info["id"], body))

    async def delete_customer(self, request: web.Request) -> web.Response:
        actor = self.roots.actor(request, "customers:write")
        await self.catalog.delete_customer(actor, request.match_info["id"])
        return web.Response(status=204)

    # -- keys --------------------------------------------------------------------------------

    async def create_key(self, request: web.Request) -> web.Response:
        actor = self.roots.actor(request, "keys:write")
        body = await self._body(request, s.KeyCreate)
        return reply(await self.catalog.create_key(actor, body), 201)

    async def list_keys(self, request: web.Request) -> web.Response:
        self.roots.actor(request, "keys:read")
        limit, cursor = paged(request)
        customer = request.query.get("customer_id")
        return reply(await self.catalog.list_keys(customer, limit, cursor))

    async def get_key(self, request: web.Request) -> web.Response:
        self.roots.actor(request, "keys:read")
        return reply(await self.catalog.get_key(request.match_info["id"]))

    async def update_key(self, request: web.Request) -> web.Response:
        actor = self.roots.actor(request, "keys:write")
        body = await self._body(request, s.KeyUpdate)
        return reply(await self.catalog.update_key(actor, request.match_info["id"], body))

    async def rotate_key(self, request: web.Request) -> web.Response:
        actor = self.roots.actor(request, "keys:write")
        body = await self._body(request, s.Rotate, empty_ok=True)
        created = await self.catalog.rotate_key(actor, request.match_info["id"],
                                                body.grace_seconds)
        return reply(created, 201)

    async def revoke_key(self, request: web.Request) -> web.Response:
        actor = self.roots.actor(request, "keys:write")
        return reply(await self.catalog.revoke_key(actor, request.match_info["id"]))

    async def list_audit(self, request: web.Request) -> web.Response:
        self.roots.actor(request, "admin")
        limit, cursor = paged(request)
        if cursor is not None and not cursor.isdigit():
            raise Invalid("not a cursor this API gave", "cursor")
        return reply(await self.catalog.list_audit(request.query.get("target"), limit,
                                                   int(cursor) if cursor else None))

    async def list_plans(self, request: web.Request) -> web.Response:
        self.roots.actor(request, "customers:read")
        if self.plans_view is None:
            raise Invalid("no plans manager")
        return reply(self.plans_view())

    # -- verification ------------------------------------------------------------------------

    async def verify(self, request: web.Request) -> web.Response:
        """200 whenever the request is well formed: the verdict is in ``code``."""
        try:
            actor = self.roots.actor(request, "keys:verify")
            data = await self._read(request)
        except Exception as exc:  # every failure becomes a JSON error
            return failure(exc)
        return (await self.verify_reply(RequestParts.of_request(request, data),
                                        actor)).response()

    async def verify_reply(self, request: RequestParts, actor: Actor | None = None) -> Reply:
        """POST /v1/keys/verify from its parts (the body within VIVA_REST_MAX_BODY_BYTES);
        ``actor``: the root key, when the caller authenticated it already."""
        try:
            if actor is None:
                actor = self.roots.actor(request, "keys:verify")
            body = decode(request.body, s.Verify)
            outcome = await self.verifier.verify(
                body.key, failure_budget(actor, body.client_address), body.cost, body.limits,
                body.features or ())
        except Exception as exc:  # every failure becomes a JSON error
            return failure_reply(exc)
        answer = rate_answer(outcome, self.verifier.engine.clock())
        verified = reply_of(verification(outcome, answer))
        verified.headers.extend(headers(answer, self.rate_headers))
        return verified

    async def openapi_json(self, request: web.Request) -> web.Response:
        return web.Response(body=self.openapi, content_type="application/json")

    async def _body(self, request: web.Request, kind: type[T], empty_ok: bool = False) -> T:
        return await read_body(request, kind, self.max_body, empty_ok)

    async def _read(self, request: web.Request) -> bytes:
        return await read_bytes(request, self.max_body)


def failure_budget(actor: Actor, client_address: str | None) -> str:
    """Whose budget of failed verifications a REST verification draws on: the calling
    backend's root key, per client when it says which (its own address would be the same for
    every client of that backend, so one client guessing keys would throttle them all)."""
    root = f"root:{actor.id}"
    return f"{root}/{client_address}" if client_address else root


async def read_body(request: web.Request, kind: type[T], max_body: int,
                    empty_ok: bool = False) -> T:
    """The request's JSON body as ``kind`` (413 past ``max_body`` bytes)."""
    data = await read_bytes(request, max_body)
    if not data.strip() and empty_ok:
        data = b"{}"
    return decode(data, kind)


async def read_bytes(request: web.Request, max_body: int) -> bytes:
    """The request's body (413 past ``max_body`` bytes)."""
    if request.content_length is not None and request.content_length > max_body:
        raise _TooLarge()
    data = await request.content.read(max_body + 1)
    if len(data) > max_body:
        raise _TooLarge()
    return data


def decode(data: bytes, kind: type[T]) -> T:
    """JSON ``data`` as ``kind``; Invalid naming the field (never echoing a value: a body may
    hold a key)."""
    if _NUL in data:
        raise Invalid("text must not contain NUL characters (\\u0000)")
    try:
        return msgspec.json.decode(data, type=kind)
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = _AT.search(text)
        field = match.group(1) if match else None
        raise Invalid(_AT.sub("", text), field or None) from None
    except msgspec.DecodeError:
        raise Invalid("the body is not a JSON object of the documented shape") from None


class _TooLarge(Exception):
    pass


def paged(request: web.Request) -> tuple[int, str | None]:
    text = request.query.get("limit", "20")
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise Invalid(f"expected a whole number from 1 to {MAX_PAGE}", "limit")
    cursor = request.query.get("cursor") or None
    if cursor is not None and (len(cursor) > 100 or "\x00" in cursor):
        raise Invalid("not a cursor this API gave", "cursor")
    return int(text), cursor


def reply(value: Any, status: int = 200) -> web.Response:
    return reply_of(value, status).response()


def reply_of(value: Any, status: int = 200) -> Reply:
    """``value`` as the admin API's JSON answer."""
    return Reply(status, [("Content-Type", "application/json")], s.to_json(value))


def guarded(handler: Handler, query: tuple[str, ...]) -> Handler:
    """``handler`` with unknown query parameters refused and every failure a JSON error."""
    async def checked(request: web.Request) -> web.StreamResponse:
        try:
            for name in request.query:
                if name not in query:
                    raise Invalid(f"unknown query parameter; expected "
                                  f"{', '.join(query) or 'none'}", name[:64])
            return await handler(request)
        except Exception as exc:  # every failure becomes a JSON error
            return failure(exc)

    return checked


def failure(exc: Exception) -> web.Response:
    return failure_reply(exc).response()


def failure_reply(exc: Exception) -> Reply:
    """Any failure of the admin API or the key endpoints as the JSON error answer."""
    if isinstance(exc, AdminError):
        error = reply_of(s.Error(exc.message, exc.field), exc.status)
        if isinstance(exc, Unauthorized):
            error.headers.append(("WWW-Authenticate", 'Bearer realm="viva-ratelimit"'))
        return error
    if isinstance(exc, RequestError):
        field, _, message = str(exc).partition(": ")
        return reply_of(s.Error(message or field, field if message else None), 400)
    if isinstance(exc, _TooLarge):
        return reply_of(s.Error("the body is too large (see VIVA_REST_MAX_BODY_BYTES)", None),
                        413)
    if isinstance(exc, StorageError):
        return reply_of(s.Error(f"cannot decide now: {exc}", None), 503)
    if is_database_error(exc):
        log.error("catalog database error: %s", type(exc).__name__)
        return reply_of(s.Error("the catalog database is unavailable; try again", None), 503)
    log.exception("unexpected error in the admin API", exc_info=exc)
    return reply_of(s.Error("internal error; see the sidecar log", None), 500)


def is_database_error(exc: Exception) -> bool:
    from sqlalchemy.exc import DBAPIError, OperationalError

    return isinstance(exc, OperationalError | DBAPIError | OSError | TimeoutError)
