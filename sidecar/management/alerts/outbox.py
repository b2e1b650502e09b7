"""The transactional outbox of webhook events.

``emit`` runs inside the transaction of the change that causes an event (a key created,
rotated or revoked, an alert raised, an invoice finalised): it writes the event and one pending
delivery per endpoint subscribed to its type, so the event commits with the change or not at
all, and outlives any restart. The dispatcher (dispatcher.py) claims due deliveries, sends them
and records each attempt here.

Claiming is safe with many instances: due rows that nobody holds are stamped with the
instance's id and a lease, in one short transaction. On PostgreSQL the rows are picked with
``FOR UPDATE SKIP LOCKED``, so instances never wait for each other; on SQLite (one writer at
a time) a single UPDATE picks and stamps them. A lease outlasts an attempt; one that runs out
(the instance died while sending) makes the row claimable again. So every event is delivered
at least once, and twice only when an instance dies between sending it and recording that.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import delete, event, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sidecar.management.alerts.schemas import Envelope
from sidecar.management.alerts.sender import AttemptResult
from sidecar.management.db.models import (
    AlertMark,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from sidecar.management.keys import new_id

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
RETENTION = timedelta(days=30)  # finished deliveries, their attempts and events
MARK_RETENTION = timedelta(days=400)  # alert marks (a yearly quota's period is a year)


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery this instance holds: what one attempt needs."""

    delivery_id: str
    event_id: str
    event_type: str
    body: bytes
    endpoint_id: str
    url: str
    sealed_secret: str
    attempts: int  # made before this one
    give_up_at: datetime


class Outbox:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Callable[[], float],
                 retry_for: float) -> None:
        self.sessions = sessions
        self.clock = clock
        self.retry_for = retry_for
        # Hear the type of each event once its transaction has committed (the dispatcher
        # wakes, the metrics count).
        self.listeners: list[Callable[[str], None]] = []

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    # -- written with the change -------------------------------------------------------------

    async def emit(self, session: AsyncSession, event_type: str, data: Any) -> str | None:
        """In the caller's transaction: the event and a delivery for each endpoint subscribed
        to ``event_type``; returns the event's id (None when nobody is subscribed)."""
        rows = (await session.execute(select(WebhookEndpoint.id, WebhookEndpoint.events).where(
            WebhookEndpoint.deleted_at.is_(None), WebhookEndpoint.enabled.is_(True)))).all()
        targets = sorted(endpoint for endpoint, events in rows if event_type in events)
        if not targets:
            return None
        now = self.now()
        body = msgspec.json.encode(Envelope(event_type, now, data)).decode()
        row = WebhookEvent(id=new_id("msg"), type=event_type, body=body, created_at=now)
        session.add(row)
        await session.flush()  # the event's row before its deliveries' (their foreign key)
        give_up_at = now + timedelta(seconds=self.retry_for)
        session.add_all([WebhookDelivery(
            id=new_id("dlv"), event_id=row.id, endpoint_id=endpoint, status=PENDING,
            attempts=0, next_attempt_at=now, give_up_at=give_up_at, created_at=now,
            updated_at=now) for endpoint in targets])
        self._announce(session, event_type)
        return row.id

    def _announce(self, session: AsyncSession, event_type: str) -> None:
        emitted: list[str] = session.info.setdefault("webhook_events", [])
        if not emitted:
            event.listen(session.sync_session, "after_commit", self._committed, once=True)
        emitted.append(event_type)

    def _committed(self, session: Any) -> None:
        for event_type in session.info.pop("webhook_events", []):
            for listener in self.listeners:
                listener(event_type)

    # -- the dispatcher's side ---------------------------------------------------------------

    async def claim(self, owner: str, limit: int, lease: float) -> list[Claimed]:
        """Hold up to ``limit`` due deliveries for ``lease`` seconds."""
        now = self.now()
        free = or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until < now)
        open_endpoints = select(WebhookEndpoint.id).where(WebhookEndpoint.enabled.is_(True),
                                                          WebhookEndpoint.deleted_at.is_(None))
        due = (select(WebhookDelivery.id)
               .where(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= now,
                      free, WebhookDelivery.endpoint_id.in_(open_endpoints))
               .order_by(WebhookDelivery.next_attempt_at).limit(limit))
        async with self.sessions.begin() as session:
            if session.get_bind().dialect.name == "postgresql":
                # Lock the picked rows first: inside an UPDATE's IN (…) the planner may run
                # a LIMIT … SKIP LOCKED subquery more than once and take more than ``limit``.
                picked = list(await session.scalars(due.with_for_update(skip_locked=True)))
                if not picked:
                    return []
                chosen = WebhookDelivery.id.in_(picked)
            else:  # one writer at a time: the subquery runs in the writer's own snapshot
                chosen = WebhookDelivery.id.in_(due)
            ids = (await session.scalars(
                update(WebhookDelivery)
                .where(chosen, WebhookDelivery.status == PENDING, free)
                .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease))
                .returning(WebhookDelivery.id))).all()
            if not ids:
                return []
            rows = (await session.execute(
                select(WebhookDelivery, WebhookEvent.type, WebhookEvent.body,
                       WebhookEndpoint.url, WebhookEndpoint.secret)
                .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
                .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                .where(WebhookDelivery.id.in_(ids)))).all()
        return [Claimed(d.id, d.event_id, kind, body.encode(), d.endpoint_id, url, secret,
                        d.attempts, d.give_up_at) for d, kind, body, url, secret in rows]

    async def record(self, claimed: Claimed, owner: str, result: AttemptResult,
                     retry_in: float) -> str:
        """Log the attempt; the delivery becomes delivered, pending again in ``retry_in``
        seconds, or failed past its give-up time. Returns the new status ('' when the lease
        was lost meanwhile: the attempt is logged, the row is another holder's)."""
        now = self.now()
        values: dict[str, Any] = {
            "attempts": WebhookDelivery.attempts + 1, "last_status_code": result.status_code,
            "last_error": result.error, "lease_owner": None, "lease_until": None,
            "updated_at": now}
        if result.delivered:
            status = DELIVERED
            values.update(delivered_at=now, next_attempt_at=None)
        else:
            next_at = now + timedelta(seconds=retry_in)
            status = FAILED if next_at > claimed.give_up_at else PENDING
            values["next_attempt_at"] = next_at if status == PENDING else None
        async with self.sessions.begin() as session:
            session.add(WebhookAttempt(delivery_id=claimed.delivery_id, at=now,
                                       status_code=result.status_code, error=result.error,
                                       duration_ms=round(result.duration * 1000)))
            done = await session.execute(update(WebhookDelivery).where(
                WebhookDelivery.id == claimed.delivery_id,
                WebhookDelivery.lease_owner == owner).values(status=status, **values))
        return status if done.rowcount else ""  # type: ignore[attr-defined]

    async def release(self, owner: str, delivery_ids: Sequence[str]) -> None:
        """Give held deliveries back at once (a clean stop: no one waits for the lease)."""
        if not delivery_ids:
            return
        async with self.sessions.begin() as session:
            await session.execute(update(WebhookDelivery).where(
                WebhookDelivery.id.in_(delivery_ids), WebhookDelivery.lease_owner == owner)
                .values(lease_owner=None, lease_until=None))

    async def expire(self) -> int:
        """Fail the pending deliveries past their give-up time that no attempt will reach
        (their webhook is disabled); returns how many."""
        now = self.now()
        async with self.sessions.begin() as session:
            done = await session.execute(update(WebhookDelivery).where(
                WebhookDelivery.status == PENDING, WebhookDelivery.give_up_at < now,
                or_(WebhookDelivery.lease_until.is_(None), WebhookDelivery.lease_until < now))
                .values(status=FAILED, next_attempt_at=None, lease_owner=None,
                        lease_until=None, updated_at=now,
                        last_error="not delivered within the retry period"))
        return int(done.rowcount)  # type: ignore[attr-defined]

    async def depth(self) -> tuple[int, float]:
        """Pending deliveries, and the age in seconds of the oldest (0 when none)."""
        async with self.sessions() as session:
            count, oldest = (await session.execute(
                select(func.count(), func.min(WebhookDelivery.created_at))
                .where(WebhookDelivery.status == PENDING))).one()
        if not count or oldest is None:
            return 0, 0.0
        return int(count), max(0.0, (self.now() - oldest).total_seconds())

    async def prune(self) -> None:
        """Forget finished deliveries (and their attempts and events) after RETENTION, and
        alert marks after MARK_RETENTION."""
        now = self.now()
        old = select(WebhookDelivery.id).where(WebhookDelivery.status != PENDING,
                                               WebhookDelivery.updated_at < now - RETENTION)
        async with self.sessions.begin() as session:
            await session.execute(delete(WebhookAttempt).where(
                WebhookAttempt.delivery_id.in_(old)))
            await session.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(old)))
            await session.execute(delete(WebhookEvent).where(
                WebhookEvent.created_at < now - RETENTION,
                ~exists().where(WebhookDelivery.event_id == WebhookEvent.id)))
            await session.execute(delete(WebhookEndpoint).where(
                WebhookEndpoint.deleted_at < now - RETENTION,
                ~exists().where(WebhookDelivery.endpoint_id == WebhookEndpoint.id)))
            await session.execute(delete(AlertMark).where(AlertMark.at < now - MARK_RETENTION))
