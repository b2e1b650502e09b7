"""Full mode in process, on a real catalog (SQLite or PostgreSQL) and the memory store, with a
fake clock: the catalog, key verification counting usage, the ledger flusher, usage events
and billing, wired as service.py wires them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from sidecar.limiter.engine import Engine
from sidecar.limiter.options import EngineOptions
from sidecar.management import schemas as s
from sidecar.management.admin import decode
from sidecar.management.billing.invoicing import Billing
from sidecar.management.cache import KeyCache
from sidecar.management.catalog import Actor, Catalog
from sidecar.management.db.connect import create_engine, database_url, sessions
from sidecar.management.db.migrate import upgrade
from sidecar.management.plans import PlanSet, build_plans
from sidecar.management.usage.counter import UsageCounter
from sidecar.management.usage.events import EventIngest
from sidecar.management.usage.flusher import UsageFlusher
from sidecar.management.usage.schemas import EventsResult, UsageEvents
from sidecar.management.usage.totals import PeriodTotals
from sidecar.management.verify import Verifier
from sidecar.rules.loader import RuleFile
from sidecar.storage.memory import MemoryStore
from tests.conftest import FakeClock

ADMIN = Actor("root_test", frozenset({"admin"}))

PLANS = """
meters:
  tokens: {aggregation: sum}
  storage_gb: {aggregation: max}
  users: {aggregation: unique_count}
  exports: {aggregation: count}
plans:
  small:
    name: Small
    limits:
      - {name: per_hour, unit: hour, requests_per_unit: 5}
    price:
      currency: EUR
      base_fee: 30.00
      meters:
        requests: {included: 2, model: per_unit, unit_price: 0.50}
        tokens: {model: graduated, tiers: [{up_to: 1000, unit_price: 0.01},
                                            {unit_price: 0.001}]}
        storage_gb: {model: package, package_size: 10, package_price: 2.00}
        users: {model: volume, tiers: [{up_to: 2, unit_price: 1.00}, {unit_price: 0.75}]}
        exports: {included: 1, model: flat, amount: 5.00}
  large:
    name: Large
    limits:
      - {name: per_hour, unit: hour, requests_per_unit: 2000}
      - {name: monthly, unit: month, requests_per_unit: 1000, calendar: true}
    price:
      currency: EUR
      base_fee: 60.00
      meters:
        requests: {model: per_unit, unit_price: 0.10}
        tokens: {model: per_unit, unit_price: 0.002}
  free:
    name: Free
    limits:
      - {name: per_hour, unit: hour, requests_per_unit: 2}
"""


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@dataclass
class Rig:
    db: AsyncEngine
    clock: FakeClock
    plans: list[PlanSet]  # [current]: a test may swap the plans in force
    catalog: Catalog
    verifier: Verifier
    counter: UsageCounter
    flusher: UsageFlusher
    events: EventIngest
    billing: Billing
    totals: PeriodTotals
    registry: CollectorRegistry

    def at(self, text: str) -> None:
        """Move the clock to ``text`` (ISO, UTC)."""
        self.clock.now = epoch(text)

    async def customer(self, customer_id: str, plan: str) -> str:
        await self.catalog.create_customer(ADMIN, s.CustomerCreate("Acme", plan, customer_id))
        return (await self.catalog.create_key(ADMIN, s.KeyCreate(customer_id))).key

    async def plan(self, customer_id: str, plan: str) -> None:
        await self.catalog.update_customer(ADMIN, customer_id, s.CustomerUpdate(plan=plan))

    async def codes(self, key: str, times: int) -> list[str]:
        return [(await self.verifier.verify(key, "10.0.0.1")).code for _ in range(times)]

    async def report(self, *events: Any) -> EventsResult:
        """``events`` as the HTTP API reads them (admin.decode: Invalid for a bad shape)."""
        return await self.events.ingest(decode(json.dumps(events).encode(), UsageEvents))


async def make_rig(url: str, now: str = "2026-11-01T00:00:00", plans: str = PLANS) -> Rig:
    clock = FakeClock(epoch(now))
    db = create_engine(database_url(url, ""))
    await upgrade(db)
    current = [build_plans([RuleFile("plans.yaml", plans)])]
    cache = KeyCache(100, clock)
    catalog = Catalog(sessions(db), lambda: current[0], clock, cache.forget)
    engine = Engine(MemoryStore(), EngineOptions(expiration_jitter_max_seconds=0), clock=clock)
    counter = UsageCounter(clock)
    verifier = Verifier(catalog, cache, engine, lambda: current[0], failures_per_minute=0,
                        record=counter.record)
    registry = CollectorRegistry()
    flusher = UsageFlusher(counter, catalog.sessions, 10.0, registry, clock)
    events = EventIngest(catalog.sessions, lambda: current[0], clock, registry)
    billing = Billing(catalog.sessions, lambda: current[0], clock, 10.0)
    totals = PeriodTotals(catalog.sessions, lambda: current[0])
    return Rig(db, clock, current, catalog, verifier, counter, flusher, events, billing, totals,
               registry)
