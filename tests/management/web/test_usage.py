"""The pages' numbers in process with a fake clock, on a real catalog: decisions read from the
usage ledger after real verifications and flushes (SQLite and PostgreSQL), settled days read
once and again when stale, the periods; a customer's limits read from the counters without
charging them, its billing periods against the monthly quota of the plan it was on; the
charts' SVG and colours; the sessions store's expiry and single-use links."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from sidecar.management import schemas as s
from sidecar.management.billing.period import Period
from sidecar.management.errors import NotFound
from sidecar.management.usage.ledger import Batch, write_batch
from sidecar.management.web.charts import (
    COLOURS,
    Bar,
    decisions_chart,
    limit_bars,
    nice_ceiling,
    period_bars,
    usage_chart,
)
from sidecar.management.web.queries import PageQueries
from sidecar.management.web.render import duration, wait
from sidecar.management.web.sessions import (
    DASHBOARD,
    PORTAL,
    PORTAL_LINK_TTL,
    SessionStore,
    csrf_token,
)
from sidecar.management.web.usage import (
    LedgerDecisions,
    LimitUse,
    Slot,
    limit_usage,
    period,
    period_usage,
    recent_periods,
)
from tests.management.rig import ADMIN, Rig, epoch, make_rig

HOUR = 3600


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    made = await make_rig(f"sqlite:///{tmp_path / 'viva.db'}", now="2026-11-10T10:15:00")
    yield made
    await made.db.dispose()


def utc(text: str) -> datetime:
    return datetime.fromtimestamp(epoch(text), UTC)


async def test_decisions_come_from_the_ledger_once_flushed(catalog_url: str) -> None:
    rig = await make_rig(catalog_url, now="2026-11-10T09:50:00")
    try:
        decisions = LedgerDecisions(rig.catalog.sessions, rig.clock, 60)
        acme = await rig.customer("acme", "small")
        globex = await rig.customer("globex", "free")
        assert await rig.codes(acme, 6) == ["VALID"] * 5 + ["RATE_LIMITED"]
        assert await rig.codes(globex, 3) == ["VALID"] * 2 + ["RATE_LIMITED"]
        await rig.verifier.verify("viva_not-a-key", "10.0.0.1")  # no customer: not counted
        rig.at("2026-11-10T10:15:00")
        assert await rig.codes(acme, 1) == ["VALID"]  # a new hour
        since, until, step = period("hour", rig.clock())
        assert [x.codes for x in await decisions.decisions(since, until, step)] == [{}, {}]
        await rig.flusher.flush()  # the pages see what the ledger holds

        slots = await decisions.decisions(since, until, step)
        assert [(x.start, x.codes) for x in slots] == [
            (utc("2026-11-10T09:00:00"), {"VALID": 7, "RATE_LIMITED": 2}),
            (utc("2026-11-10T10:00:00"), {"VALID": 1})]
        mine = await decisions.decisions(since, until, step, "acme")
        assert [(x.allowed, x.refused) for x in mine] == [(5, 1), (1, 0)]
        tallies = await decisions.tallies(since, until, 10)
        assert [(t.id, t.allowed, t.refused) for t in tallies.customers] == [
            ("acme", 6, 1), ("globex", 2, 1)]
        assert [(t.customer_id, dict(t.codes)) for t in tallies.refused_keys] == [
            ("acme", {"VALID": 6, "RATE_LIMITED": 1}),
            ("globex", {"VALID": 2, "RATE_LIMITED": 1})]
        assert [(t.id, t.allowed) for t in tallies.plans] == [("free", 2), ("small", 6)]
        assert len(await decisions.decisions(*period("day", rig.clock()))) == 24
    finally:
        await rig.db.dispose()


async def write(rig: Rig, customer_id: str, day: str, hour: int, code: str, n: int) -> None:
    at = int(epoch(f"{day}T{hour:02d}:00:00") // HOUR)
    async with rig.catalog.sessions.begin() as session:
        await write_batch(session, Batch({(customer_id, "key_1", "", code, "small", at): [n, n]},
                                         rig.clock()), datetime.now(UTC))


async def test_settled_days_are_read_once_and_again_when_stale(rig: Rig) -> None:
    decisions = LedgerDecisions(rig.catalog.sessions, rig.clock, 60)
    await write(rig, "acme", "2026-11-01", 5, "VALID", 10)
    await write(rig, "acme", "2026-11-10", 9, "VALID", 1)  # today, under way
    since, until, step = period("month", rig.clock())
    assert (since, until) == (utc("2026-10-12T00:00:00"), utc("2026-11-11T00:00:00"))
    days = await decisions.decisions(since, until, step)
    assert [d.allowed for d in days if d.allowed] == [10, 1] and days[20].allowed == 10
    # A batch held back by an outage lands in a settled day: it shows once the day is stale.
    await write(rig, "acme", "2026-11-01", 6, "QUOTA_EXCEEDED", 4)
    await write(rig, "acme", "2026-11-10", 9, "VALID", 2)  # today is read every time
    tallies = await decisions.tallies(since, until, 10)
    assert [(t.allowed, t.refused) for t in tallies.customers] == [(13, 0)]
    rig.clock.advance(LedgerDecisions.TTL * 1.25)
    tallies = await decisions.tallies(*period("month", rig.clock())[:2], 10)
    assert [(t.allowed, t.refused) for t in tallies.customers] == [(13, 4)]
    # A day is not settled until the grace after midnight has passed.
    rig.at("2026-11-11T00:00:30")
    await write(rig, "acme", "2026-11-10", 23, "VALID", 5)
    since, until, _ = period("month", rig.clock())
    assert (await decisions.tallies(since, until, 10)).customers[0].allowed == 18


def test_periods_end_with_the_bucket_under_way() -> None:
    now = epoch("2026-11-10T10:15:00")
    assert period("hour", now) == (utc("2026-11-10T09:00:00"), utc("2026-11-10T11:00:00"),
                                   timedelta(hours=1))
    assert period("day", now)[:2] == (utc("2026-11-09T11:00:00"), utc("2026-11-10T11:00:00"))
    assert period("month", now)[1:] == (utc("2026-11-11T00:00:00"), timedelta(days=1))


async def test_limit_usage_reads_the_counters_without_charging_them(rig: Rig) -> None:
    key = await rig.customer("acme", "large")
    acme = await rig.catalog.get_customer("acme")
    plans = rig.plans[0]
    engine = rig.verifier.engine
    before = await limit_usage(engine, plans, acme)
    assert [(u.name, u.used, u.capacity, u.quota) for u in before] == [
        ("per_hour", 0, 2000, False), ("monthly", 0, 1000, True)]
    await rig.codes(key, 2)
    for _ in range(3):  # looking does not use anything up
        uses = await limit_usage(engine, plans, acme)
    assert [(u.used, u.remaining) for u in uses] == [(2, 1998), (2, 998)]
    assert uses[0].resets_in == 45 * 60 and uses[0].window_seconds == HOUR
    lifted = await rig.catalog.update_customer(ADMIN, "acme", s.CustomerUpdate(
        limits=[s.Limit("monthly", 5000, unit="month", calendar=True)]))
    assert [u.capacity for u in await limit_usage(engine, plans, lifted)] == [2000, 5000]
    gone = s.Customer("x", "X", None, "gold", {}, None, utc("2026-11-01T00:00:00"),
                      utc("2026-11-01T00:00:00"))
    assert await limit_usage(engine, plans, gone) == []


async def test_billing_periods_against_the_quota_of_the_plan_then(rig: Rig) -> None:
    rig.at("2026-09-20T12:00:00")
    key = await rig.customer("acme", "large")
    await rig.codes(key, 3)
    reported = await rig.report({"id": "t1", "customer_id": "acme", "meter": "tokens",
                                 "value": 7, "time": "2026-09-20T12:00:00Z"})
    assert reported.accepted == 1
    await rig.flusher.flush()
    rig.at("2026-10-15T00:00:00")
    await rig.plan("acme", "small")
    rig.at("2026-11-10T10:15:00")
    await rig.codes(key, 2)
    await rig.flusher.flush()
    acme = await rig.catalog.get_customer("acme")
    now = utc("2026-11-10T10:15:00")
    periods = recent_periods(acme, now, 6)
    assert [str(p) for p in periods] == ["2026-11", "2026-10", "2026-09"]
    spans = await PageQueries(rig.catalog.sessions).plan_spans("acme")
    uses = await period_usage(rig.totals, rig.plans[0], acme, spans, periods)
    assert [(str(u.period), u.plan, u.requests) for u in uses] == [
        ("2026-11", "small", 2), ("2026-10", "small", 0), ("2026-09", "large", 3)]
    assert [u.quota.requests_per_unit if u.quota else None for u in uses] == [None, None,
                                                                               1000]
    assert uses[2].meters["tokens"] == Decimal(7)
    assert recent_periods(acme, now, 2) == [Period(2026, 11), Period(2026, 10)]


async def test_sessions_expire_and_links_work_once(rig: Rig) -> None:
    store = SessionStore(rig.catalog.sessions, rig.clock)
    await rig.customer("acme", "small")
    secret, session = await store.open(DASHBOARD, "root_1")
    assert session.csrf == csrf_token(secret) and len(secret) >= 43
    assert await store.find(DASHBOARD, secret) == session
    assert await store.find(PORTAL, secret) is None  # a dashboard cookie opens no portal
    rig.clock.advance(12 * HOUR)
    assert await store.find(DASHBOARD, secret) is None
    token, expires = await store.issue_link("root_1", "acme")
    assert expires == utc("2026-11-10T22:15:00") + PORTAL_LINK_TTL
    rig.clock.advance(PORTAL_LINK_TTL.total_seconds() - 1)
    redeemed = await store.redeem_link(token)
    assert redeemed is not None and redeemed[1].subject == "acme"
    assert await store.redeem_link(token) is None
    late, _ = await store.issue_link("root_1", "acme")
    rig.clock.advance(PORTAL_LINK_TTL.total_seconds())
    assert await store.redeem_link(late) is None
    assert await store.redeem_link(late[:-1] + "x") is None  # checksum: no lookup
    pending, _ = await store.issue_link("root_1", "acme")
    await rig.catalog.delete_customer(ADMIN, "acme")
    assert await store.redeem_link(pending) is None  # its customer is gone
    with pytest.raises(NotFound):
        await store.issue_link("root_1", "acme")


def test_decisions_chart_describes_itself_and_scales_to_whole_numbers() -> None:
    slots = [Slot(utc("2026-11-10T08:00:00") + timedelta(hours=i),
                  {"VALID": 3, "RATE_LIMITED": 1} if i == 1 else {}) for i in range(3)]
    svg = str(decisions_chart(slots, "Decisions <test>", lambda t: t.strftime("%H:%M")))
    assert svg.startswith('<svg class="chart"') and 'role="img"' in svg
    assert "<title id=" in svg and "Decisions &lt;test&gt;" in svg
    assert "3 allowed and 1 refused in all" in svg and "one per hour" in svg
    assert svg.count("<rect") == 2 and f'fill="{COLOURS["RATE_LIMITED"]}"' in svg
    ticks = re.findall(r'class="tick">([^<]+)<', svg)
    assert ticks[:2] == ["0", "5"] and ticks[2:] == ["08:00", "09:00", "10:00"]
    assert [nice_ceiling(n) for n in (0, 1, 3, 7, 12, 101, 4000)] == [1, 1, 5, 10, 20, 200,
                                                                       5000]


def test_usage_charts_mark_a_used_up_limit_and_scale_periods_without_a_quota() -> None:
    uses = [LimitUse("per_second", 10, 10, 0, 1, 1, False, "token_bucket"),
            LimitUse("monthly", 100, 5, 95, 2592000, 86400, True, "fixed_window")]
    svg = str(usage_chart(limit_bars(uses), "Limits"))
    assert "per_second: 10 of 10 used; monthly: 5 of 100 used" in svg
    assert 'fill="#cf222e"' in svg and "(quota)" in svg
    bars = [Bar("2026-11", 50, None, "no monthly quota"), Bar("2026-10", 100, None, "")]
    widths = re.findall(r'width="([0-9.]+)" height="20" rx="3" fill', str(usage_chart(
        bars, "Periods")))
    assert float(widths[1]) == 2 * float(widths[0])  # scaled to the longest
    assert period_bars([]) == []


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
