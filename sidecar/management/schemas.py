"""The admin API's request and response types (msgspec), the source of its JSON Schema.

Requests are decoded with unknown fields refused; UNSET marks a field a PATCH left out
(null clears a field that may be empty). Responses never carry a secret, except the ``key``
of KeyCreated, the answer of a create or a rotate.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

Name = Annotated[str, Meta(min_length=1, max_length=200)]
Id = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
PlanId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
Email = Annotated[str, Meta(pattern=r"^[^@\s]{1,64}@[^@\s]{1,255}$")]
LimitName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
Time = Annotated[datetime, Meta(tz=True)]
Meta_ = dict[str, Any]
Count = Annotated[int, Meta(ge=0, le=4294967295)]
Unit = Literal["second", "minute", "hour", "day", "week", "month", "year"]
Algorithm = Literal["fixed_window", "sliding_window", "sliding_log", "token_bucket",
                    "leaky_bucket"]
Code = Literal["VALID", "NOT_FOUND", "EXPIRED", "REVOKED", "DISABLED", "FORBIDDEN",
               "RATE_LIMITED", "QUOTA_EXCEEDED"]
CODES: tuple[str, ...] = Code.__args__  # type: ignore[attr-defined]


class Limit(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A named limit in the rules' vocabulary; a plan limit of the same name is replaced."""

    name: LimitName
    requests_per_unit: Count
    unit: Unit | UnsetType = UNSET
    algorithm: Algorithm | UnsetType = UNSET
    burst: Annotated[int, Meta(ge=1, le=4294967295)] | UnsetType = UNSET
    window: Annotated[str, Meta(pattern=r"^(\d+d)?(\d+h)?(\d+m)?(\d+s)?$",
                                max_length=32)] | UnsetType = UNSET
    unit_multiplier: Annotated[int, Meta(ge=1, le=1_000_000)] | UnsetType = UNSET
    calendar: bool | UnsetType = UNSET


Limits = Annotated[list[Limit], Meta(max_length=20)]
MAX_NAMESPACES = 50
Namespace = Annotated[str, Meta(
    pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
    description="a rules domain (the namespace of /v1/check): 1 to 64 letters, digits, "
                "'_', '.', ':' or '-'")]
Namespaces = Annotated[list[Namespace], Meta(
    max_length=MAX_NAMESPACES,
    description="rules namespaces this customer owns: their /v1/check, /v1/report and "
                "/v1/forward-auth decisions are counted as its usage (and priced as its "
                "requests); each namespace belongs to one customer at most")]


class CustomerCreate(Struct, forbid_unknown_fields=True):
    name: Name
    plan: PlanId
    id: Id | UnsetType = UNSET
    email: Email | None = None
    meta: Meta_ = {}
    limits: Limits | None = None
    namespaces: Namespaces = []


class CustomerUpdate(Struct, forbid_unknown_fields=True):
    name: Name | UnsetType = UNSET
    email: Email | UnsetType | None = UNSET
    plan: PlanId | UnsetType = UNSET
    meta: Meta_ | UnsetType = UNSET
    limits: Limits | UnsetType | None = UNSET
    namespaces: Namespaces | UnsetType = UNSET  # the whole list: [] gives them all up


class Customer(Struct):
    id: str
    name: str
    email: str | None
    plan: str
    meta: Meta_
    limits: list[Limit] | None
    created_at: datetime
    updated_at: datetime
    namespaces: list[str] = []  # sorted


class CustomerList(Struct):
    items: list[Customer]
    next_cursor: str | None


class KeyCreate(Struct, forbid_unknown_fields=True):
    customer_id: Id
    name: Name | None = None
    expires_at: Time | None = None
    limits: Limits | None = None
    meta: Meta_ = {}


class KeyUpdate(Struct, forbid_unknown_fields=True):
    enabled: bool | UnsetType = UNSET
    expires_at: Time | UnsetType | None = UNSET
    name: Name | UnsetType | None = UNSET
    limits: Limits | UnsetType | None = UNSET
    meta: Meta_ | UnsetType = UNSET


class KeyCreated(Struct):
    """The only answer that carries the secret ``key``: store it now, it is never shown
    again."""

    id: str
    key: str
    start: str
    customer_id: str
    plan: str
    name: str | None
    created_at: datetime
    expires_at: datetime | None


class Key(Struct):
    id: str
    start: str
    customer_id: str
    plan: str
    name: str | None
    enabled: bool
    limits: list[Limit] | None
    meta: Meta_
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    rotated_from: str | None


class KeyList(Struct):
    items: list[Key]
    next_cursor: str | None


class Rotate(Struct, forbid_unknown_fields=True):
    grace_seconds: Annotated[int, Meta(ge=0, le=90 * 86400)] = 0


class Verify(Struct, forbid_unknown_fields=True):
    key: Annotated[str, Meta(max_length=512)]
    cost: Annotated[int, Meta(ge=0, le=1_000_000)] = 1
    limits: Annotated[list[LimitName], Meta(max_length=20)] | None = None
    features: Annotated[list[LimitName], Meta(max_length=20)] | None = None
    # Who presented the key to the caller (its address, or any stable id of that client):
    # failed verifications are budgeted per root key and this value, so one client guessing
    # keys does not use up the budget of the caller's other clients.
    client_address: Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$",
                                        description="the client that presented the key, as the "
                                        "caller saw it (an address or a stable id): failed "
                                        "verifications are budgeted per root key and this "
                                        "value; without it, per root key")] | None = None


class VerifiedLimit(Struct):
    name: str
    limit: int
    remaining: int
    reset_at: datetime
    exceeded: bool


class Verification(Struct):
    valid: bool
    code: Code
    key_id: str | None = None
    customer_id: str | None = None
    plan: str | None = None
    features: list[str] = []
    remaining: int | None = None
    reset_at: datetime | None = None
    limits: list[VerifiedLimit] = []


class AuditEvent(Struct):
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    changes: Meta_


class AuditList(Struct):
    items: list[AuditEvent]
    next_cursor: str | None


class PlanLimit(Struct):
    """A plan's limit as loaded (defaults filled in)."""

    name: str
    unit: str
    requests_per_unit: int
    algorithm: str
    window_seconds: int
    burst: int
    calendar: bool


class PlanView(Struct):
    id: str
    name: str
    features: list[str]
    max_keys: int | None
    limits: list[PlanLimit]


class Plans(Struct):
    """The plans in force, and why the last reload was refused (if it was)."""

    version: str | None
    loaded_at: datetime | None
    files: list[str]
    items: list[PlanView]
    last_reload_error: str | None


class PortalSessionCreate(Struct, forbid_unknown_fields=True):
    customer_id: Id


class PortalLink(Struct):
    """A one-time link into the customer's portal: good once, until ``expires_at``."""

    url: str
    expires_at: datetime


class Error(Struct):
    error: str
    field: str | None


def to_json(value: Any) -> bytes:
    return msgspec.json.encode(value)
