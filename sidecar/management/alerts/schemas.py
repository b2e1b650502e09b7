"""The webhooks API's types and the events' payloads (msgspec), the source of their JSON Schema.

Every event is sent as a Standard Webhooks envelope ``{"type", "timestamp", "data"}``; ``data``
is one of the ``*Data`` structs below (``invoice.created`` carries the invoice billing
defines). No answer carries a signing secret except WebhookCreated, the create answer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from sidecar.management.billing.schemas import Invoice
from sidecar.management.schemas import Key

EventType = Literal["key.created", "key.rotated", "key.revoked", "key.expiring",
                    "usage.threshold", "invoice.created"]
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]
DeliveryStatus = Literal["pending", "delivered", "failed"]
DELIVERY_STATUSES: tuple[str, ...] = DeliveryStatus.__args__  # type: ignore[attr-defined]

Url = Annotated[str, Meta(min_length=1, max_length=2000)]
Events = Annotated[list[EventType], Meta(min_length=1, max_length=len(EVENT_TYPES))]
Description = Annotated[str, Meta(max_length=200)]


class WebhookCreate(Struct, forbid_unknown_fields=True):
    url: Url
    events: Events
    description: Description | None = None
    enabled: bool = True


class WebhookUpdate(Struct, forbid_unknown_fields=True):
    url: Url | UnsetType = UNSET
    events: Events | UnsetType = UNSET
    description: Description | UnsetType | None = UNSET
    enabled: bool | UnsetType = UNSET


class Webhook(Struct):
    id: str
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    created_at: datetime
    updated_at: datetime


class WebhookCreated(Struct):
    """The only answer that carries the signing ``secret`` (``whsec_`` and base64 key
    material, as Standard Webhooks defines it): store it now, it is never shown again."""

    id: str
    secret: str
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    created_at: datetime


class WebhookList(Struct):
    items: list[Webhook]
    next_cursor: str | None


class Attempt(Struct):
    """One delivery attempt: the receiver's status code or why there was none."""

    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class Delivery(Struct):
    """One event for one endpoint. ``pending`` until a 2xx answer (``delivered``) or until
    retried for the whole retry period (``failed``)."""

    id: str
    webhook_id: str
    event_id: str
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    give_up_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class DeliveryDetail(Delivery):
    """A delivery with its event's payload (as sent) and every attempt, oldest first."""

    payload: dict[str, Any] = {}
    attempt_log: list[Attempt] = []


class DeliveryList(Struct):
    items: list[Delivery]
    next_cursor: str | None


# -- the events' payloads (``data`` of the envelope) ---------------------------------------

class KeyCreatedData(Struct):
    key: Key


class KeyRotatedData(Struct):
    """``key`` is the old key (it expires after the grace period), ``new_key`` replaces it."""

    key: Key
    new_key: Key
    grace_seconds: int


class KeyRevokedData(Struct):
    key: Key
    reason: Literal["revoked", "customer_deleted"]


class KeyExpiringData(Struct):
    key: Key
    expires_at: datetime
    notice_days: int


class UsageThresholdData(Struct):
    """A customer's usage of a plan limit reached ``threshold`` (a share of ``allowed``)
    in the period [period_start, period_end)."""

    customer_id: str
    plan: str
    limit: str
    threshold: float
    used: int
    allowed: int
    period_start: datetime
    period_end: datetime


class Envelope(Struct):
    """What every delivery's body holds (Standard Webhooks' payload structure)."""

    type: str
    timestamp: datetime
    data: Any


EVENT_DATA: dict[str, Any] = {"key.created": KeyCreatedData, "key.rotated": KeyRotatedData,
                              "key.revoked": KeyRevokedData, "key.expiring": KeyExpiringData,
                              "usage.threshold": UsageThresholdData, "invoice.created": Invoice}
