"""The OpenAPI 3.1 document of the admin API, its schemas generated from schemas.py."""

from __future__ import annotations

from typing import Any

import msgspec

from sidecar.management import schemas as s
from sidecar.management.alerts import schemas as w
from sidecar.management.billing import schemas as b
from sidecar.management.usage import schemas as u

_TYPES = [s.CustomerCreate, s.CustomerUpdate, s.Customer, s.CustomerList, s.KeyCreate,
          s.KeyUpdate, s.KeyCreated, s.Key, s.KeyList, s.Rotate, s.Verify, s.Verification,
          s.AuditList, s.Plans, s.PortalSessionCreate, s.PortalLink, s.Error,
          u.UsageEvent, u.EventsResult, u.UsageSeries, b.Invoice, b.InvoiceList,
          b.PeriodClosed, w.WebhookCreate, w.WebhookUpdate, w.Webhook, w.WebhookCreated,
          w.WebhookList, w.Delivery, w.DeliveryDetail, w.DeliveryList, *w.EVENT_DATA.values()]
_ERRORS = {"400": "Invalid request; `field` names the culprit",
           "401": "No valid root key (`Authorization: Bearer <root key>`)",
           "403": "The root key lacks the operation's scope",
           "404": "No such customer, key, invoice, webhook or delivery",
           "409": "Conflict: the id or a namespace is taken, the plan's max_keys is reached, "
                  "the key is revoked, the billing period is not over or cannot be priced",
           "413": "The body exceeds VIVA_REST_MAX_BODY_BYTES",
           "503": "The catalog database or the counter store is unavailable (webhooks: or "
                  "VIVA_SECRET_KEY is not set)"}


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
                                "(a plan or namespace change applies on every instance "
                                "within a second)", "200",
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
        **_webhook_paths(),
    }
    paths.update(_usage_and_billing())
    return {
        "openapi": "3.1.0",
        "info": {"title": "Viva Rate Limiter admin API", "version": "1",
                 "description": "Customers, API keys and their verification, usage, "
                                "billing and webhooks (full mode)."},
        "paths": paths,
        "webhooks": _events(),
        "components": {"schemas": components, "securitySchemes": {
            "rootKey": {"type": "http", "scheme": "bearer",
                        "description": "a root key (vroot_…) or VIVA_ROOT_KEY"}}},
    }


def _usage_and_billing() -> dict[str, Any]:
    time = {"type": "string", "format": "date-time"}
    period = {"type": "string", "pattern": r"^\d{4}-\d{2}$"}
    events = _operation("report_usage", "usage:write", "Report up to 1,000 usage events; each "
                        "is accepted, a duplicate (by id) or rejected with its reason", "200",
                        "EventsResult")
    events["requestBody"] = {"required": True, "content": {"application/json": {"schema": {
        "type": "array", "minItems": 1, "maxItems": u.MAX_EVENTS,
        "items": {"$ref": "#/components/schemas/UsageEvent"}}}}}
    events["responses"]["413"] = {"description": _ERRORS["413"], "content": _ref("Error")}
    invoice = _operation("get_invoice", "billing:read", "One final invoice: JSON, CSV or a "
                         "printable HTML page", "200", "Invoice", errors=("400", "401", "403",
                                                                          "404"),
                         params=[*_ID, _query("format", "json (default), csv or html",
                                              {"enum": ["json", "csv", "html"]})])
    invoice["responses"]["200"]["content"].update({"text/csv": {"schema": {"type": "string"}},
                                                   "text/html": {"schema": {"type": "string"}}})
    return {
        "/v1/usage/events": {"post": events},
        "/v1/usage": {"get": _operation(
            "get_usage", "usage:read", "Decisions and a meter per hour, day or month", "200",
            "UsageSeries", errors=("400", "401", "403", "404"), params=[
                _query("customer_id", "the customer (or key_id, or both)", {"type": "string"}),
                _query("key_id", "one key of the customer", {"type": "string"}),
                _query("meter", "requests (default) or a declared meter", {"type": "string"}),
                _query("from", "start (rounded down to the granularity; default: this "
                       "month's start)", time),
                _query("to", "end (rounded up; default: now)", time),
                _query("granularity", "bucket size (default day)",
                       {"enum": ["hour", "day", "month"]})])},
        "/v1/invoices/preview": {"get": _operation(
            "preview_invoice", "billing:read", "The running invoice of a period (the final "
            "one once closed)", "200", "Invoice", errors=("400", "401", "403", "404", "409"),
            params=[{**_query("customer_id", "the customer", {"type": "string"}),
                     "required": True},
                    _query("period", "YYYY-MM (default: the current month)", period)])},
        "/v1/billing/periods/{period}/close": {"post": _operation(
            "close_period", "billing:write", "Finalise the invoices of every customer for a "
            "period that is over; closing it again answers the same invoices", "200",
            "PeriodClosed", errors=("400", "401", "403", "409"),
            params=[{"name": "period", "in": "path", "required": True, "schema": period}])},
        "/v1/invoices": {"get": _operation(
            "list_invoices", "billing:read", "Final invoices, by number", "200", "InvoiceList",
            params=[_query("customer_id", "only this customer's", {"type": "string"}),
                    _query("period", "only this period (YYYY-MM)", period), *_PAGE])},
        "/v1/invoices/{id}": {"get": invoice},
    }


_DELIVERY = [*_ID, {"name": "delivery_id", "in": "path", "required": True,
                    "schema": {"type": "string"}}]


def _webhook_paths() -> dict[str, Any]:
    r = ("400", "401", "403", "404")
    statuses = {"type": "string", "enum": list(w.DELIVERY_STATUSES)}
    return {
        "/v1/webhooks": {
            "post": _operation("create_webhook", "webhooks:write", "Subscribe a URL to events; "
                               "the answer holds the signing secret, shown this once", "201",
                               "WebhookCreated", "WebhookCreate"),
            "get": _operation("list_webhooks", "webhooks:read", "List webhooks", "200",
                              "WebhookList", params=_PAGE)},
        "/v1/webhooks/{id}": {
            "get": _operation("get_webhook", "webhooks:read", "One webhook (never its secret)",
                              "200", "Webhook", errors=r, params=_ID),
            "patch": _operation("update_webhook", "webhooks:write", "Change a webhook", "200",
                                "Webhook", "WebhookUpdate", r, _ID),
            "delete": _operation("delete_webhook", "webhooks:write", "Delete a webhook; its "
                                 "pending deliveries fail", "204", None, errors=r,
                                 params=_ID)},
        "/v1/webhooks/{id}/deliveries": {
            "get": _operation("list_deliveries", "webhooks:read", "A webhook's deliveries, "
                              "newest first", "200", "DeliveryList", errors=r, params=[
                                  *_ID, _query("status", "only deliveries in this state",
                                               statuses), *_PAGE])},
        "/v1/webhooks/{id}/deliveries/{delivery_id}": {
            "get": _operation("get_delivery", "webhooks:read", "One delivery with its payload "
                              "and every attempt", "200", "DeliveryDetail", errors=r,
                              params=_DELIVERY)},
        "/v1/webhooks/{id}/deliveries/{delivery_id}/retry": {
            "post": _operation("retry_delivery", "webhooks:write", "Send a delivery again now",
                               "202", "Delivery", errors=r, params=_DELIVERY)},
    }


_SIGNATURE_HEADERS = [
    {"name": "webhook-id", "in": "header", "required": True, "schema": {"type": "string"},
     "description": "the event's id, the same on every attempt: deduplicate by it"},
    {"name": "webhook-timestamp", "in": "header", "required": True,
     "schema": {"type": "string"}, "description": "Unix seconds of this attempt"},
    {"name": "webhook-signature", "in": "header", "required": True,
     "schema": {"type": "string"},
     "description": "v1,<base64 of HMAC-SHA256(key, \"<id>.<timestamp>.<body>\")>, key = "
                    "base64-decoded secret after whsec_ (Standard Webhooks)"}]


def _events() -> dict[str, Any]:
    """What a receiver gets (OpenAPI's ``webhooks``): the Standard Webhooks envelope of each
    event type this service defines."""
    out: dict[str, Any] = {}
    for event_type, data in w.EVENT_DATA.items():
        envelope = {"type": "object", "required": ["type", "timestamp", "data"],
                    "properties": {"type": {"const": event_type},
                                   "timestamp": {"type": "string", "format": "date-time"},
                                   "data": {"$ref": f"#/components/schemas/{data.__name__}"}}}
        out[event_type] = {"post": {
            "operationId": f"event_{event_type.replace('.', '_')}",
            "summary": f"{event_type}, signed as Standard Webhooks says",
            "parameters": _SIGNATURE_HEADERS,
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": envelope}}},
            "responses": {"2XX": {"description": "Delivered; anything else is retried"}}}}
    return out
