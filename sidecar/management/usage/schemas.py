"""Usage API types (msgspec): reported events and usage series.

Meter values are decimal strings (``"12.5"``): exact, whatever the reader's number type.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from sidecar.management.schemas import Id, Time

EventId = Annotated[str, Meta(pattern=r"^[!-~]{1,128}$")]  # printable ASCII, no space
MeterName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
KeyId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_]{1,40}$")]
MAX_EVENTS = 1000
Granularity = Literal["hour", "day", "month"]


class UsageEvent(Struct, forbid_unknown_fields=True):
    """One usage event; exactly one of ``customer_id`` and ``key_id``. ``value``: a number
    (sum, max), a string or integer (unique_count: the distinct thing counted), nothing
    (count)."""

    id: EventId
    meter: MeterName
    customer_id: Id | UnsetType = UNSET
    key_id: KeyId | UnsetType = UNSET
    value: int | float | str | None = None
    time: Time | UnsetType = UNSET
    properties: dict[str, Any] = {}


UsageEvents = Annotated[list[UsageEvent], Meta(min_length=1, max_length=MAX_EVENTS)]


class Rejected(Struct):
    index: int
    error: str


class EventsResult(Struct):
    accepted: int
    duplicates: int
    rejected: list[Rejected]


class UsagePoint(Struct):
    start: datetime
    allowed: int
    denied: int
    value: str


class UsageTotal(Struct):
    allowed: int
    denied: int
    value: str


class UsageSeries(Struct):
    customer_id: str | None
    key_id: str | None
    meter: str
    aggregation: str
    granularity: Granularity
    start: datetime
    end: datetime
    series: list[UsagePoint]
    total: UsageTotal
