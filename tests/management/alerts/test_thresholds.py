"""usage.threshold in process, over the engine's real counters (memory store, fake clock) and
a real catalog on SQLite and PostgreSQL: raised when verification takes a customer's usage to
each threshold, once per threshold and period (also across instances), again in a new
period; limits the plan does not watch raise nothing."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

import pytest
from sqlalchemy import select

from sidecar.limiter.engine import Engine
from sidecar.limiter.options import EngineOptions
from sidecar.management import schemas as s
from sidecar.management.alerts import schemas as w
from sidecar.management.alerts.outbox import Outbox
from sidecar.management.alerts.sealing import Sealer
from sidecar.management.alerts.thresholds import LimitUsage, ThresholdAlerts, crossed
from sidecar.management.alerts.usage import EngineUsageReader
from sidecar.management.alerts.webhooks import Webhooks
from sidecar.management.cache import KeyCache
from sidecar.management.catalog import Actor, Catalog
from sidecar.management.db.models import AlertMark, WebhookEvent
from sidecar.management.plans import PlanSet, build_plans
from sidecar.management.verify import Verifier
from sidecar.model import RateLimit, Unit
from sidecar.rules.loader import RuleFile
from sidecar.storage.memory import MemoryStore
from tests.conftest import FakeClock
from tests.management.alerts.conftest import Sessions

ADMIN = Actor("root_test", frozenset({"admin"}))
PLANS = """
plans:
  metered:
    limits:
      - {name: per_second, unit: second, requests_per_unit: 100, algorithm: token_bucket}
      - {name: hourly, unit: hour, requests_per_unit: 1000}
      - {name: monthly, unit: month, requests_per_unit: 5, calendar: true}
    alerts: {thresholds: [0.6, 1.0]}
  quiet:
    limits:
      - {name: monthly, unit: month, requests_per_unit: 5, calendar: true}
"""
JAN_12_1970 = 1_000_000.0  # the fake clock's start


@dataclass
class Rig:
    verifier: Verifier
    alerts: ThresholdAlerts
    catalog: Catalog
    db: Sessions
    clock: FakeClock

    async def verify(self, key: str, times: int = 1) -> list[str]:
        return [(await self.verifier.verify(key, "10.0.0.1")).code for _ in range(times)]

    async def events(self) -> list[dict[str, Any]]:
        async with self.db() as session:
            bodies = (await session.scalars(select(WebhookEvent.body).where(
                WebhookEvent.type == "usage.threshold").order_by(WebhookEvent.created_at))).all()
        return [json.loads(b)["data"] for b in bodies]

    async def customer_key(self, plan: str = "metered", customer: str = "acme") -> str:
        await self.catalog.create_customer(ADMIN, s.CustomerCreate("Acme", plan, customer))
        return (await self.catalog.create_key(ADMIN, s.KeyCreate(customer))).key


def rig_for(db: Sessions, clock: FakeClock, plans: PlanSet, engine: Engine) -> Rig:
    outbox = Outbox(db, clock, retry_for=86400)
    catalog = Catalog(db, lambda: plans, clock, events=outbox)
    alerts = ThresholdAlerts(EngineUsageReader(engine, db, lambda: plans), db, outbox,
                             lambda: plans)
    verifier = Verifier(catalog, KeyCache(100, clock), engine, lambda: plans, 0,
                        observe=lambda o: alerts.touch(o.key.customer_id) if o.key else None)
    return Rig(verifier, alerts, catalog, db, clock)


@pytest.fixture
async def rig(db: Sessions, clock: FakeClock) -> Rig:
    plans = build_plans([RuleFile("plans.yaml", textwrap.dedent(PLANS))])
    engine = Engine(MemoryStore(), EngineOptions(expiration_jitter_max_seconds=0), clock=clock)
    made = rig_for(db, clock, plans, engine)
    hooks = Webhooks(db, Sealer("k" * 32), clock, allow_private=True)
    await hooks.create_webhook(ADMIN, w.WebhookCreate("http://127.0.0.1:9/", [
        "usage.threshold"]))
    return made


async def test_each_threshold_once_per_period(rig: Rig) -> None:
    key = await rig.customer_key()
    assert await rig.verify(key, 2) == ["VALID"] * 2
    assert await rig.alerts.run_once() == 0  # 2 of 5: under 0.6
    assert await rig.verify(key) == ["VALID"]
    assert await rig.alerts.run_once() == 1  # 3 of 5 is 0.6 exactly
    assert await rig.alerts.run_once() == 0  # nobody touched since
    assert await rig.verify(key, 3) == ["VALID", "VALID", "QUOTA_EXCEEDED"]
    assert await rig.alerts.run_once() == 1  # 1.0
    assert await rig.verify(key, 2) == ["QUOTA_EXCEEDED"] * 2
    assert await rig.alerts.run_once() == 0
    events = await rig.events()
    assert [(e["limit"], e["threshold"], e["used"], e["allowed"]) for e in events] == [
        ("monthly", 0.6, 3, 5), ("monthly", 1.0, 5, 5)]
    assert events[0]["period_start"] == "1970-01-01T00:00:00Z"
    assert events[0]["period_end"] == "1970-02-01T00:00:00Z"
    assert events[0]["customer_id"] == "acme" and events[0]["plan"] == "metered"

    # another instance, with nothing in memory, raises nothing again
    other = rig_for(rig.db, rig.clock, rig.verifier.plans(),  # type: ignore[arg-type]
                    rig.verifier.engine)
    other.alerts.touch("acme")
    assert await other.alerts.run_once() == 0

    # a new month: usage starts again, and so do the alerts
    rig.clock.now = datetime(1970, 2, 3, tzinfo=UTC).timestamp()
    assert await rig.verify(key, 3) == ["VALID"] * 3
    assert await rig.alerts.run_once() == 1
    assert (await rig.events())[-1]["period_start"] == "1970-02-01T00:00:00Z"
    async with rig.db() as session:
        marks = (await session.scalars(select(AlertMark.level))).all()
    assert sorted(marks) == ["0.6", "0.6", "1"]


async def test_a_plan_without_alerts_raises_nothing(rig: Rig) -> None:
    key = await rig.customer_key(plan="quiet", customer="calm")
    assert await rig.verify(key, 6) == ["VALID"] * 5 + ["QUOTA_EXCEEDED"]
    assert await rig.alerts.run_once() == 0 and await rig.events() == []


async def test_reading_the_counters_charges_nothing(rig: Rig) -> None:
    key = await rig.customer_key()
    reader = rig.alerts.reader
    for _ in range(3):
        usage = await reader.usage("acme")
        assert usage is not None and [(u.limit.name, u.used) for u in usage.limits] == [
            ("hourly", 0), ("monthly", 0)]  # the token bucket is not watched
    assert await rig.verify(key, 5) == ["VALID"] * 5
    usage = await reader.usage("acme")
    assert usage is not None and [u.used for u in usage.limits] == [5, 5]
    assert await reader.usage("nobody") is None


def usage(used: int, allowed: int) -> LimitUsage:
    limit = RateLimit(allowed, Unit.MONTH, "x", name="monthly", calendar=True)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return LimitUsage(limit, used, start, start)


@pytest.mark.parametrize(("used", "allowed", "reached"), [
    (0, 5, []), (3, 5, ["3/5"]), (4, 5, ["3/5"]), (5, 5, ["3/5", "1"]), (7, 5, ["3/5", "1"]),
    (599_999, 1_000_000, []), (600_000, 1_000_000, ["3/5"]), (1, 0, [])])
def test_crossing_is_exact(used: int, allowed: int, reached: Sequence[str]) -> None:
    thresholds = [Fraction(3, 5), Fraction(1)]
    assert [str(t) for t in crossed(usage(used, allowed), thresholds)] == list(reached)
