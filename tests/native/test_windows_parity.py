"""Calendar windows: the native engine reads the same TZif data as zoneinfo and resolves local
midnights as zoneinfo does (fold 0 in gaps and folds), so every zone, unit and instant gives
the windows limiter/windows.py gives. The window is read off the native Redis pipeline (the
counter key carries the start, the script's ARGV the end), nothing is sent."""

from __future__ import annotations

import functools
import re
import zoneinfo
from datetime import datetime, timedelta
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.limiter.native import NativeEngineAdapter, zone_data
from sidecar.limiter.windows import calendar_window
from sidecar.storage.redis.scripts import script_sha, script_source
from tests.conftest import FakeClock
from tests.limiter.kit import desc, make_rules

UNITS = ("day", "week", "month", "year")
ZONES = sorted(zoneinfo.available_timezones())
# Zones whose rules are the odd ones: DST at midnight, half-hour and negative DST, 30-minute
# shifts, skipped days, far-future footers.
ODD = ("America/Santiago", "America/Havana", "Asia/Beirut", "Europe/Dublin",
       "Australia/Lord_Howe", "Pacific/Apia", "Pacific/Kiritimati", "Africa/Casablanca",
       "America/Asuncion", "Asia/Tehran", "America/Godthab", "Antarctica/Troll")
YEAR_MS = 365 * 86_400_000


@functools.cache
def engine(native: ModuleType, zone: str, unit: str) -> tuple[NativeEngineAdapter, FakeClock]:
    clock = FakeClock(0)
    adapter = NativeEngineAdapter(native, clock=clock, script_sha=script_sha(),
                                  script_source=script_source(), jitter=[0])
    adapter.set_rules(make_rules(f"""
domain: c
time_zone: {zone}
descriptors:
  - key: k
    rate_limit: {{unit: {unit}, requests_per_unit: 1, calendar: true}}
"""))
    return adapter, clock


def native_window(native: ModuleType, zone: str, unit: str, now_ms: int) -> tuple[int, int]:
    adapter, clock = engine(native, zone, unit)
    clock.now = now_ms / 1000
    planned = adapter.redis_batch([("c", [desc(("k", "v"))], 0, False)])
    commands = planned.batch.commands
    assert commands is not None
    args = re.findall(rb"\$\d+\r\n([^\r]*)\r\n", commands)
    key, end = args[3].decode(), int(args[-1])
    return int(key.rsplit("_", 1)[1]) * 1000, end


@settings(max_examples=400, deadline=None)
@given(zone=st.sampled_from(ZONES), unit=st.sampled_from(UNITS),
       now_ms=st.integers(-30 * YEAR_MS, 130 * YEAR_MS))
def test_every_zone(native: ModuleType, zone: str, unit: str, now_ms: int) -> None:
    now_ms = max(now_ms, 86_400_000)
    assert native_window(native, zone, unit, now_ms) == calendar_window(
        now_ms, unit, zoneinfo.ZoneInfo(zone))


@settings(max_examples=400, deadline=None)
@given(zone=st.sampled_from(ODD), unit=st.sampled_from(UNITS),
       now_ms=st.integers(20 * YEAR_MS, 80 * YEAR_MS), edge=st.sampled_from((0, 1)),
       delta=st.integers(-7_200_000, 7_200_000))
def test_around_the_edges_of_odd_zones(native: ModuleType, zone: str, unit: str, now_ms: int,
                                       edge: int, delta: int) -> None:
    # Land near a window's edge: where gaps, folds and midnight transitions matter.
    now_ms = calendar_window(now_ms, unit, zoneinfo.ZoneInfo(zone))[edge] + delta
    assert native_window(native, zone, unit, now_ms) == calendar_window(
        now_ms, unit, zoneinfo.ZoneInfo(zone))


def transition_days(zone: zoneinfo.ZoneInfo, first: int, last: int) -> list[datetime]:
    """Local noons of the days (years first..last) after which the UTC offset changes."""
    days = []
    day = datetime(first, 1, 1, 12)
    while day.year <= last:
        following = day + timedelta(days=1)
        if zone.utcoffset(day) != zone.utcoffset(following):
            days.append(day)
        day = following
    return days


@pytest.mark.parametrize("name", ODD)
def test_every_transition_of_odd_zones(native: ModuleType, name: str) -> None:
    """Local midnights next to each change of offset, 1990-2060: in the TZif table and past it
    (the footer's POSIX rule), where a midnight may fall in a gap or happen twice."""
    zone = zoneinfo.ZoneInfo(name)
    for noon in transition_days(zone, 1990, 2060):
        for day in (noon, noon + timedelta(days=1)):
            at = int(day.replace(tzinfo=zone).timestamp() * 1000)
            start, end = calendar_window(at, "day", zone)
            for now_ms in (at, start - 1, start, start + 1, end - 1):
                for unit in ("day", "week"):
                    assert native_window(native, name, unit, now_ms) == calendar_window(
                        now_ms, unit, zone), (name, unit, now_ms)


def test_zone_data_is_the_file_zoneinfo_reads() -> None:
    data = zone_data("Europe/Paris")
    assert data.startswith(b"TZif")
    for bad in ("../etc/passwd", "/etc/localtime", ""):
        with pytest.raises(ValueError, match="is not a zone name"):
            zone_data(bad)
