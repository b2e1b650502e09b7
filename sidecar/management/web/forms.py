"""HTML form fields → the admin API's request types, checked by the same msgspec
declarations (so a form and a JSON call are refused for the same reasons, naming the same
field)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import Any, TypeVar

import msgspec

from sidecar.management.admin import decode
from sidecar.management.errors import Invalid

T = TypeVar("T")
MAX_FIELD = 2000


def text(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name, "")
    if not isinstance(value, str):
        raise Invalid("expected text", name)
    if len(value) > MAX_FIELD:
        raise Invalid(f"longer than {MAX_FIELD} characters", name)
    return value.strip()


def struct(kind: type[T], fields: Mapping[str, Any]) -> T:
    """``fields`` (empty texts left out) as ``kind``, or Invalid naming the field."""
    data = {k: v for k, v in fields.items() if v not in ("", None)}
    return decode(msgspec.json.encode(data), kind)


def end_of_day(form: Mapping[str, Any], name: str) -> str | None:
    """A date field (YYYY-MM-DD) as the end of that day in UTC, ISO 8601; None when empty."""
    value = text(form, name)
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise Invalid("expected a date such as 2027-01-31", name) from None
    return datetime.combine(day, time(23, 59, 59), UTC).isoformat()


def whole_number(form: Mapping[str, Any], name: str, default: int = 0) -> int:
    value = text(form, name)
    if not value:
        return default
    if not value.isdigit() or len(value) > 12:
        raise Invalid("expected a whole number", name)
    return int(value)
