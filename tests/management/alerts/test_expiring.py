"""key.expiring on SQLite and PostgreSQL: raised once for each key whose expiry is within the
notice, across rounds and instances; again when the expiry moves; never for revoked, rotated,
expired keys or keys of deleted customers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from sidecar.management import schemas as s
from sidecar.management.alerts import schemas as w
from sidecar.management.alerts.expiring import ExpiryNotices
from sidecar.management.alerts.outbox import Outbox
from sidecar.management.alerts.sealing import Sealer
from sidecar.management.alerts.webhooks import Webhooks
from sidecar.management.catalog import Actor, Catalog
from sidecar.management.db.models import WebhookEvent
from sidecar.management.plans import PlanSet
from tests.conftest import FakeClock
from tests.management.alerts.conftest import Sessions

ADMIN = Actor("root_test", frozenset({"admin"}))


async def test_each_key_is_announced_once_before_it_expires(db: Sessions, plans: PlanSet,
                                                            clock: FakeClock) -> None:
    outbox = Outbox(db, clock, retry_for=86400)
    catalog = Catalog(db, lambda: plans, clock, events=outbox)
    hooks = Webhooks(db, Sealer("k" * 32), clock, allow_private=True)
    await hooks.create_webhook(ADMIN, w.WebhookCreate("http://127.0.0.1:9/", ["key.expiring"]))
    now = datetime.fromtimestamp(clock(), UTC)

    async def key(customer: str, days: float | None) -> str:
        expires = None if days is None else now + timedelta(days=days)
        return (await catalog.create_key(ADMIN, s.KeyCreate(customer, expires_at=expires))).id

    for customer in ("acme", "gone"):
        await catalog.create_customer(ADMIN, s.CustomerCreate("X", "bigger", customer))
    soon = await key("acme", 2)
    await key("acme", 30)  # beyond the notice
    await key("acme", None)  # never expires
    revoked = await key("acme", 1)
    await catalog.revoke_key(ADMIN, revoked)
    rotated = await key("acme", None)
    await catalog.rotate_key(ADMIN, rotated, grace_seconds=3600)  # key.rotated said it
    await key("gone", 1)
    await catalog.delete_customer(ADMIN, "gone")
    lapsed = await key("acme", 1)

    notices = ExpiryNotices(db, outbox, notice_days=7)
    clock.advance(timedelta(days=1, hours=1).total_seconds())  # `lapsed` is past its expiry
    assert await notices.run_once() == 1
    assert await notices.run_once() == 0
    assert await ExpiryNotices(db, outbox, notice_days=7).run_once() == 0  # another instance
    assert await ExpiryNotices(db, outbox, notice_days=0).run_once() == 0  # turned off

    later = now + timedelta(days=4)
    await catalog.update_key(ADMIN, soon, s.KeyUpdate(expires_at=later))
    assert await notices.run_once() == 1  # a new expiry is announced again

    async with db() as session:
        bodies = (await session.scalars(select(WebhookEvent.body).order_by(
            WebhookEvent.created_at))).all()
    events = [json.loads(b)["data"] for b in bodies]
    assert [(e["key"]["id"], e["notice_days"]) for e in events] == [(soon, 7), (soon, 7)]
    assert events[1]["expires_at"] == later.isoformat().replace("+00:00", "Z")
    assert lapsed not in {e["key"]["id"] for e in events}
