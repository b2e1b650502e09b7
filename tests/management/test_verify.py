"""Verification in process, on a real SQLite catalog and the memory store, with a fake clock:
no SQL after a key's first use, the change feed, failed verifications throttled per address,
and a failed transaction leaving the database as it was."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sidecar.limiter.engine import Engine
from sidecar.limiter.options import EngineOptions
from sidecar.management import schemas as s
from sidecar.management.cache import GAP_SECONDS, ChangeFeed, KeyCache
from sidecar.management.catalog import Actor, Catalog
from sidecar.management.db.connect import create_engine, database_url, sessions
from sidecar.management.db.migrate import upgrade
from sidecar.management.db.models import Change
from sidecar.management.plans import build_plans
from sidecar.management.verify import Verifier
from sidecar.rules.loader import RuleFile
from sidecar.storage.memory import MemoryStore
from tests.conftest import FakeClock
from tests.management.kit import PLANS

ADMIN = Actor("root_test", frozenset({"admin"}))


@dataclass
class Rig:
    catalog: Catalog
    verifier: Verifier
    cache: KeyCache
    lookups: list[str]
    clock: FakeClock


@pytest.fixture
async def rig(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Rig]:
    db = create_engine(database_url("", str(tmp_path)))
    await upgrade(db)
    plans = build_plans([RuleFile("plans.yaml", PLANS)])
    cache = KeyCache(100, clock)
    catalog = Catalog(sessions(db), lambda: plans, clock, cache.forget)
    lookups: list[str] = []
    find = catalog.find_key

    async def counted(key_hash: str) -> Any:
        lookups.append(key_hash)
        return await find(key_hash)

    catalog.find_key = counted  # type: ignore[method-assign]
    engine = Engine(MemoryStore(), EngineOptions(expiration_jitter_max_seconds=0), clock=clock)
    verifier = Verifier(catalog, cache, engine, lambda: plans, failures_per_minute=3)
    yield Rig(catalog, verifier, cache, lookups, clock)
    await db.dispose()


async def new_key(rig: Rig, customer: str = "acme") -> tuple[str, str]:
    if await _missing(rig, customer):
        await rig.catalog.create_customer(ADMIN, s.CustomerCreate("Acme", "basic", customer))
    made = await rig.catalog.create_key(ADMIN, s.KeyCreate(customer))
    return made.id, made.key


async def _missing(rig: Rig, customer: str) -> bool:
    from sidecar.management.errors import NotFound

    try:
        await rig.catalog.get_customer(customer)
    except NotFound:
        return True
    return False


async def test_no_sql_after_a_keys_first_use(rig: Rig) -> None:
    _, key = await new_key(rig)
    codes = [(await rig.verifier.verify(key, "10.0.0.1")).code for _ in range(4)]
    assert codes == ["VALID", "VALID", "VALID", "RATE_LIMITED"]
    assert len(rig.lookups) == 1
    # a made-up but well-formed key is looked up once, then answered from a negative entry
    from sidecar.management.keys import new_key as make

    ghost = make().secret
    for _ in range(2):
        assert (await rig.verifier.verify(ghost, "")).code == "NOT_FOUND"
    assert len(rig.lookups) == 2
    # a malformed one never is
    assert (await rig.verifier.verify("viva_" + "1" * 28, "")).code == "NOT_FOUND"
    assert len(rig.lookups) == 2


async def test_a_change_drops_the_cached_key_and_the_plan_change_applies(rig: Rig) -> None:
    key_id, key = await new_key(rig)
    assert (await rig.verifier.verify(key, "")).code == "VALID"
    await rig.catalog.update_customer(ADMIN, "acme", s.CustomerUpdate(plan="bigger"))
    outcome = await rig.verifier.verify(key, "", features=["exports"])
    assert (outcome.code, outcome.key.plan if outcome.key else None) == ("VALID", "bigger")
    await rig.catalog.revoke_key(ADMIN, key_id)
    assert (await rig.verifier.verify(key, "")).code == "REVOKED"
    assert len(rig.lookups) == 3


async def test_failed_verifications_are_throttled_per_address(rig: Rig) -> None:
    _, key = await new_key(rig)
    from sidecar.management.keys import new_key as make

    ghosts = [make().secret for _ in range(5)]
    codes = [(await rig.verifier.verify(g, "203.0.113.9")).code for g in ghosts]
    assert codes == ["NOT_FOUND"] * 3 + ["RATE_LIMITED"] * 2
    assert len(rig.lookups) == 3  # the throttled attempts were not looked up
    throttled = await rig.verifier.verify(ghosts[0], "203.0.113.9")
    assert throttled.throttled is not None and throttled.key is None
    # another address is not affected, and a key already known valid still verifies
    assert (await rig.verifier.verify(ghosts[4], "198.51.100.1")).code == "NOT_FOUND"
    assert (await rig.verifier.verify(key, "198.51.100.1")).code == "VALID"
    assert (await rig.verifier.verify(key, "203.0.113.9")).code == "VALID"
    rig.clock.advance(60)
    assert (await rig.verifier.verify(ghosts[4], "203.0.113.9")).code == "NOT_FOUND"


async def test_a_failed_transaction_leaves_the_database_as_it_was(rig: Rig) -> None:
    key_id, key = await new_key(rig)
    await new_key(rig)
    audit_before = await rig.catalog.list_audit(None, 100, None)
    changes_before = await rig.catalog.last_change()

    def broken(*args: Any) -> None:
        raise RuntimeError("the disk is full")

    rig.catalog._audit = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):  # fails after the keys were revoked in the session
        await rig.catalog.delete_customer(ADMIN, "acme")
    with pytest.raises(RuntimeError):
        await rig.catalog.update_key(ADMIN, key_id, s.KeyUpdate(enabled=False))
    assert (await rig.catalog.get_customer("acme")).id == "acme"
    listed = await rig.catalog.list_keys("acme", 10, None)
    assert [(k.revoked_at, k.enabled) for k in listed.items] == [(None, True)] * 2
    assert await rig.catalog.list_audit(None, 100, None) == audit_before
    assert await rig.catalog.last_change() == changes_before
    assert (await rig.verifier.verify(key, "")).code == "VALID"


def test_the_cache_is_bounded_and_forgets_by_key_and_by_customer(clock: FakeClock) -> None:
    from sidecar.management.cache import NEGATIVE_SECONDS, CachedKey

    cache = KeyCache(3, clock)
    for i in range(4):
        cache.put(f"h{i}", CachedKey(f"key_{i}", "c1" if i < 2 else "c2", "basic", True, None,
                                     False, None, None))
    assert len(cache) == 3 and cache.get("h0") is None
    cache.forget(Change(id=1, kind="key", key_id="key_2"))
    assert cache.get("h2") is None and cache.get("h3") is not None
    cache.forget(Change(id=2, kind="customer", customer_id="c1"))
    assert cache.get("h1") is None and len(cache) == 1
    cache.put_missing("nope")
    assert cache.get("nope") is False
    clock.advance(NEGATIVE_SECONDS + 1)
    assert cache.get("nope") is None
    cache.put_missing("made-elsewhere")
    cache.forget(Change(id=3, kind="key", key_id="key_9", key_hash="made-elsewhere"))
    assert cache.get("made-elsewhere") is None  # a key created elsewhere verifies at once


async def test_the_feed_applies_each_change_once_and_waits_for_late_commits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rows: list[Change] = []
    applied: list[int] = []

    async def read_after(floor: int) -> list[Change]:
        return [r for r in rows if r.id > floor]

    feed = ChangeFeed(read_after, lambda c: applied.append(c.id))
    feed.floor = 0
    rows += [Change(id=1, kind="key"), Change(id=3, kind="key")]  # 2 not committed yet
    assert await feed.poll() == 2 and feed.floor == 1
    assert await feed.poll() == 0
    rows.append(Change(id=2, kind="key"))  # commits late: still seen
    assert await feed.poll() == 1 and applied == [1, 3, 2] and feed.floor == 3
    rows.append(Change(id=5, kind="key"))  # 4 rolled back: given up after GAP_SECONDS
    await feed.poll()
    assert feed.floor == 3
    import time as real_time

    later = real_time.monotonic() + GAP_SECONDS + 1
    monkeypatch.setattr("sidecar.management.cache.time.monotonic", lambda: later)
    await feed.poll()
    assert feed.floor == 5 and applied == [1, 3, 2, 5]


def test_override_limits_round_trip_through_the_schema() -> None:
    limit = msgspec.convert({"name": "daily", "unit": "day", "requests_per_unit": 7,
                             "calendar": True}, s.Limit)
    assert msgspec.to_builtins(limit) == {"name": "daily", "unit": "day",
                                          "requests_per_unit": 7, "calendar": True}


async def test_the_feed_drops_the_cache_when_the_log_is_readable_again() -> None:
    import asyncio

    calls: list[str] = []

    async def read_after(floor: int) -> list[Change]:
        calls.append("read")
        if len(calls) <= 2:
            raise OSError("database away")
        return []

    resynced = asyncio.Event()
    feed = ChangeFeed(read_after, lambda c: None, interval=0.01, resync=resynced.set)
    feed.start(0)
    try:
        await asyncio.wait_for(resynced.wait(), 5)
    finally:
        await feed.stop()
    assert feed.failures == 0 and len(calls) >= 3


async def test_a_customers_key_never_verifies_as_anothers(rig: Rig) -> None:
    _, first = await new_key(rig, "acme")
    _, second = await new_key(rig, "globex")
    one = await rig.verifier.verify(first, "")
    two = await rig.verifier.verify(second, "")
    assert (one.key and one.key.customer_id, two.key and two.key.customer_id) == (
        "acme", "globex")
    assert one.entries[0] == (("customer", "acme"), ("limit", "per_minute"))
    assert two.entries[0] == (("customer", "globex"), ("limit", "per_minute"))
    # their counters are their own: acme's three uses leave globex's budget whole
    for _ in range(3):
        await rig.verifier.verify(first, "")
    assert (await rig.verifier.verify(first, "")).code == "RATE_LIMITED"
    assert (await rig.verifier.verify(second, "")).code == "VALID"
