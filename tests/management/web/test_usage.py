"""The pages' numbers in process with a fake clock: LiveDecisions (the UsageSource until the
usage ledger exists) hearing real verifications, its resolutions and retention; the limits
used now, read from the counters without charging them; the charts' SVG and colours; the
sessions store's expiry and single-use links on a real SQLite catalog."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sidecar.limiter.engine import Engine
from sidecar.limiter.options import EngineOptions
from sidecar.management import schemas as s
from sidecar.management.cache import KeyCache
from sidecar.management.catalog import Actor, Catalog
from sidecar.management.db.connect import create_engine, database_url, sessions
from sidecar.management.db.migrate import upgrade
from sidecar.management.errors import NotFound
from sidecar.management.plans import build_plans
from sidecar.management.verify import Verifier
from sidecar.management.web.charts import (
    COLOURS,
    decisions_chart,
    nice_ceiling,
    usage_chart,
)
from sidecar.management.web.render import duration, wait
from sidecar.management.web.sessions import (
    DASHBOARD,
    PORTAL,
    PORTAL_LINK_TTL,
    SessionStore,
    csrf_token,
)
from sidecar.management.web.usage import HOUR, LiveDecisions, Slot, limit_usage, period
from sidecar.rules.loader import RuleFile
from sidecar.storage.memory import MemoryStore
from tests.conftest import FakeClock
from tests.management.kit import PLANS

ADMIN = Actor("root_test", frozenset({"admin"}))
START = 1_800_000_000.0  # a whole hour


@dataclass
class Rig:
    catalog: Catalog
    verifier: Verifier
    engine: Engine
    live: LiveDecisions
    store: SessionStore
    clock: FakeClock


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    clock = FakeClock(START)
    db = create_engine(database_url("", str(tmp_path)))
    await upgrade(db)
    plans = build_plans([RuleFile("plans.yaml", PLANS)])
    cache = KeyCache(100, clock)
    catalog = Catalog(sessions(db), lambda: plans, clock, cache.forget)
    engine = Engine(MemoryStore(), EngineOptions(expiration_jitter_max_seconds=0), clock=clock)
    verifier = Verifier(catalog, cache, engine, lambda: plans, failures_per_minute=0)
    live = LiveDecisions(clock)
    verifier.listeners.append(live.heard)
    yield Rig(catalog, verifier, engine, live, SessionStore(sessions(db), clock), clock)
    await db.dispose()


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(START + seconds, UTC)


async def test_live_decisions_count_what_verification_answered(rig: Rig) -> None:
    acme = await rig.catalog.create_customer(ADMIN, s.CustomerCreate("Acme", "basic", "acme"))
    key = await rig.catalog.create_key(ADMIN, s.KeyCreate(acme.id))
    codes = [(await rig.verifier.verify(key.key, "")).code for _ in range(4)]
    assert codes == ["VALID"] * 3 + ["RATE_LIMITED"]
    await rig.verifier.verify("viva_not-a-key", "")
    rig.clock.advance(90)
    await rig.verifier.verify(key.key, "")
    minutes = await rig.live.decisions(at(0), at(180), timedelta(minutes=1))
    assert [m.codes for m in minutes] == [{"VALID": 3, "RATE_LIMITED": 1, "NOT_FOUND": 1},
                                          {"RATE_LIMITED": 1}, {}]
    mine = await rig.live.decisions(at(0), at(180), timedelta(minutes=1), "acme")
    assert [(m.allowed, m.refused) for m in mine] == [(3, 1), (0, 1), (0, 0)]
    top = await rig.live.top_customers(at(0), at(HOUR), 10)
    assert [(t.id, t.allowed, t.refused) for t in top] == [("acme", 3, 2)]
    keys = await rig.live.top_refused_keys(at(0), at(HOUR), 10)
    assert [(t.id, t.customer_id, t.refused) for t in keys] == [(key.id, "acme", 2)]
    assert [(t.id, t.allowed) for t in await rig.live.by_plan(at(0), at(HOUR))] == [
        ("basic", 3)]


async def test_live_decisions_pick_a_resolution_and_forget_old_buckets() -> None:
    clock = FakeClock(START)
    live = LiveDecisions(clock)
    for hour in range(24 * 40):  # 40 days, one decision an hour, oldest first
        live.add("c", "k", "p", "VALID", START + hour * HOUR)
    end = START + 24 * 40 * HOUR  # START is 08:00 UTC: the newest day has 8 hours
    days = await live.decisions(*period("month", end - 1))
    assert len(days) == 30 and [d.allowed for d in days] == [24] * 29 + [8]
    old = await live.decisions(at(0), at(86400), timedelta(days=1))
    assert old[0].codes == {}  # more than 31 days before the newest: forgotten
    hours = await live.decisions(*period("day", end - 1))
    assert [h.allowed for h in hours] == [1] * 24
    assert len(live._buckets[3600]) == 48 and len(live._buckets[86400]) == 31


def test_periods_end_at_the_next_boundary() -> None:
    since, until, step = period("hour", START + 125)
    assert (until - since, step, until) == (timedelta(hours=1), timedelta(minutes=1), at(180))
    since, until, step = period("month", START)
    assert (until - since, step) == (timedelta(days=30), timedelta(days=1))


async def test_limit_usage_reads_the_counters_without_charging_them(rig: Rig) -> None:
    acme = await rig.catalog.create_customer(ADMIN, s.CustomerCreate("Acme", "basic", "acme"))
    key = await rig.catalog.create_key(ADMIN, s.KeyCreate(acme.id))
    plans = rig.verifier.plans()
    before = await limit_usage(rig.engine, plans, acme)
    assert [(u.name, u.used, u.capacity, u.quota) for u in before] == [
        ("per_minute", 0, 3, False), ("monthly", 0, 5, True)]
    for _ in range(2):
        await rig.verifier.verify(key.key, "")
    for _ in range(3):  # looking does not use anything up
        uses = await limit_usage(rig.engine, plans, acme)
    assert [(u.used, u.remaining) for u in uses] == [(2, 1), (2, 3)]
    assert uses[0].resets_in == 3600 and uses[0].window_seconds == 3600
    lifted = await rig.catalog.update_customer(ADMIN, "acme", s.CustomerUpdate(
        limits=[s.Limit("per_minute", 10, unit="hour")]))
    assert [u.capacity for u in await limit_usage(rig.engine, plans, lifted)] == [10, 5]
    gone = s.Customer("x", "X", None, "gold", {}, None, at(0), at(0))
    assert await limit_usage(rig.engine, plans, gone) == []


async def test_sessions_expire_and_links_work_once(rig: Rig) -> None:
    await rig.catalog.create_customer(ADMIN, s.CustomerCreate("Acme", "basic", "acme"))
    secret, session = await rig.store.open(DASHBOARD, "root_1")
    assert session.csrf == csrf_token(secret) and len(secret) >= 43
    assert await rig.store.find(DASHBOARD, secret) == session
    assert await rig.store.find(PORTAL, secret) is None  # a dashboard cookie opens no portal
    rig.clock.advance(12 * 3600)
    assert await rig.store.find(DASHBOARD, secret) is None
    token, expires = await rig.store.issue_link("root_1", "acme")
    assert expires == at(12 * 3600) + PORTAL_LINK_TTL
    rig.clock.advance(PORTAL_LINK_TTL.total_seconds() - 1)
    redeemed = await rig.store.redeem_link(token)
    assert redeemed is not None and redeemed[1].subject == "acme"
    assert await rig.store.redeem_link(token) is None
    late, _ = await rig.store.issue_link("root_1", "acme")
    rig.clock.advance(PORTAL_LINK_TTL.total_seconds())
    assert await rig.store.redeem_link(late) is None
    assert await rig.store.redeem_link(late[:-1] + "x") is None  # checksum: no lookup
    pending, _ = await rig.store.issue_link("root_1", "acme")
    await rig.catalog.delete_customer(ADMIN, "acme")
    assert await rig.store.redeem_link(pending) is None  # its customer is gone
    with pytest.raises(NotFound):
        await rig.store.issue_link("root_1", "acme")


def test_decisions_chart_describes_itself_and_scales_to_whole_numbers() -> None:
    slots = [Slot(at(i * 60), {"VALID": 3, "RATE_LIMITED": 1} if i == 1 else {})
             for i in range(3)]
    svg = str(decisions_chart(slots, "Decisions <test>", lambda t: t.strftime("%H:%M")))
    assert svg.startswith('<svg class="chart"') and 'role="img"' in svg
    assert "<title id=" in svg and "Decisions &lt;test&gt;" in svg
    assert "3 allowed and 1 refused in all" in svg and "one per minute" in svg
    assert svg.count("<rect") == 2 and f'fill="{COLOURS["RATE_LIMITED"]}"' in svg
    ticks = re.findall(r'class="tick">([^<]+)<', svg)
    assert ticks[:2] == ["0", "5"] and ticks[2:] == ["08:00", "08:01", "08:02"]
    assert [nice_ceiling(n) for n in (0, 1, 3, 7, 12, 101, 4000)] == [1, 1, 5, 10, 20, 200,
                                                                       5000]


def test_usage_chart_marks_a_used_up_limit() -> None:
    from sidecar.management.web.usage import LimitUse

    uses = [LimitUse("per_second", 10, 10, 0, 1, 1, False, "token_bucket"),
            LimitUse("monthly", 100, 5, 95, 2592000, 86400, True, "fixed_window")]
    svg = str(usage_chart(uses, "Limits"))
    assert "per_second: 10 of 10 used; monthly: 5 of 100 used" in svg
    assert 'fill="#cf222e"' in svg and "(quota)" in svg


def contrast(hex_colour: str) -> float:
    """WCAG contrast ratio of a colour against white."""
    def channel(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    luminance = 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)
    return 1.05 / (luminance + 0.05)


def test_every_chart_colour_stands_out_from_the_background() -> None:
    assert set(COLOURS) == set(s.CODES)
    for code, colour in COLOURS.items():
        assert contrast(colour) >= 3, code  # WCAG 1.4.11, graphical objects
    css = (Path(__file__).parents[3] / "sidecar/management/web/static/app.css").read_text()
    for code, colour in COLOURS.items():
        assert f".code-{code} {{ background: {colour}; }}" in css


def test_durations_read_as_people_say_them() -> None:
    assert [duration(n) for n in (1, 60, 3600, 2592000, 90)] == ["1 s", "1 min", "1 h",
                                                                  "30 d", "90 s"]
    assert [wait(n) for n in (0, 45, 2084, 2252084)] == ["0 s", "45 s", "34 min 44 s",
                                                         "26 d 1 h"]
