"""The outbox on SQLite and PostgreSQL: events commit with the change that causes them or not
at all, instances claim disjoint deliveries, a lease that runs out is claimed again, failed
attempts back off until the retry period ends."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from sidecar.management import schemas as s
from sidecar.management.alerts import schemas as w
from sidecar.management.alerts.dispatcher import backoff
from sidecar.management.alerts.outbox import FAILED, PENDING, Outbox
from sidecar.management.alerts.sealing import Sealer
from sidecar.management.alerts.sender import AttemptResult
from sidecar.management.alerts.webhooks import Webhooks
from sidecar.management.catalog import Actor, Catalog
from sidecar.management.db.models import WebhookAttempt, WebhookDelivery, WebhookEvent
from sidecar.management.errors import Conflict
from sidecar.management.plans import PlanSet
from tests.conftest import FakeClock
from tests.management.alerts.conftest import Sessions

ROOT = Actor("root_test", frozenset({"admin"}))
FAILED_ATTEMPT = AttemptResult("http_error", 500, "the receiver answered HTTP 500", 0.01)


async def subscribe(db: Sessions, clock: FakeClock, events: list[str], enabled: bool = True,
                    url: str = "http://127.0.0.1:9/hooks") -> str:
    hooks = Webhooks(db, Sealer("k" * 32), clock, allow_private=True)
    made = await hooks.create_webhook(ROOT, w.WebhookCreate(url, events,  # type: ignore[arg-type]
                                                            enabled=enabled))
    return made.id


async def count(db: Sessions, model: type) -> int:
    async with db() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_events_commit_with_their_change_or_not_at_all(db: Sessions, plans: PlanSet,
                                                             clock: FakeClock) -> None:
    outbox = Outbox(db, clock, retry_for=86400)
    heard: list[str] = []
    outbox.listeners.append(heard.append)
    catalog = Catalog(db, lambda: plans, clock, events=outbox)
    keys = await subscribe(db, clock, ["key.created", "key.revoked"])
    await subscribe(db, clock, ["key.rotated"])  # not subscribed to key.created
    await subscribe(db, clock, ["key.created"], enabled=False)  # disabled: nothing for it
    customer = await catalog.create_customer(ROOT, s.CustomerCreate("Acme", "basic"))
    made = [await catalog.create_key(ROOT, s.KeyCreate(customer.id)) for _ in range(3)]
    assert heard == ["key.created"] * 3
    with pytest.raises(Conflict):  # past max_keys: the change fails, and so does its event
        await catalog.create_key(ROOT, s.KeyCreate(customer.id))
    assert heard == ["key.created"] * 3
    async with db() as session:
        deliveries = (await session.execute(select(WebhookDelivery.endpoint_id,
                                                   WebhookEvent.type, WebhookEvent.body)
                                            .join(WebhookEvent))).all()
    assert [(e, t) for e, t, _ in deliveries] == [(keys, "key.created")] * 3
    bodies = sorted(body for _, _, body in deliveries)
    assert all(m.key not in "".join(bodies) for m in made), "a key's secret is in an event"
    events = [json.loads(body) for body in bodies]
    assert {m.id for m in made} == {e["data"]["key"]["id"] for e in events}
    assert {e["type"] for e in events} == {"key.created"} and all(e["timestamp"] for e in events)


async def test_instances_claim_disjoint_deliveries(db: Sessions, clock: FakeClock) -> None:
    outbox = Outbox(db, clock, retry_for=86400)
    await subscribe(db, clock, ["key.created"])
    for _ in range(30):
        async with db.begin() as session:
            await outbox.emit(session, "key.created", {"n": 1})
    claims = await asyncio.gather(*(outbox.claim(f"inst_{i}", 4, lease=30) for i in range(6)))
    held = [c.delivery_id for claim in claims for c in claim]
    assert len(held) == len(set(held)) == 24
    rest = await outbox.claim("inst_late", 100, lease=30)
    assert len(rest) == 6 and not {c.delivery_id for c in rest} & set(held)
    assert await outbox.claim("inst_more", 100, lease=30) == []


async def test_a_lease_that_runs_out_is_claimed_again(db: Sessions, clock: FakeClock) -> None:
    outbox = Outbox(db, clock, retry_for=86400)
    await subscribe(db, clock, ["key.created"])
    async with db.begin() as session:
        await outbox.emit(session, "key.created", {})
    (held,) = await outbox.claim("inst_a", 10, lease=30)
    assert await outbox.claim("inst_b", 10, lease=30) == []
    clock.advance(31)  # inst_a died mid-attempt
    (again,) = await outbox.claim("inst_b", 10, lease=30)
    assert again.delivery_id == held.delivery_id
    # inst_a's late answer is logged, but the row is inst_b's now
    assert await outbox.record(held, "inst_a", FAILED_ATTEMPT, retry_in=5) == ""
    assert await outbox.record(again, "inst_b", AttemptResult("delivered", 204, None, 0.02),
                               retry_in=5) == "delivered"
    assert await count(db, WebhookAttempt) == 2
    await outbox.release("inst_b", [again.delivery_id])  # nothing held any more: no effect
    assert await outbox.depth() == (0, 0.0)


async def test_failed_attempts_back_off_until_the_retry_period_ends(
        db: Sessions, clock: FakeClock) -> None:
    outbox = Outbox(db, clock, retry_for=3600)
    await subscribe(db, clock, ["key.created"])
    async with db.begin() as session:
        await outbox.emit(session, "key.created", {})
    rng, statuses, waits = random.Random(7), [], []
    while not statuses or statuses[-1] == PENDING:
        (item,) = await outbox.claim("inst_a", 10, lease=30)
        waits.append(backoff(item.attempts + 1, 5, 600, rng))
        statuses.append(await outbox.record(item, "inst_a", FAILED_ATTEMPT, waits[-1]))
        clock.advance(waits[-1] - 0.01)
        assert await outbox.claim("inst_a", 10, lease=30) == []  # not due yet
        clock.advance(0.02)
    assert statuses[-1] == FAILED and set(statuses[:-1]) == {PENDING}
    # 5 s doubling, capped at 10 min, each between half and all of its ceiling
    ceilings = [min(600, 5 * 2 ** n) for n in range(len(waits))]
    assert all(c / 2 <= wait <= c for c, wait in zip(ceilings, waits, strict=True))
    assert sum(waits[:-1]) <= 3600 < sum(waits)
    assert await outbox.depth() == (0, 0.0)
    assert await count(db, WebhookAttempt) == len(statuses)


async def test_depth_and_age_then_pruning(db: Sessions, clock: FakeClock) -> None:
    outbox = Outbox(db, clock, retry_for=60)
    await subscribe(db, clock, ["key.created"])
    for _ in range(3):
        async with db.begin() as session:
            await outbox.emit(session, "key.created", {})
        clock.advance(10)
    assert await outbox.depth() == (3, 30.0)
    for item in await outbox.claim("inst_a", 10, lease=30):
        await outbox.record(item, "inst_a", FAILED_ATTEMPT, retry_in=3600)  # past: failed
    assert await outbox.depth() == (0, 0.0)
    clock.advance(timedelta(days=31).total_seconds())
    await outbox.prune()
    assert [await count(db, m) for m in (WebhookEvent, WebhookDelivery, WebhookAttempt)] == [
        0, 0, 0]


async def test_deliveries_nobody_can_send_still_end(db: Sessions, clock: FakeClock) -> None:
    """A disabled webhook's pending deliveries fail once past their retry period; a deleted
    webhook's fail at once, and an attempt under way then changes nothing."""
    outbox = Outbox(db, clock, retry_for=60)
    hooks = Webhooks(db, Sealer("k" * 32), clock, allow_private=True)
    paused = await subscribe(db, clock, ["key.created"])
    gone = await subscribe(db, clock, ["key.created"])
    async with db.begin() as session:
        await outbox.emit(session, "key.created", {})
    (held,) = [c for c in await outbox.claim("inst_a", 10, lease=30) if c.endpoint_id == gone]
    await hooks.update_webhook(ROOT, paused, w.WebhookUpdate(enabled=False))
    await hooks.delete_webhook(ROOT, gone)
    assert await outbox.record(held, "inst_a", AttemptResult("delivered", 200, None, 0.1),
                               retry_in=5) == ""
    assert await outbox.claim("inst_b", 10, lease=30) == []  # paused: not sent
    assert await outbox.expire() == 0
    clock.advance(61)
    assert await outbox.expire() == 1
    async with db() as session:
        found = dict((await session.execute(select(
            WebhookDelivery.endpoint_id, WebhookDelivery.status + ": " +
            WebhookDelivery.last_error))).all())
    assert found == {paused: "failed: not delivered within the retry period",
                     gone: "failed: the webhook was deleted"}
