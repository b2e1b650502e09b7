"""Usage events and usage series, in process on SQLite and on a real PostgreSQL with a fake
clock: every rejection with its reason, duplicates (in one call, across calls, and sent
concurrently) stored and counted once, series per hour, day and month for every
aggregation, a period's totals, and the 35-day retention."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import pytest
from sqlalchemy import func, select

from sidecar.management.billing.period import Period
from sidecar.management.db.models import UsageEvent
from sidecar.management.errors import Invalid
from sidecar.management.usage.schemas import Granularity, UsageSeries
from sidecar.management.usage.series import Query, meter_of, read_series
from tests.management.rig import ADMIN, Rig, make_rig


@pytest.fixture
async def rig(catalog_url: str) -> AsyncIterator[Rig]:
    made = await make_rig(catalog_url, now="2026-11-01T00:00:00")
    yield made
    await made.db.dispose()


def event(id: str, meter: str = "tokens", value: object = 1, **more: object) -> dict[str, object]:
    return {"id": id, "customer_id": "acme", "meter": meter, "value": value, **more}


NUMBER = "expected a number from 0 to 1000000000000 with at most 6 decimals"


async def test_every_rejection_names_its_reason(rig: Rig) -> None:
    await rig.customer("acme", "small")
    rig.at("2026-11-10T12:00:00")
    result = await rig.report(
        event("ok"),
        {"id": "no-value", "customer_id": "acme", "meter": "tokens"},
        event("x", meter="requests"),
        event("y", meter="bandwidth"),
        {"id": "both", "customer_id": "acme", "key_id": "key_x", "meter": "tokens", "value": 1},
        {"id": "neither", "meter": "tokens", "value": 1},
        event("who", customer_id="nobody"),
        {"id": "nokey", "key_id": "key_missing", "meter": "tokens", "value": 1},
        event("neg", value=-1),
        event("big", value=10**13),
        event("fine", value=0.0000001),
        event("text", value="lots"),
        event("user", meter="users", value=1.5),
        event("future", time="2026-11-10T12:05:01Z"),
        event("early", time="2026-10-31T23:00:00Z"))
    assert (result.accepted, result.duplicates) == (1, 0)
    assert [(r.index, r.error) for r in result.rejected] == [
        (1, f"value: a tokens event needs a value; {NUMBER}"),
        (2, "meter: 'requests' is counted by the sidecar from its decisions; it cannot be "
            "reported"),
        (3, "meter: no meter 'bandwidth'; expected one of exports, storage_gb, tokens, users"),
        (4, "customer_id: give exactly one of customer_id and key_id"),
        (5, "customer_id: give exactly one of customer_id and key_id"),
        (6, "customer_id: no customer 'nobody'"),
        (7, "key_id: no key 'key_missing'"),
        (8, f"value: '-1' is not a sum value; {NUMBER}"),
        (9, f"value: '10000000000000' is not a sum value; {NUMBER}"),
        (10, f"value: '1e-07' is not a sum value; {NUMBER}"),
        (11, f"value: 'lots' is not a sum value; {NUMBER}"),
        (12, "value: a users event needs the distinct value it counts: a string of 1 to 256 "
             "characters or a whole number"),
        (13, "time: more than 5 minutes in the future"),
        (14, "time: before customer 'acme' was created (2026-11-01T00:00:00+00:00)"),
    ]
    async with rig.catalog.sessions() as session:  # nothing of a rejected event is stored
        assert (await session.scalars(select(UsageEvent.id))).all() == ["ok"]


@pytest.mark.parametrize(("events", "field", "error"), [
    ([{"id": "a", "customer_id": "acme"}], "[0]", "Object missing required field `meter`"),
    ([event("a"), event("b", time="2026-11-10T10:00:00")], "[1].time",
     "Expected `datetime` with a timezone component"),
    ([event("a", colour="blue")], "[0]", "Object contains unknown field `colour`"),
    ([event("")], "[0].id", "Expected `str` matching regex '^[!-~]{1,128}$'"),
    ([[1]], "[0]", "Expected `object`, got `array`"),
    ([], None, "Expected `array` of length >= 1"),
    ([event(f"e{i}") for i in range(1001)], None, "Expected `array` of length <= 1000"),
])
async def test_a_call_of_the_wrong_shape_is_refused_whole(
        rig: Rig, events: list[object], field: str | None, error: str) -> None:
    await rig.customer("acme", "small")
    with pytest.raises(Invalid) as refused:
        await rig.report(*events)
    assert (refused.value.field, refused.value.message) == (field, error)
    async with rig.catalog.sessions() as session:
        assert (await session.scalars(select(UsageEvent.id))).all() == []


async def test_duplicate_ids_are_stored_and_counted_once(rig: Rig) -> None:
    key = await rig.customer("acme", "small")
    made = await rig.catalog.list_keys("acme", 1, None)
    key_id = made.items[0].id
    assert key
    first = await rig.report(event("a", value=5), event("a", value=7), event("b", value=3),
                             {"id": "k", "key_id": key_id, "meter": "tokens", "value": 11})
    assert (first.accepted, first.duplicates, first.rejected) == (3, 1, [])
    again = await rig.report(event("b", value=100), event("c", value=2))
    assert (again.accepted, again.duplicates) == (1, 1)
    series = await usage(rig, "tokens", "month")
    assert series.total.value == "21"  # 5 + 3 + 11 + 2: the first value of each id
    by_key = await read(rig, Query(None, key_id, meter_of("tokens", rig.plans[0].meters),
                                   Period(2026, 11).start, Period(2026, 11).end, "month"))
    assert by_key.total.value == "11"


async def test_duplicates_sent_concurrently_count_once(rig: Rig) -> None:
    """Many calls at once, each its own transaction (on PostgreSQL, on connections of their
    own), repeating each other's ids: the primary key decides, once."""
    await rig.customer("acme", "small")
    rig.at("2026-11-05T00:00:00")
    calls = [[event(f"e{(3 * call + i) % 30}", value=(3 * call + i) % 30) for i in range(10)]
             for call in range(12)]  # 120 events, 30 ids, each sent 4 times
    results = await asyncio.gather(*(rig.report(*batch) for batch in calls))
    assert sum(r.accepted for r in results) == 30
    assert sum(r.duplicates for r in results) == 90
    assert all(r.rejected == [] for r in results)
    async with rig.catalog.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(UsageEvent)) == 30
    assert (await usage(rig, "tokens", "month")).total.value == str(sum(range(30)))


async def usage(rig: Rig, meter: str, granularity: Granularity, start: str = "2026-11-01T00:00:00",
                end: str = "2026-12-01T00:00:00") -> UsageSeries:
    query = Query("acme", None, meter_of(meter, rig.plans[0].meters),
                  datetime.fromisoformat(start).replace(tzinfo=UTC),
                  datetime.fromisoformat(end).replace(tzinfo=UTC), granularity)
    return await read(rig, query)


async def read(rig: Rig, query: Query) -> UsageSeries:
    async with rig.catalog.sessions() as session:
        return await read_series(session, query)


async def test_series_per_hour_day_and_month_for_every_aggregation(rig: Rig) -> None:
    key = await rig.customer("acme", "small")
    rig.at("2026-11-02T10:15:00")
    await rig.codes(key, 7)  # 5 allowed, 2 refused
    rig.at("2026-11-02T11:45:00")
    await rig.codes(key, 3)  # a new hour: 3 allowed
    rig.at("2026-11-03T09:00:00")
    await rig.codes(key, 1)
    await rig.flusher.flush()
    assert (await rig.report(
        event("t1", value="1.5", time="2026-11-02T10:20:00Z"),
        event("t2", value=2, time="2026-11-02T10:40:00Z"),
        event("t3", value=4, time="2026-11-03T08:00:00Z"),
        event("s1", "storage_gb", 7, time="2026-11-02T10:20:00Z"),
        event("s2", "storage_gb", 3, time="2026-11-02T11:20:00Z"),
        event("s3", "storage_gb", 5, time="2026-11-03T08:00:00Z"),
        event("u1", "users", "ann", time="2026-11-02T10:20:00Z"),
        event("u2", "users", "bob", time="2026-11-02T11:20:00Z"),
        event("u3", "users", "ann", time="2026-11-02T11:30:00Z"),
        event("u4", "users", 42, time="2026-11-03T08:00:00Z"),
        event("x1", "exports", None, time="2026-11-02T10:20:00Z"),
        event("x2", "exports", None, time="2026-11-03T08:00:00Z"))).accepted == 12

    def points(series: UsageSeries) -> list[tuple[str, int, int, str]]:
        return [(p.start.strftime("%m-%d %H"), p.allowed, p.denied, p.value)
                for p in series.series]

    hours = await usage(rig, "requests", "hour", "2026-11-02T10:30:00", "2026-11-02T12:10:00")
    assert points(hours) == [("11-02 10", 5, 2, "5"), ("11-02 11", 3, 0, "3"),
                             ("11-02 12", 0, 0, "0")]
    days = {meter: await usage(rig, meter, "day", "2026-11-02T00:00:00", "2026-11-04T00:00:00")
            for meter in ("requests", "tokens", "storage_gb", "users", "exports")}
    assert {m: [p[3] for p in points(s)] for m, s in days.items()} == {
        "requests": ["8", "1"], "tokens": ["3.5", "4"], "storage_gb": ["7", "5"],
        "users": ["2", "1"], "exports": ["1", "1"]}
    assert {m: s.total.value for m, s in days.items()} == {
        "requests": "9", "tokens": "7.5", "storage_gb": "7", "users": "3", "exports": "2"}
    assert [p[1:3] for p in points(days["tokens"])] == [(8, 2), (1, 0)]
    month = await usage(rig, "users", "month", "2026-11-15T00:00:00", "2026-11-16T00:00:00")
    assert points(month) == [("11-01 00", 9, 2, "3")]


async def test_a_customers_period_so_far_every_meter_at_once(rig: Rig) -> None:
    key = await rig.customer("acme", "large")
    rig.at("2026-11-02T10:00:00")
    await rig.codes(key, 4)
    await rig.flusher.flush()
    await rig.report(event("t", value="2.25"), event("u", "users", "ann"),
                     event("s", "storage_gb", 3), event("s2", "storage_gb", "1.5"))
    meters = await rig.totals.meters("acme", Period(2026, 11))
    assert meters == {"requests": Decimal(4), "tokens": Decimal("2.25"),
                      "storage_gb": Decimal(3), "users": Decimal(1), "exports": Decimal(0)}
    assert (await rig.totals.meters("acme", Period(2026, 12)))["requests"] == 0


async def test_events_are_kept_35_days_and_until_their_period_closes(rig: Rig) -> None:
    await rig.customer("acme", "large")
    rig.at("2026-11-03T00:00:00")
    await rig.report(event("november"))
    rig.at("2026-12-03T00:00:00")
    await rig.report(event("december"))
    await rig.billing.close(ADMIN, Period(2026, 11))
    rig.at("2027-01-10T00:00:00")  # november's event is 38 days old, its period closed
    await rig.events.prune(rig.billing.now())
    async with rig.catalog.sessions() as session:
        kept = (await session.scalars(select(UsageEvent.id))).all()
    assert kept == ["december"]  # 38 days old too, but December is still open
    again = await rig.report(event("november", time="2026-11-03T00:00:00Z"))
    assert again.accepted == 0 and "2026-11 is closed" in again.rejected[0].error


def test_events_decode_numbers_exactly() -> None:
    from sidecar.management.usage.schemas import UsageEvent as Body

    body = msgspec.json.decode(b'{"id": "a", "meter": "m", "value": 0.1}', type=Body)
    assert body.value == 0.1
