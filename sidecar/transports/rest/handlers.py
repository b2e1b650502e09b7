"""Standalone mode over HTTP: the REST endpoints, deciding through the service.

    POST /v1/check           charge ``hits`` and answer allowed or not (HTTP 200 either way)
    POST /v1/report          charge ``hits`` after the fact; the answer is informational;
                             ``hits: 0`` peeks without charging (on /v1/check too)
    *    /v1/forward-auth    nginx auth_request, Traefik ForwardAuth, Envoy HTTP ext_authz:
                             identifier and namespace from request headers; 200 or 429
    POST   /v1/leases              take a slot of a concurrency limit (HTTP 200 either way)
    POST   /v1/leases/{id}/renew   hold it for another ttl; 404 when it is gone
    DELETE /v1/leases/{id}         free it; 404 when it is gone
    GET  /openapi.json       the OpenAPI 3.1 document of the above (openapi.py)

A namespace is a rules domain; an identifier is the value of the descriptor entry
``identifier``. The body is checked by requests.py, the answer and its headers made by
answers.py. Errors: a FieldError (a RequestError naming the field) → 400 ``{"error", "field"}``;
a body over ``max_body_bytes`` → 413; an unknown, expired or released lease → 404; StorageError
or NoRulesError → 503 (service.py chooses the status of each). Nothing here lists state: an
answer only covers the descriptors of its own request.
"""

from __future__ import annotations

import hashlib
import json

import msgspec
from aiohttp import web

from sidecar.errors import RequestError, RequestTooLarge
from sidecar.limiter.leases import Leases
from sidecar.model import Descriptor, Entries
from sidecar.service import Method, RateLimitService, ServiceError
from sidecar.transports.rest.answers import (
    Answer,
    ErrorBody,
    lease_body,
    make_answer,
    rate_limit_headers,
    release_body,
)
from sidecar.transports.rest.openapi import FORWARD_AUTH_METHODS, openapi_document
from sidecar.transports.rest.options import RestOptions
from sidecar.transports.rest.requests import (
    IDENTIFIER_KEY,
    FieldError,
    RequestTypes,
    check_text,
)


class BodyTooLarge(RequestTooLarge):
    def __init__(self) -> None:
        super().__init__("the body is too large (see VIVA_REST_MAX_BODY_BYTES)")


class RestApi:
    """The handlers of standalone mode, deciding through the service."""

    def __init__(self, service: RateLimitService, options: RestOptions) -> None:
        self.options = options
        self.clock = service.engine.clock
        self.requests = RequestTypes(options)
        self.openapi = json.dumps(openapi_document(options)).encode()
        self._check = service.method("rest_check", "http")
        self._report = service.method("rest_report", "http")
        self._forward_auth = service.method("forward_auth", "http")
        self.leases = service.leases
        self._acquire = service.method("lease_acquire", "http")
        self._renew = service.method("lease_renew", "http")
        self._release = service.method("lease_release", "http")

    async def check(self, request: web.Request) -> web.Response:
        return await self._decide(request, self._check, report=False)

    async def report(self, request: web.Request) -> web.Response:
        return await self._decide(request, self._report, report=True)

    async def _decide(self, request: web.Request, method: Method, report: bool) -> web.Response:
        try:
            try:
                ask = self.requests.parse(await self._body(request))
            except Exception as exc:  # refused before the engine: counted all the same
                raise method.reject(exc) from None
            answer = await self._answer(method, ask.namespace, ask.descriptors, ask.hits, report)
        except ServiceError as exc:
            return _failure(exc)
        return self._respond(200, answer.body(ask.itemized), answer)

    async def forward_auth(self, request: web.Request) -> web.Response:
        method = self._forward_auth
        try:
            try:
                deny = _query_deny_status(request, self.options.deny_status)
                namespace = self._namespace(request)
                identifier = self._identifier(request)
            except Exception as exc:  # refused before the engine: counted all the same
                raise method.reject(exc) from None
            answer = await self._answer(method, namespace, [((IDENTIFIER_KEY, identifier),)], 1)
        except ServiceError as exc:
            return _failure(exc)
        return self._respond(200 if answer.overall.allowed else deny, answer.overall.body(),
                             answer)

    async def acquire_lease(self, request: web.Request) -> web.Response:
        method = self._acquire
        try:
            try:
                ask = self.requests.parse_lease(await self._body(request))
            except Exception as exc:  # refused before the engine: counted all the same
                raise method.reject(exc) from None
            decision = await method.run(
                lambda: self._leases().acquire(ask.namespace, ask.descriptors, ask.ttl_ms))
        except ServiceError as exc:
            return _failure(exc)
        return _json(lease_body(decision, ask.itemized), 200)

    async def renew_lease(self, request: web.Request) -> web.Response:
        method = self._renew
        lease_id = request.match_info["lease_id"]
        try:
            try:
                ttl_ms = self.requests.parse_renew(await self._body(request))
            except Exception as exc:
                raise method.reject(exc) from None
            decision = await method.run(lambda: self._leases().renew(lease_id, ttl_ms))
        except ServiceError as exc:
            return _failure(exc)
        return _json(lease_body(decision, False), 200)

    async def release_lease(self, request: web.Request) -> web.Response:
        lease_id = request.match_info["lease_id"]
        try:
            decision = await self._release.run(lambda: self._leases().release(lease_id))
        except ServiceError as exc:
            return _failure(exc)
        return _json(release_body(decision), 200)

    def _leases(self) -> Leases:
        assert self.leases is not None  # the lease routes are added only with leases
        return self.leases

    async def openapi_json(self, request: web.Request) -> web.Response:
        return web.Response(body=self.openapi, content_type="application/json")

    async def _answer(self, method: Method, namespace: str, descriptors: list[Entries],
                      hits: int, report: bool = False) -> Answer:
        # Per-descriptor hits_addend: 0 then means "do not charge" (a request-level 0 means 1).
        # A report charges every hit, past the limit too, whatever the rule's algorithm.
        decision = await method.decide(
            namespace, [Descriptor(entries, hits) for entries in descriptors],
            charge_always=report)
        return make_answer(decision, descriptors, self.clock())

    def _respond(self, status: int, body: msgspec.Struct, answer: Answer) -> web.Response:
        response = _json(body, status)
        for name, value in rate_limit_headers(answer, self.options.headers):
            response.headers[name] = value
        return response

    async def _body(self, request: web.Request) -> bytes:
        limit = self.options.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise BodyTooLarge()
        body = bytearray()
        while chunk := await request.content.read(limit + 1 - len(body)):
            body += chunk
            if len(body) > limit:
                raise BodyTooLarge()
        return bytes(body)

    def _namespace(self, request: web.Request) -> str:
        name = self.options.namespace_header
        value = request.headers.get(name, "").strip() if name else ""
        if value:
            return check_text(value, name)
        if self.options.default_namespace:
            return self.options.default_namespace
        raise FieldError(name or "namespace", "no namespace: send this header or set "
                         "VIVA_FORWARD_AUTH_DEFAULT_NAMESPACE")

    def _identifier(self, request: web.Request) -> str:
        name = self.options.identifier_header
        value = request.headers.get(name, "")
        if name.lower() == "x-forwarded-for":
            value = _forwarded_address(value, self.options.xff_index)
        identifier = check_text(value.strip(), name)
        if self.options.hash_identifier:
            return "sha256:" + hashlib.sha256(identifier.encode()).hexdigest()
        return identifier


def _forwarded_address(header: str, index: int) -> str:
    addresses = header.split(",")
    if index > 0:
        return addresses[min(index, len(addresses)) - 1]
    return addresses[max(index, -len(addresses))]


def _query_deny_status(request: web.Request, default: int) -> int:
    text = request.query.get("deny_status")
    if text is None:
        return default
    if text not in ("403", "429"):
        raise FieldError("deny_status", f"{text!r} is not supported; expected 403 or 429")
    return int(text)


def _failure(exc: ServiceError) -> web.Response:
    """The JSON error answer: the status the service chose, the field a FieldError names.
    Unavailable is not an answer: the caller (the SDK's failure mode, the gateway's config)
    decides whether traffic passes meanwhile."""
    failure = exc.failure
    message = failure.message
    if failure.http_status == 503:
        message = f"cannot decide now: {message}"
    field_name = exc.cause.field if isinstance(exc.cause, RequestError) else None
    return _json(ErrorBody(error=message, field=field_name), failure.http_status)


def _json(body: msgspec.Struct, status: int) -> web.Response:
    # json.dumps as web.json_response writes it, so answers keep their bytes
    return web.json_response(msgspec.to_builtins(body), status=status)



def register_rest(app: web.Application, service: RateLimitService,
                  options: RestOptions) -> RestApi:
    """Add the REST routes to ``app`` (the HTTP port's application). Each endpoint is a
    method of the service (label ``grpc_method``: rest_check, rest_report, forward_auth)."""
    api = RestApi(service, options)
    app.router.add_post("/v1/check", api.check)
    app.router.add_post("/v1/report", api.report)
    # Envoy's ext_authz appends the request's path (any characters) to the configured prefix.
    for path in ("/v1/forward-auth", r"/v1/forward-auth/{path:[\s\S]*}"):
        for method in FORWARD_AUTH_METHODS:
            app.router.add_route(method, path, api.forward_auth)
    # A lease id is "<token>.<base64url>"; any other path segment (matched still encoded, so
    # an id with %2F in it too) reaches the handlers, and gets the JSON 404 of an unknown lease.
    if service.leases is not None:
        app.router.add_post("/v1/leases", api.acquire_lease)
        app.router.add_post("/v1/leases/{lease_id}/renew", api.renew_lease)
        app.router.add_delete("/v1/leases/{lease_id}", api.release_lease)
    app.router.add_get("/openapi.json", api.openapi_json)
    return api
