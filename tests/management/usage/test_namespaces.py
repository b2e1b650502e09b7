"""Namespaces owned by customers, in process on SQLite and on a real PostgreSQL with a fake
clock: the catalog's checks (a bad, reserved, repeated or taken namespace is refused naming
the field and changes nothing), and the decisions of /v1/check, /v1/report and
/v1/forward-auth, made over real HTTP on a real engine, counted for the owner as the service's
observer hears them: per outcome and refusing rule, on the owner's plan at the time, and
priced by the invoice like verified requests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import func, select

from sidecar.limiter.engine import Engine
from sidecar.limiter.options import EngineOptions
from sidecar.management import schemas as s
from sidecar.management.admin import decode
from sidecar.management.billing.period import Period
from sidecar.management.db.models import AuditEvent, CustomerNamespace, UsageCount
from sidecar.management.errors import Conflict, Invalid
from sidecar.management.meters import REQUESTS_METER
from sidecar.management.usage.checks import COUNTED_METHODS, NamespaceOwners
from sidecar.management.usage.counter import ledger_name
from sidecar.management.usage.series import Query, read_series
from sidecar.observability.metrics import Metrics
from sidecar.rules.loader import load_rules
from sidecar.service import RateLimitService
from sidecar.storage.memory import MemoryStore
from sidecar.transports.rest.handlers import register_rest
from sidecar.transports.rest.options import RestOptions
from tests.management.rig import ADMIN, Rig, make_rig
from tests.support.ports import free_port
from tests.transports.rest.kit import Rest, write_rules

RULES = {
    "acme.yaml": """
        domain: acme_api
        descriptors:
          - key: identifier
            rate_limit: {unit: hour, requests_per_unit: 4, name: hourly}
          - key: export
            rate_limit: {unit: month, requests_per_unit: 1, calendar: true}
        """,
    "other.yaml": """
        domain: other_api
        descriptors:
          - key: identifier
            rate_limit: {unit: hour, requests_per_unit: 4}
        """,
}


@dataclass
class Checks:
    rig: Rig
    owners: NamespaceOwners
    rest: Rest


@pytest.fixture
async def checks(catalog_url: str, tmp_path: Path) -> AsyncIterator[Checks]:
    """The REST endpoints on a real engine, observed as FullMode observes them, over the
    rig's catalog, counter and clock."""
    rig = await make_rig(catalog_url, now="2026-11-02T10:00:00")
    engine = Engine(MemoryStore(), EngineOptions(expiration_jitter_max_seconds=0),
                    clock=rig.clock)
    engine.set_rules(load_rules(str(write_rules(tmp_path / "rules", RULES))))
    service = RateLimitService(engine, Metrics())
    owners = NamespaceOwners(rig.catalog.ownerships)
    rig.catalog.owners_committed = owners.apply
    await owners.load()
    service.observe(owners.observer(rig.counter.record_check), COUNTED_METHODS)
    app = web.Application()
    register_rest(app, service, RestOptions())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            yield Checks(rig, owners, Rest(f"http://127.0.0.1:{port}", session, engine, service))
    finally:
        await runner.cleanup()
        await rig.db.dispose()


async def customer(rig: Rig, customer_id: str, plan: str, *namespaces: str) -> s.Customer:
    return await rig.catalog.create_customer(ADMIN, s.CustomerCreate(
        "Acme", plan, customer_id, namespaces=list(namespaces)))


async def ledger(rig: Rig) -> list[tuple[Any, ...]]:
    await rig.flusher.flush()
    async with rig.catalog.sessions() as session:
        rows = await session.execute(select(
            UsageCount.customer_id, UsageCount.key_id, UsageCount.limit_name,
            UsageCount.outcome, UsageCount.plan, UsageCount.decisions, UsageCount.hits)
            .order_by(UsageCount.customer_id, UsageCount.plan, UsageCount.outcome,
                      UsageCount.limit_name))
        return [tuple(row) for row in rows.all()]


async def stored(rig: Rig) -> tuple[list[tuple[str, str]], int]:
    """Every namespace row (namespace, owner) and the number of audit events."""
    async with rig.catalog.sessions() as session:
        rows = await session.execute(select(CustomerNamespace.namespace,
                                            CustomerNamespace.customer_id)
                                     .order_by(CustomerNamespace.namespace))
        audits = await session.scalar(select(func.count()).select_from(AuditEvent))
        return [(namespace, owner) for namespace, owner in rows.all()], int(audits or 0)


async def allowed(rest: Rest, namespace: str, times: int, **body: Any) -> list[bool]:
    out = []
    for _ in range(times):
        reply = await rest.check(namespace=namespace, **body)
        assert reply.status == 200, reply.body
        out.append(reply.body["allowed"])
    return out


async def test_decisions_in_an_owned_namespace_count_for_its_owner(checks: Checks) -> None:
    rig, rest = checks.rig, checks.rest
    made = await customer(rig, "acme", "small", "acme_api")
    assert made.namespaces == ["acme_api"]
    assert await allowed(rest, "acme_api", 6, identifier="u1") == [True] * 4 + [False] * 2
    assert await allowed(rest, "acme_api", 1, identifier="u2", hits=3) == [True]
    assert await allowed(rest, "acme_api", 1, identifier="u1", hits=0) == [False]  # a peek
    assert await allowed(rest, "acme_api", 2, descriptors=[[{"key": "export",
                                                             "value": "x"}]]) == [True, False]
    report = await rest.report(namespace="acme_api", identifier="u3", hits=2)
    assert (report.status, report.body["allowed"]) == (200, True)
    auth = await rest.request("GET", "/v1/forward-auth", headers={
        "X-RateLimit-Namespace": "acme_api", "X-Forwarded-For": "10.0.0.1"})
    assert auth.status == 200
    # nobody owns other_api: decided, not counted
    assert await allowed(rest, "other_api", 5, identifier="u1") == [True] * 4 + [False]
    assert await ledger(rig) == [
        # no key; the calendar quota has no name: its stats key names it
        ("acme", "", "acme_api.export", "QUOTA_EXCEEDED", "small", 1, 0),
        ("acme", "", "hourly", "RATE_LIMITED", "small", 3, 0),
        # 4 + 1 (hits 3) + 1 export + 1 report (hits 2) + 1 forward-auth
        ("acme", "", "", "VALID", "small", 8, 4 + 3 + 1 + 2 + 1),
    ]


async def test_the_owner_plan_at_the_time_prices_the_decisions(checks: Checks) -> None:
    rig, rest = checks.rig, checks.rest
    await customer(rig, "acme", "small", "acme_api")
    key = (await rig.catalog.create_key(ADMIN, s.KeyCreate("acme"))).key
    assert await allowed(rest, "acme_api", 3, identifier="u1") == [True] * 3
    assert await rig.codes(key, 1) == ["VALID"]  # a verification counts beside them
    rig.at("2026-11-02T11:00:00")
    await rig.plan("acme", "large")  # applies here at commit
    assert await allowed(rest, "acme_api", 2, identifier="u1") == [True] * 2
    rows = await ledger(rig)
    assert [(r[4], r[3], r[5]) for r in rows if r[1] == ""] == [
        ("large", "VALID", 2), ("small", "VALID", 3)]
    # small: 3 checks + 1 verification, 2 included, 2 x 0.50; large: 2 x 0.10
    invoice = await rig.billing.preview("acme", Period(2026, 11))
    requests = [(line.plan, line.quantity, line.amount) for line in invoice.lines
                if line.meter == "requests"]
    assert requests == [("small", "2", "0.00"), ("small", "2", "1.00"), ("large", "2", "0.20")]
    now = datetime.fromtimestamp(rig.clock(), UTC)
    async with rig.catalog.sessions() as session:
        series = await read_series(session, Query("acme", None, REQUESTS_METER,
                                                  invoice.period_start, now, "month"))
    assert (series.total.allowed, series.total.denied, series.total.value) == (6, 0, "6")


async def test_a_namespace_given_up_moved_or_released_counts_for_its_new_owner_only(
        checks: Checks) -> None:
    rig, rest, owners = checks.rig, checks.rest, checks.owners
    await customer(rig, "acme", "small", "acme_api", "other_api")
    await customer(rig, "beta", "large")
    assert await allowed(rest, "other_api", 1, identifier="u") == [True]
    await rig.catalog.update_customer(ADMIN, "acme", s.CustomerUpdate(namespaces=["acme_api"]))
    assert "other_api" not in owners and "acme_api" in owners
    assert await allowed(rest, "other_api", 1, identifier="u") == [True]  # nobody's now
    beta = await rig.catalog.update_customer(ADMIN, "beta",
                                             s.CustomerUpdate(namespaces=["other_api"]))
    assert beta.namespaces == ["other_api"]
    assert await allowed(rest, "other_api", 1, identifier="u") == [True]
    await rig.catalog.delete_customer(ADMIN, "acme")
    assert "acme_api" not in owners
    assert await allowed(rest, "acme_api", 1, identifier="u") == [True]
    # the deleted customer's namespace is free again
    await rig.catalog.update_customer(ADMIN, "beta",
                                      s.CustomerUpdate(namespaces=["other_api", "acme_api"]))
    assert await allowed(rest, "acme_api", 1, identifier="u") == [True]
    assert [(r[0], r[4], r[5]) for r in await ledger(rig)] == [
        ("acme", "small", 1), ("beta", "large", 2)]
    listed = await rig.catalog.list_customers(10, None)
    assert [(c.id, c.namespaces) for c in listed.items] == [("beta", ["acme_api", "other_api"])]
    audit = await rig.catalog.list_audit("customer:acme", 10, None)
    assert audit.items[0].changes["released_namespaces"] == ["acme_api"]


async def test_bad_reserved_repeated_or_taken_namespaces_change_nothing(checks: Checks) -> None:
    rig = checks.rig
    await customer(rig, "acme", "small", "acme_api")
    await customer(rig, "beta", "small", "beta_api")
    before = await stored(rig)

    def body(kind: type[Any], namespaces: Any) -> Any:
        return decode(json.dumps({"namespaces": namespaces, **(
            {"name": "X", "plan": "small"} if kind is s.CustomerCreate else {})}).encode(), kind)

    for bad, field in ((["ok", "has space"], "namespaces[1]"), ([""], "namespaces[0]"),
                       (["x" * 65], "namespaces[0]"), ("acme_api", "namespaces"),
                       ([f"n{i}" for i in range(51)], "namespaces")):
        with pytest.raises(Invalid) as refused:
            body(s.CustomerUpdate, bad)
        assert refused.value.field == field, refused.value.message
    for namespaces, field, words in ((["beta_api", "viva_keys"], "namespaces[1]", "own"),
                                     (["x", "y", "x"], "namespaces[2]", "twice")):
        with pytest.raises(Invalid) as refused:
            await rig.catalog.update_customer(ADMIN, "beta", body(s.CustomerUpdate, namespaces))
        assert refused.value.field == field and words in refused.value.message
    with pytest.raises(Conflict) as taken:
        await rig.catalog.update_customer(ADMIN, "beta", s.CustomerUpdate(
            plan="large", namespaces=["beta_api", "new_api", "acme_api"]))
    assert taken.value.field == "namespaces[2]"
    assert "'acme_api' belongs to customer 'acme'" in taken.value.message
    with pytest.raises(Conflict) as taken:
        await customer(rig, "gamma", "small", "gamma_api", "beta_api")
    assert taken.value.field == "namespaces[1]"
    assert await stored(rig) == before
    assert (await rig.catalog.get_customer("beta")).plan == "small"
    assert "new_api" not in checks.owners and "gamma_api" not in checks.owners


async def test_two_customers_claiming_one_namespace_at_once_one_wins(checks: Checks) -> None:
    rig = checks.rig
    for name in ("acme", "beta"):
        await customer(rig, name, "small")
    results = await asyncio.gather(*(
        rig.catalog.update_customer(ADMIN, name, s.CustomerUpdate(namespaces=["shared_api"]))
        for name in ("acme", "beta")), return_exceptions=True)
    won = [r for r in results if isinstance(r, s.Customer)]
    lost = [r for r in results if isinstance(r, Conflict)]
    assert len(won) == 1 and len(lost) == 1, results
    assert lost[0].field in ("namespaces[0]", "namespaces")
    assert (await stored(rig))[0] == [("shared_api", won[0].id)]
    assert checks.owners.by_namespace["shared_api"].customer_id == won[0].id


async def test_another_instance_learns_a_change_from_the_change_log(checks: Checks) -> None:
    """A second NamespaceOwners on the same catalog, fed by a ChangeFeed as FullMode feeds
    it: a change made through the first applies there on its next poll."""
    from sidecar.management.cache import ChangeFeed

    rig = checks.rig
    other = NamespaceOwners(rig.catalog.ownerships)
    await other.load()

    def changed(change: Any) -> None:
        if change.kind == "customer" and change.customer_id:
            other.stale(change.customer_id)

    feed = ChangeFeed(rig.catalog.changes_after, changed)
    feed.floor = await rig.catalog.last_change()
    await customer(rig, "acme", "small", "acme_api")
    assert "acme_api" not in other
    assert await feed.poll() == 1
    await other.refresh()
    assert other.by_namespace["acme_api"].plan == "small"
    await rig.plan("acme", "large")
    await rig.catalog.update_customer(ADMIN, "acme", s.CustomerUpdate(namespaces=["b", "c"]))
    await feed.poll()
    await other.refresh()
    assert {n: (o.customer_id, o.plan) for n, o in other.by_namespace.items()} == {
        "b": ("acme", "large"), "c": ("acme", "large")}
    other.stale(None)  # after a change-log outage: everything read again
    await other.refresh()
    assert sorted(other.by_namespace) == ["b", "c"]


def test_long_rule_names_fit_the_ledger_and_stay_apart() -> None:
    short = "api.identifier"
    assert ledger_name(short) == short
    first, second = "a" * 70 + ".one", "a" * 70 + ".two"
    assert len(ledger_name(first)) == 64 and ledger_name(first) != ledger_name(second)
    assert ledger_name(first).startswith("a" * 55 + "~")
