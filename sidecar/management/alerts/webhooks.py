"""Webhook endpoints and their deliveries, for the admin API and the web pages alike: each call
is one transaction, each change audited (never with the secret, nor the URL's path, which may
hold a token of the receiver's: the audit log keeps its host).

The signing secret is made here, returned once by ``create`` and stored sealed (sealing.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import msgspec
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sidecar.management.alerts import schemas as w
from sidecar.management.alerts.outbox import DELIVERED, FAILED, PENDING
from sidecar.management.alerts.sealing import Sealer
from sidecar.management.alerts.signing import new_secret
from sidecar.management.alerts.targets import TargetError, validate_url
from sidecar.management.catalog import Actor, audit
from sidecar.management.db.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from sidecar.management.errors import Invalid, NotFound, Unavailable
from sidecar.management.keys import new_id

NO_SECRET_KEY = ("webhooks need VIVA_SECRET_KEY (32+ characters) to seal their signing secrets; "
                 "set it on every instance")


class Webhooks:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], sealer: Sealer | None,
                 clock: Callable[[], float], allow_private: bool,
                 wake: Callable[[], None] = lambda: None) -> None:
        self.sessions = sessions
        self.sealer = sealer
        self.clock = clock
        self.allow_private = allow_private
        self.wake = wake  # the dispatcher, when a retry is due now

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    # -- endpoints ---------------------------------------------------------------------------

    async def create_webhook(self, actor: Actor, body: w.WebhookCreate) -> w.WebhookCreated:
        if self.sealer is None:
            raise Unavailable(NO_SECRET_KEY)
        url = await self._checked(body.url)
        now, secret, endpoint_id = self.now(), new_secret(), new_id("wh")
        row = WebhookEndpoint(id=endpoint_id, url=url, events=_unique(body.events),
                              description=body.description, enabled=body.enabled,
                              secret=self.sealer.seal(secret, endpoint_id), created_at=now,
                              updated_at=now)
        async with self.sessions.begin() as session:
            session.add(row)
            audit(session, now, actor, "webhook.create", f"webhook:{row.id}", _audited(body))
        return w.WebhookCreated(row.id, secret, row.url, row.events, row.description,
                                row.enabled, row.created_at)

    async def list_webhooks(self, limit: int, cursor: str | None) -> w.WebhookList:
        query = select(WebhookEndpoint).where(WebhookEndpoint.deleted_at.is_(None))
        if cursor:
            query = query.where(WebhookEndpoint.id > cursor)
        async with self.sessions() as session:
            rows = (await session.scalars(query.order_by(WebhookEndpoint.id)
                                          .limit(limit + 1))).all()
        items = [webhook_view(r) for r in rows[:limit]]
        return w.WebhookList(items, items[-1].id if len(rows) > limit else None)

    async def get_webhook(self, endpoint_id: str) -> w.Webhook:
        async with self.sessions() as session:
            return webhook_view(await self._endpoint(session, endpoint_id))

    async def update_webhook(self, actor: Actor, endpoint_id: str,
                     body: w.WebhookUpdate) -> w.Webhook:
        url = None if body.url is msgspec.UNSET else await self._checked(body.url)
        async with self.sessions.begin() as session:
            row = await self._endpoint(session, endpoint_id, lock=True)
            if url is not None:
                row.url = url
            if body.events is not msgspec.UNSET:
                row.events = _unique(body.events)
            if body.description is not msgspec.UNSET:
                row.description = body.description
            if body.enabled is not msgspec.UNSET:
                row.enabled = body.enabled
            row.updated_at = self.now()
            audit(session, row.updated_at, actor, "webhook.update", f"webhook:{row.id}",
                  _audited(body))
        if body.enabled is True:
            self.wake()  # deliveries held while it was disabled
        return webhook_view(row)

    async def delete_webhook(self, actor: Actor, endpoint_id: str) -> None:
        """Stop delivering to it: its pending deliveries fail at once; its history is kept
        (as the outbox keeps every finished delivery) for the retention period."""
        now = self.now()
        async with self.sessions.begin() as session:
            row = await self._endpoint(session, endpoint_id, lock=True)
            row.deleted_at = row.updated_at = now
            await session.execute(update(WebhookDelivery).where(
                WebhookDelivery.endpoint_id == row.id, WebhookDelivery.status == PENDING)
                .values(status=FAILED, next_attempt_at=None, updated_at=now,
                        lease_owner=None, lease_until=None,  # an attempt under way is moot
                        last_error="the webhook was deleted"))
            audit(session, now, actor, "webhook.delete", f"webhook:{row.id}", {})

    # -- deliveries --------------------------------------------------------------------------

    async def list_deliveries(self, endpoint_id: str, status: str | None, limit: int,
                         cursor: str | None) -> w.DeliveryList:
        """Newest first."""
        if status is not None and status not in w.DELIVERY_STATUSES:
            raise Invalid(f"expected one of {', '.join(w.DELIVERY_STATUSES)}", "status")
        query = (select(WebhookDelivery, WebhookEvent.type)
                 .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
                 .where(WebhookDelivery.endpoint_id == endpoint_id))
        if status is not None:
            query = query.where(WebhookDelivery.status == status)
        if cursor:
            query = query.where(WebhookDelivery.id < cursor)
        async with self.sessions() as session:
            await self._endpoint(session, endpoint_id)
            rows = (await session.execute(query.order_by(WebhookDelivery.id.desc())
                                          .limit(limit + 1))).all()
        items = [delivery_view(d, kind) for d, kind in rows[:limit]]
        return w.DeliveryList(items, items[-1].id if len(rows) > limit else None)

    async def get_delivery(self, endpoint_id: str, delivery_id: str) -> w.DeliveryDetail:
        async with self.sessions() as session:
            row, event = await self._delivery(session, endpoint_id, delivery_id)
            attempts = (await session.scalars(select(WebhookAttempt).where(
                WebhookAttempt.delivery_id == row.id).order_by(WebhookAttempt.id))).all()
        view = delivery_view(row, event.type)
        log = [w.Attempt(a.at, a.status_code, a.error, a.duration_ms) for a in attempts]
        return w.DeliveryDetail(**msgspec.structs.asdict(view), payload=json.loads(event.body),
                                attempt_log=log)

    async def retry_delivery(self, actor: Actor, endpoint_id: str, delivery_id: str) -> w.Delivery:
        """Send it again now. A pending delivery keeps its retry schedule (one being sent
        right now is left to finish); a delivered or failed one gets one more attempt."""
        now = self.now()
        async with self.sessions.begin() as session:
            row, event = await self._delivery(session, endpoint_id, delivery_id, lock=True)
            if row.status in (DELIVERED, FAILED):
                row.status, row.give_up_at = PENDING, now
            if row.lease_owner is None:
                row.next_attempt_at = now
            row.updated_at = now
            audit(session, now, actor, "webhook.retry", f"webhook:{endpoint_id}",
                  {"delivery_id": row.id, "event_id": row.event_id})
        self.wake()
        return delivery_view(row, event.type)

    # -- helpers -----------------------------------------------------------------------------

    async def _checked(self, url: str) -> str:
        try:
            return await validate_url(url, self.allow_private)
        except TargetError as exc:
            raise Invalid(str(exc), "url") from None

    async def _endpoint(self, session: AsyncSession, endpoint_id: str,
                        lock: bool = False) -> WebhookEndpoint:
        query = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id,
                                              WebhookEndpoint.deleted_at.is_(None))
        row = await session.scalar(query.with_for_update() if lock else query)
        if row is None:
            raise NotFound(f"no webhook {endpoint_id!r}")
        return row

    async def _delivery(self, session: AsyncSession, endpoint_id: str, delivery_id: str,
                        lock: bool = False) -> tuple[WebhookDelivery, WebhookEvent]:
        await self._endpoint(session, endpoint_id)
        query = (select(WebhookDelivery, WebhookEvent)
                 .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
                 .where(WebhookDelivery.id == delivery_id,
                        WebhookDelivery.endpoint_id == endpoint_id))
        found = (await session.execute(
            query.with_for_update(of=WebhookDelivery) if lock else query)).first()
        if found is None:
            raise NotFound(f"no delivery {delivery_id!r} for webhook {endpoint_id!r}")
        return found[0], found[1]


def _unique(events: list[Any]) -> list[str]:
    return list(dict.fromkeys(str(e) for e in events))


def _audited(body: msgspec.Struct) -> dict[str, Any]:
    fields: dict[str, Any] = msgspec.to_builtins(body)
    if "url" in fields:
        fields["url_host"] = urlsplit(fields.pop("url")).hostname
    return fields


def webhook_view(row: WebhookEndpoint) -> w.Webhook:
    return w.Webhook(row.id, row.url, list(row.events), row.description, row.enabled,
                     row.created_at, row.updated_at)


def delivery_view(row: WebhookDelivery, event_type: str) -> w.Delivery:
    return w.Delivery(row.id, row.endpoint_id, row.event_id, event_type,
                      row.status,  # type: ignore[arg-type]
                      row.attempts, row.next_attempt_at, row.give_up_at, row.last_status_code,
                      row.last_error, row.created_at, row.delivered_at)
