"""The OpenAPI 3.1 document of the admin API, its schemas generated from schemas.py."""

from __future__ import annotations

from typing import Any

import msgspec

from sidecar.management import schemas as s

_TYPES = [s.CustomerCreate, s.CustomerUpdate, s.Customer, s.CustomerList, s.KeyCreate,
          s.KeyUpdate, s.KeyCreated, s.Key, s.KeyList, s.Rotate, s.Verify, s.Verification,
          s.AuditList, s.Plans, s.PortalSessionCreate, s.PortalLink, s.Error]
_ERRORS = {"400": "Invalid request; `field` names the culprit",
           "401": "No valid root key (`Authorization: Bearer <root key>`)",
           "403": "The root key lacks the operation's scope",
           "404": "No such customer or key",
           "409": "Conflict: the id is taken, the plan's max_keys is reached, the key is "
                  "revoked",
           "413": "The body exceeds VIVA_REST_MAX_BODY_BYTES",
           "503": "The catalog database or the counter store is unavailable"}


def _ref(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}


def _operation(op_id: str, scope: str, summary: str, ok: str, answer: str | None,
               body: str | None = None, errors: tuple[str, ...] = ("400", "401", "403"),
               params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    responses: dict[str, Any] = {ok: {"description": "Done"}}
    if answer is not None:
        responses[ok]["content"] = _ref(answer)
    for code in errors:
        responses[code] = {"description": _ERRORS[code], "content": _ref("Error")}
    responses["503"] = {"description": _ERRORS["503"], "content": _ref("Error")}
    out: dict[str, Any] = {"operationId": op_id, "summary": f"{summary} (scope `{scope}`)",
                           "security": [{"rootKey": []}], "responses": responses}
    if body is not None:
        out["requestBody"] = {"required": True, "content": _ref(body)}
        out["responses"]["413"] = {"description": _ERRORS["413"], "content": _ref("Error")}
    if params:
        out["parameters"] = params
    return out


def _query(name: str, text: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": text,
            "schema": schema}


_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
_PAGE = [_query("limit", "page size", {"type": "integer", "minimum": 1, "maximum": 100}),
         _query("cursor", "next_cursor of the previous page", {"type": "string"})]


def admin_openapi() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        _TYPES, ref_template="#/components/schemas/{name}")
    w, r = ("400", "401", "403", "404", "409"), ("400", "401", "403", "404")
    paths = {
        "/v1/customers": {
            "post": _operation("create_customer", "customers:write", "Create a customer",
                               "201", "Customer", "CustomerCreate", ("400", "401", "403", "409")),
            "get": _operation("list_customers", "customers:read", "List customers", "200",
                              "CustomerList", params=_PAGE)},
        "/v1/customers/{id}": {
            "get": _operation("get_customer", "customers:read", "One customer", "200",
                              "Customer", errors=r, params=_ID),
            "patch": _operation("update_customer", "customers:write", "Change a customer "
                                "(a plan change applies to its keys at once)", "200",
                                "Customer", "CustomerUpdate", w, _ID),
            "delete": _operation("delete_customer", "customers:write", "Delete a customer "
                                 "and revoke its keys", "204", None, errors=r, params=_ID)},
        "/v1/keys": {
            "post": _operation("create_key", "keys:write", "Create a key; the answer holds "
                               "the secret, shown this once", "201", "KeyCreated", "KeyCreate",
                               w),
            "get": _operation("list_keys", "keys:read", "List keys", "200", "KeyList",
                              params=[_query("customer_id", "only this customer's keys",
                                             {"type": "string"}), *_PAGE])},
        "/v1/keys/{id}": {
            "get": _operation("get_key", "keys:read", "One key (never its secret)", "200",
                              "Key", errors=r, params=_ID),
            "patch": _operation("update_key", "keys:write", "Change a key", "200", "Key",
                                "KeyUpdate", w, _ID)},
        "/v1/keys/{id}/rotate": {
            "post": _operation("rotate_key", "keys:write", "A new key replacing this one, "
                               "which keeps working for grace_seconds", "201", "KeyCreated",
                               "Rotate", w, _ID)},
        "/v1/keys/{id}/revoke": {
            "post": _operation("revoke_key", "keys:write", "Revoke a key everywhere within a "
                               "second", "200", "Key", errors=r, params=_ID)},
        "/v1/keys/verify": {
            "post": _operation("verify_key", "keys:verify", "Verify a key and charge its "
                               "limits; 200 whenever well formed, the verdict in `code`",
                               "200", "Verification", "Verify")},
        "/v1/plans": {
            "get": _operation("list_plans", "customers:read", "The plans in force and the "
                              "last refused reload of the plans files", "200", "Plans")},
        "/v1/portal/sessions": {
            "post": _operation("create_portal_session", "portal:write", "A one-time link "
                               "(15 minutes) that opens a customer's self-service portal "
                               "for 24 hours", "201", "PortalLink", "PortalSessionCreate",
                               r)},
        "/v1/audit": {
            "get": _operation("list_audit", "admin", "The audit log, newest first", "200",
                              "AuditList", params=[_query("target", "e.g. key:key_…",
                                                          {"type": "string"}), *_PAGE])},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Viva Rate Limiter admin API", "version": "1",
                 "description": "Customers, API keys and their verification (full mode)."},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "rootKey": {"type": "http", "scheme": "bearer",
                        "description": "a root key (vroot_…) or VIVA_ROOT_KEY"}}},
    }
