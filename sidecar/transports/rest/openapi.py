"""/openapi.json: the OpenAPI 3.1 document of the REST API, generated from the declarations
that validate its requests and encode its answers (requests.py, answers.py) and from the
RestOptions that set their limits and forward-auth's inputs."""

from __future__ import annotations

from typing import Any

import msgspec

from sidecar.transports.rest.answers import (
    DecisionBody,
    ErrorBody,
    LeaseBody,
    LeaseResultBody,
    ReleaseBody,
    ResultBody,
)
from sidecar.transports.rest.options import DENY_STATUSES, RestOptions
from sidecar.transports.rest.requests import RequestTypes

FORWARD_AUTH_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_REF = "#/components/schemas/{name}"


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
            "/v1/leases": {"post": _acquire_operation()},
            "/v1/leases/{lease_id}/renew": {"post": _renew_operation()},
            "/v1/leases/{lease_id}": {"delete": _release_operation()},
            "/openapi.json": {"get": {
                "operationId": "openapi", "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1",
                                      "content": {"application/json": {"schema": {
                                          "type": "object"}}}}}}},
        },
        "components": {"schemas": _schemas(options), "headers": _HEADERS},
    }


def _schemas(options: RestOptions) -> dict[str, Any]:
    """The JSON Schemas msgspec generates from the declarations, plus the one rule a
    declaration cannot say (identifier or descriptors, checked after decoding)."""
    types = RequestTypes(options)
    _, generated = msgspec.json.schema_components(
        [types.check, types.lease, types.renew, DecisionBody, ResultBody, ErrorBody, LeaseBody,
         LeaseResultBody, ReleaseBody], ref_template=_REF)
    schemas = dict(generated)
    for name in ("CheckRequest", "LeaseRequest"):
        schemas[name] = {**schemas[name], "oneOf": [
            {"required": ["identifier"]}, {"required": ["descriptors"]}]}
    return schemas


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


_ERRORS = {"400": "Invalid request; `field` names the culprit",
           "404": "No such lease: it expired, was released, or was never issued",
           "413": "The body exceeds the configured maximum",
           "503": "The counter store or the rules are unavailable"}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: {"description": _ERRORS[code], "content": _error_content(code)}
            for code in codes}


def _error_content(code: str) -> dict[str, Any]:
    content = _json("Error")
    if code == "400":  # a request that is not valid HTTP: the HTTP server's own plain text
        content["text/plain"] = {"schema": {"type": "string"}}
    return content


def _decide_operation(operation: str, text: str) -> dict[str, Any]:
    return {
        "operationId": operation, "summary": text,
        "requestBody": {"required": True, "content": _json("CheckRequest")},
        "responses": {"200": {"description": "The decision (allowed or not)",
                              "headers": _rate_headers(True), "content": _json("Decision")},
                      **_errors("400", "413", "503")},
    }


_ACQUIRE_TEXT = (
    "Take a slot of every concurrency limit (`algorithm: concurrency`) the descriptors match, "
    "or of none: HTTP 200 either way, `allowed` says which. Hold it with renewals before "
    "`ttl_seconds` pass, free it with DELETE; a holder that stops renewing loses it when the "
    "lease expires.")
_LEASE_ID = {"name": "lease_id", "in": "path", "required": True,
             "description": "the `lease_id` of the acquire's answer",
             "schema": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{24}\.[A-Za-z0-9_-]+$"}}


def _acquire_operation() -> dict[str, Any]:
    return {"operationId": "lease_acquire", "summary": _ACQUIRE_TEXT,
            "requestBody": {"required": True, "content": _json("LeaseRequest")},
            "responses": {"200": {"description": "The decision (allowed or not)",
                                  "content": _json("Lease")},
                          **_errors("400", "413", "503")}}


def _renew_operation() -> dict[str, Any]:
    return {"operationId": "lease_renew", "parameters": [_LEASE_ID],
            "summary": "Hold the lease's slots for `ttl` more seconds from now (default: the "
                       "acquire's ttl, else the rule's lease_ttl)",
            "requestBody": {"required": False, "content": _json("RenewRequest")},
            "responses": {"200": {"description": "Renewed", "content": _json("Lease")},
                          **_errors("400", "404", "413", "503")}}


def _release_operation() -> dict[str, Any]:
    return {"operationId": "lease_release", "parameters": [_LEASE_ID],
            "summary": "Free the lease's slots",
            "responses": {"200": {"description": "Released", "content": _json("Release")},
                          **_errors("404", "503")}}


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
