"""Window boundaries: epoch-aligned fixed lengths, or calendar periods in a time zone."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sidecar.model import CALENDAR_UNITS


def aligned_window(now_ms: int, window_ms: int) -> tuple[int, int]:
    """[start, end) in ms of the epoch-aligned window of ``window_ms`` holding ``now_ms``."""
    start = now_ms - now_ms % window_ms
    return start, start + window_ms


def calendar_window(now_ms: int, unit: str, zone: ZoneInfo) -> tuple[int, int]:
    """[start, end) in ms of the calendar day/week (Monday)/month/year holding ``now_ms``."""
    local = datetime.fromtimestamp(now_ms / 1000, zone)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    if unit == "day":
        start, end = day, day + timedelta(days=1)
    elif unit == "week":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    elif unit == "month":
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    elif unit == "year":
        start = day.replace(month=1, day=1)
        end = start.replace(year=start.year + 1)
    else:
        raise ValueError(f"{unit!r} has no calendar window; expected one of "
                         f"{', '.join(CALENDAR_UNITS)}")
    return _epoch_ms(start, zone), _epoch_ms(end, zone)


def _epoch_ms(naive_local: datetime, zone: ZoneInfo) -> int:
    """Epoch ms of a local wall-clock time (midnight; the earlier instant if ambiguous)."""
    return int(naive_local.replace(tzinfo=zone, fold=0).timestamp() * 1000)
