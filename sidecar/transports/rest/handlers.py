"""Standalone mode over HTTP: a thin adapter from JSON to ``Engine.should_rate_limit``.

    POST /v1/check           charge ``hits`` and answer allowed or not (HTTP 200 either way)
    POST /v1/report          charge ``hits`` after the fact; the answer is informational;
                             ``hits: 0`` peeks without charging (on /v1/check too)
    *    /v1/forward-auth    nginx auth_request, Traefik ForwardAuth, Envoy HTTP ext_authz:
                             identifier and namespace from request headers; 200 or 429
    GET  /openapi.json       the OpenAPI 3.1 document of the above, built from RestOptions

A namespace is a rules domain; an identifier is the value of the descriptor entry
``identifier``. Answers carry the IETF draft fields ``RateLimit-Policy`` and ``RateLimit``
(draft-ietf-httpapi-ratelimit-headers-09/-10: a List of policy-name Strings with parameters
q/w and r/t), ``X-RateLimit-Limit/Remaining/Reset`` (reset in seconds from now, as Envoy's
``x-ratelimit-reset``) and ``Retry-After``; each family is switched by ``RestOptions.headers``.

Errors: FieldError (a RequestError naming the field) → 400 ``{"error", "field"}``; a body over
``max_body_bytes`` → 413; StorageError or NoRulesError → 503. Nothing here lists state: an
answer only covers the descriptors of its own request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from sidecar.errors import RequestError, RequestTooLarge
from sidecar.model import Code, Decision, Descriptor, DescriptorStatus, Entries
from sidecar.service import Method, RateLimitService, ServiceError
from sidecar.transports.rest.options import DENY_STATUSES, RestOptions

log = logging.getLogger("sidecar.rest")

IDENTIFIER_KEY = "identifier"
_SF_UNSAFE = re.compile(r"[^\x20-\x7e]")  # outside what a Structured Field String may hold
_CHECK_FIELDS = ("namespace", "identifier", "descriptors", "hits")
_ENTRY_FIELDS = ("key", "value")


class FieldError(RequestError):
    """A request value is invalid; ``field`` names it (None when it is the body itself)."""

    def __init__(self, field: str | None, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


# -- request → descriptors -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckRequest:
    namespace: str
    descriptors: list[Entries]
    hits: int
    itemized: bool  # sent as descriptors: answer each one too


def parse_check(body: bytes, options: RestOptions) -> CheckRequest:
    """The JSON body of /v1/check or /v1/report; FieldError names what is wrong."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise FieldError(None, 'the body is not JSON; expected an object like {"namespace": '
                         '"api_requests", "identifier": "user_123", "hits": 1}') from None
    if not isinstance(doc, dict):
        raise FieldError(None, "the body must be a JSON object")
    _no_unknown(doc, _CHECK_FIELDS, "")
    namespace = _text(doc.get("namespace"), "namespace")
    hits = _hits(doc.get("hits", 1), options.max_hits)
    if "identifier" in doc and "descriptors" in doc:
        raise FieldError("descriptors", "send either identifier or descriptors, not both")
    if "descriptors" in doc:
        return CheckRequest(namespace, _descriptors(doc["descriptors"], options), hits, True)
    if "identifier" not in doc:
        raise FieldError("identifier", "required (a non-empty string), unless descriptors are "
                         "sent")
    entries = ((IDENTIFIER_KEY, _text(doc["identifier"], "identifier")),)
    return CheckRequest(namespace, [entries], hits, False)


def _no_unknown(doc: Mapping[str, Any], allowed: tuple[str, ...], prefix: str) -> None:
    for name in doc:
        if name not in allowed:
            raise FieldError(f"{prefix}{name}", f"unknown field; expected {', '.join(allowed)}")


def _text(value: Any, name: str) -> str:
    if value is None:
        raise FieldError(name, "required; expected a non-empty string")
    if not isinstance(value, str):
        raise FieldError(name, f"expected a non-empty string, got {_kind(value)}")
    if not value:
        raise FieldError(name, "must not be empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise FieldError(name, "is not valid Unicode text (a lone surrogate)") from None
    return value


def _hits(value: Any, maximum: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 2.0 is an integer to JSON Schema, so it is one here
    if not isinstance(value, int) or isinstance(value, bool):
        raise FieldError("hits", f"expected a whole number from 0 to {maximum}, got "
                         f"{_kind(value)}")
    if not 0 <= value <= maximum:
        raise FieldError("hits", f"{value} is out of range; expected 0 to {maximum}")
    return value


def _descriptors(value: Any, options: RestOptions) -> list[Entries]:
    limit = options.max_descriptors
    if not isinstance(value, list):
        raise FieldError("descriptors", "expected a list of descriptors, each a list of "
                         f'{{"key": …, "value": …}} entries; got {_kind(value)}')
    if not 1 <= len(value) <= limit:
        raise FieldError("descriptors", f"has {len(value)} descriptors; expected 1 to {limit}")
    return [_entries(d, f"descriptors[{i}]", options.max_entries) for i, d in enumerate(value)]


def _entries(value: Any, name: str, limit: int) -> Entries:
    if not isinstance(value, list):
        raise FieldError(name, f'expected a list of {{"key": …, "value": …}} entries, got '
                         f"{_kind(value)}")
    if not 1 <= len(value) <= limit:
        raise FieldError(name, f"has {len(value)} entries; expected 1 to {limit}")
    out = []
    for j, entry in enumerate(value):
        where = f"{name}[{j}]"
        if not isinstance(entry, dict):
            raise FieldError(where, f'expected an object {{"key": …, "value": …}}, got '
                             f"{_kind(entry)}")
        _no_unknown(entry, _ENTRY_FIELDS, f"{where}.")
        out.append((_text(entry.get("key"), f"{where}.key"),
                    _text(entry.get("value"), f"{where}.value")))
    return tuple(out)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {int: "a whole number", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


# -- decision → answer and headers -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Result:
    """What one descriptor (or the request as a whole) gets back."""

    allowed: bool
    limit: int | None = None  # None: no limit applies (no rules, no match, unlimited)
    remaining: int | None = None
    reset_after: int | None = None  # whole seconds until the window resets
    reset_at: float | None = None  # epoch seconds
    window: int | None = None  # the limit's window in seconds
    policy: str | None = None  # the rule's name, else the descriptor's keys joined by '.'
    retry_after: int | None = None  # when refused: seconds until a retry can succeed

    def to_json(self) -> dict[str, Any]:
        return {"allowed": self.allowed, "limit": self.limit, "remaining": self.remaining,
                "reset_at": None if self.reset_at is None else _rfc3339(self.reset_at),
                "reset_after_seconds": self.reset_after,
                "retry_after_seconds": self.retry_after, "window_seconds": self.window,
                "policy": self.policy}


@dataclass(frozen=True, slots=True)
class Answer:
    overall: Result
    results: list[Result]


def make_answer(decision: Decision, descriptors: Sequence[Entries], now: float) -> Answer:
    results = _unique_policies([_result(s, e, now) for s, e in
                                zip(decision.statuses, descriptors, strict=True)])
    limited = [r for r in results if r.limit is not None]
    allowed = decision.overall != Code.OVER_LIMIT
    refused = [r for r in limited if not r.allowed]
    if not allowed and refused:
        # Allowed again only once every refusing limit has reset: the longest wait.
        overall = replace(refused[-1], retry_after=max(r.retry_after or 1 for r in refused))
    elif limited:
        chosen = min(limited, key=lambda r: r.remaining or 0)
        overall = replace(chosen, allowed=allowed,
                          retry_after=None if allowed else max(1, chosen.reset_after or 1))
    else:
        overall = Result(allowed, retry_after=None if allowed else 1)
    return Answer(overall, results)


def _result(status: DescriptorStatus, entries: Entries, now: float) -> Result:
    allowed = status.code != Code.OVER_LIMIT
    limit = status.limit
    if limit is None:
        return Result(allowed)
    if status.reset_ms is not None:
        reset_at = math.ceil(now + status.reset_ms / 1000)
    else:
        reset_at = math.floor(now) + status.reset_seconds
    window = max(1, math.ceil(limit.window_length_ms / 1000))
    policy = _SF_UNSAFE.sub("_", limit.name or ".".join(k for k, _ in entries))
    return Result(allowed, limit.requests_per_unit, status.remaining, status.reset_seconds,
                  reset_at, window, policy,
                  None if allowed else max(1, status.reset_seconds))


def _unique_policies(results: list[Result]) -> list[Result]:
    """Two descriptors may resolve to one policy name; number the repeats (name.2, …)."""
    seen: dict[str, int] = {}
    out = []
    for r in results:
        if r.policy is not None:
            n = seen[r.policy] = seen.get(r.policy, 0) + 1
            if n > 1:
                r = replace(r, policy=f"{r.policy}.{n}")
        out.append(r)
    return out


def rate_limit_headers(answer: Answer, families: frozenset[str]) -> list[tuple[str, str]]:
    """The response headers of ``answer``: one IETF policy per limited descriptor, the X-
    family and Retry-After for the request as a whole."""
    out: list[tuple[str, str]] = []
    limited = [r for r in answer.results if r.limit is not None]
    overall = answer.overall
    if "ietf" in families and limited:
        out.append(("RateLimit-Policy", ", ".join(
            f"{_sf_string(r.policy or '')};q={r.limit};w={r.window}" for r in limited)))
        out.append(("RateLimit", ", ".join(
            f"{_sf_string(r.policy or '')};r={r.remaining};t={r.reset_after}" for r in limited)))
    if "x" in families and overall.limit is not None:
        out.append(("X-RateLimit-Limit", str(overall.limit)))
        out.append(("X-RateLimit-Remaining", str(overall.remaining)))
        out.append(("X-RateLimit-Reset", str(overall.reset_after)))
    if "retry-after" in families and overall.retry_after is not None:
        out.append(("Retry-After", str(overall.retry_after)))
    return out


def _sf_string(text: str) -> str:
    """An RFC 8941 String: printable ASCII, with backslash and double quote escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rfc3339(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


# -- the handlers ----------------------------------------------------------------------------


class BodyTooLarge(RequestTooLarge):
    def __init__(self) -> None:
        super().__init__("the body is too large (see VIVA_REST_MAX_BODY_BYTES)")


class RestApi:
    """The handlers of standalone mode, deciding through the service."""

    def __init__(self, service: RateLimitService, options: RestOptions) -> None:
        self.options = options
        self.clock = service.engine.clock
        self.openapi = json.dumps(openapi_document(options)).encode()
        self._check = service.method("rest_check", "http")
        self._report = service.method("rest_report", "http")
        self._forward_auth = service.method("forward_auth", "http")

    async def check(self, request: web.Request) -> web.Response:
        return await self._decide(request, self._check, report=False)

    async def report(self, request: web.Request) -> web.Response:
        return await self._decide(request, self._report, report=True)

    async def _decide(self, request: web.Request, method: Method, report: bool) -> web.Response:
        try:
            try:
                ask = parse_check(await self._body(request), self.options)
            except Exception as exc:  # refused before the engine: counted all the same
                raise method.reject(exc) from None
            answer = await self._answer(method, ask.namespace, ask.descriptors, ask.hits, report)
        except ServiceError as exc:
            return _failure(exc)
        doc = answer.overall.to_json()
        if ask.itemized:
            doc["results"] = [r.to_json() for r in answer.results]
        return self._respond(200, doc, answer)

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
        return self._respond(200 if answer.overall.allowed else deny, answer.overall.to_json(),
                             answer)

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

    def _respond(self, status: int, doc: dict[str, Any], answer: Answer) -> web.Response:
        response = web.json_response(doc, status=status)
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
            return _text(value, name)
        if self.options.default_namespace:
            return self.options.default_namespace
        raise FieldError(name or "namespace", "no namespace: send this header or set "
                         "VIVA_FORWARD_AUTH_DEFAULT_NAMESPACE")

    def _identifier(self, request: web.Request) -> str:
        name = self.options.identifier_header
        value = request.headers.get(name, "")
        if name.lower() == "x-forwarded-for":
            value = _forwarded_address(value, self.options.xff_index)
        identifier = _text(value.strip(), name)
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
    field_name = exc.cause.field if isinstance(exc.cause, FieldError) else None
    return web.json_response({"error": message, "field": field_name},
                             status=failure.http_status)


FORWARD_AUTH_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


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
    app.router.add_get("/openapi.json", api.openapi_json)
    return api


# -- OpenAPI ---------------------------------------------------------------------------------


def openapi_document(options: RestOptions) -> dict[str, Any]:
    """The OpenAPI 3.1 description of this API, with the limits of ``options``."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "Viva Rate Limiter REST API", "version": "1",
                 "description": _API_TEXT},
        "paths": {
            "/v1/check": {"post": _decide_operation("check", _CHECK_TEXT)},
            "/v1/report": {"post": _decide_operation("report", _REPORT_TEXT)},
            "/v1/forward-auth": _forward_auth_item(options, with_path=False),
            "/v1/forward-auth/{path}": _forward_auth_item(options, with_path=True),
            "/openapi.json": {"get": {
                "operationId": "openapi", "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1",
                                      "content": {"application/json": {"schema": {
                                          "type": "object"}}}}}}},
        },
        "components": {"schemas": _schemas(options), "headers": _HEADERS},
    }


_API_TEXT = (
    "A namespace is a rules domain; an identifier is the value of the descriptor entry "
    "`identifier` (`- key: identifier` in the rules gives each identifier its own budget). "
    "A namespace without rules, or an identifier that matches no limit, is allowed with "
    "`limit` null.")
_CHECK_TEXT = (
    "Charge `hits` (default 1; 0 peeks) and answer whether the request is allowed. HTTP 200 "
    "carries the decision either way.")
_REPORT_TEXT = (
    "Charge `hits` known only after the fact (tokens, bytes); never refused: the answer "
    "says where the budget stands. `hits: 0` peeks without charging.")


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


def _rate_headers(retry: bool) -> dict[str, Any]:
    names = ["RateLimit-Policy", "RateLimit", "X-RateLimit-Limit", "X-RateLimit-Remaining",
             "X-RateLimit-Reset"] + (["Retry-After"] if retry else [])
    return {n: {"$ref": f"#/components/headers/{n}"} for n in names}


def _errors(*codes: str) -> dict[str, Any]:
    text = {"400": "Invalid request; `field` names the culprit",
            "413": "The body exceeds the configured maximum",
            "503": "The counter store or the rules are unavailable"}
    return {c: {"description": text[c], "content": _json("Error")} for c in codes}


def _decide_operation(operation: str, text: str) -> dict[str, Any]:
    return {
        "operationId": operation, "summary": text,
        "requestBody": {"required": True, "content": _json("CheckRequest")},
        "responses": {"200": {"description": "The decision (allowed or not)",
                              "headers": _rate_headers(True), "content": _json("Decision")},
                      **_errors("400", "413", "503")},
    }


def _forward_auth_item(options: RestOptions, with_path: bool) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": "deny_status", "in": "query", "required": False,
         "description": "status of a refusal; 403 lets nginx map it (see the README)",
         "schema": {"type": "integer", "enum": list(DENY_STATUSES)}},
        {"name": options.identifier_header, "in": "header", "required": True,
         "description": "the identifier (X-Forwarded-For: the address at xff_index)",
         "schema": {"type": "string", "pattern": _identifier_pattern(options)}},
    ]
    if options.namespace_header:
        params.append({"name": options.namespace_header, "in": "header",
                       "required": not options.default_namespace,
                       "description": "the namespace; else the configured default",
                       "schema": {"type": "string", "pattern": r"[^ \t]"}})
    if with_path:
        params.append({"name": "path", "in": "path", "required": True,
                       "description": "ignored (Envoy's ext_authz appends the request path)",
                       "schema": {"type": "string"}})
    responses = {
        "200": {"description": "Allowed", "headers": _rate_headers(False),
                "content": _json("Result")},
        "403": {"description": "Refused, when asked with deny_status=403",
                "headers": _rate_headers(True), "content": _json("Result")},
        "429": {"description": "Refused", "headers": _rate_headers(True),
                "content": _json("Result")},
        **_errors("400", "503"),
    }
    item: dict[str, Any] = {}
    for method in FORWARD_AUTH_METHODS:
        name = method.lower()
        suffix = "_path" if with_path else ""
        item[name] = {"operationId": f"forward_auth_{name}{suffix}", "parameters": params,
                      "summary": "Gateway check of one request: 200 allowed, 429 refused",
                      "responses": responses}
    return item


def _identifier_pattern(options: RestOptions) -> str:
    """What makes the identifier header usable: a non-blank value; for X-Forwarded-For, a
    non-blank address where xff_index looks (only the first and the last are exact)."""
    if options.identifier_header.lower() != "x-forwarded-for":
        return r"[^ \t]"
    return {1: r"^[ \t]*[^ \t,]", -1: r"[^ \t,][ \t]*$"}.get(options.xff_index, r"[^ \t,]")


def _text_schema() -> dict[str, Any]:
    return {"type": "string", "minLength": 1}


def _nullable(kind: str, **more: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **more}


def _schemas(options: RestOptions) -> dict[str, Any]:
    entry = {"type": "object", "additionalProperties": False, "required": ["key", "value"],
             "properties": {"key": _text_schema(), "value": _text_schema()}}
    result_props = {
        "allowed": {"type": "boolean"},
        "limit": _nullable("integer", minimum=0, description="null: no limit applies"),
        "remaining": _nullable("integer", minimum=0),
        "reset_at": _nullable("string", format="date-time"),
        "reset_after_seconds": _nullable("integer", minimum=0),
        "retry_after_seconds": _nullable("integer", minimum=1),
        "window_seconds": _nullable("integer", minimum=1),
        "policy": _nullable("string"),
    }
    result = {"type": "object", "required": list(result_props), "properties": result_props,
              "additionalProperties": False}
    decision = {**result, "properties": {**result_props, "results": {
        "type": "array", "items": {"$ref": "#/components/schemas/Result"}}}}
    return {
        "CheckRequest": {
            "type": "object", "additionalProperties": False, "required": ["namespace"],
            "properties": {
                "namespace": _text_schema(), "identifier": _text_schema(),
                "descriptors": {"type": "array", "minItems": 1,
                                "maxItems": options.max_descriptors,
                                "items": {"type": "array", "minItems": 1,
                                          "maxItems": options.max_entries, "items": entry}},
                "hits": {"type": "integer", "minimum": 0, "maximum": options.max_hits,
                         "default": 1},
            },
            "oneOf": [{"required": ["identifier"]}, {"required": ["descriptors"]}],
        },
        "Result": result,
        "Decision": decision,
        "Error": {"type": "object", "required": ["error", "field"],
                  "properties": {"error": {"type": "string"}, "field": _nullable("string")}},
    }


_HEADERS: dict[str, Any] = {
    "RateLimit-Policy": {"description": 'IETF draft, e.g. "default";q=100;w=60',
                         "schema": {"type": "string"}},
    "RateLimit": {"description": 'IETF draft, e.g. "default";r=99;t=42',
                  "schema": {"type": "string"}},
    "X-RateLimit-Limit": {"schema": {"type": "integer"}},
    "X-RateLimit-Remaining": {"schema": {"type": "integer"}},
    "X-RateLimit-Reset": {"description": "seconds until the window resets",
                          "schema": {"type": "integer"}},
    "Retry-After": {"description": "seconds", "schema": {"type": "integer"}},
}
