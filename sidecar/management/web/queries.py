"""Read-only catalog queries the pages need beyond the admin API's: search, counts, names, a
customer's plan history, the alerts raised and the failing webhook deliveries. Every change
still goes through catalog.py (or the webhooks' and billing's own calls); nothing here
writes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sidecar.management import schemas as s
from sidecar.management.alerts.outbox import FAILED, PENDING
from sidecar.management.catalog import customer_view
from sidecar.management.db.models import (
    AlertMark,
    ApiKey,
    Customer,
    PlanPeriod,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from sidecar.management.web.usage import PlanSpan


@dataclass(frozen=True, slots=True)
class KeyLabel:
    id: str
    start: str
    name: str | None
    customer_id: str


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert raised (alerts/marks.py). usage.threshold: ``subject`` is
    "<customer>/<limit>", ``period`` the window's start, ``level`` the share reached;
    key.expiring: ``subject`` is the key's id, ``period`` its expiry."""

    kind: str
    subject: str
    period: str
    level: str
    at: datetime

    @property
    def customer_id(self) -> str | None:
        return self.subject.rpartition("/")[0] or None

    @property
    def limit(self) -> str:
        return self.subject.rpartition("/")[2]


@dataclass(frozen=True, slots=True)
class Failure:
    """A delivery given up, or still pending after a failed attempt."""

    webhook_id: str
    url: str
    delivery_id: str
    event_type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    at: datetime


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class PageQueries:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def search_customers(self, text: str, limit: int,
                               cursor: str | None) -> s.CustomerList:
        """Live customers whose id, name or e-mail contains ``text`` (any case), by id."""
        query = select(Customer).where(Customer.deleted_at.is_(None))
        if text:
            pattern = _like(text)
            query = query.where(or_(func.lower(Customer.id).like(pattern, escape="\\"),
                                    func.lower(Customer.name).like(pattern, escape="\\"),
                                    func.lower(Customer.email).like(pattern, escape="\\")))
        if cursor:
            query = query.where(Customer.id > cursor)
        async with self.sessions() as db:
            rows = (await db.scalars(query.order_by(Customer.id).limit(limit + 1))).all()
        items = [customer_view(r) for r in rows[:limit]]
        return s.CustomerList(items, items[-1].id if len(rows) > limit else None)

    async def customers_per_plan(self) -> dict[str, int]:
        async with self.sessions() as db:
            rows = (await db.execute(select(Customer.plan, func.count()).where(
                Customer.deleted_at.is_(None)).group_by(Customer.plan))).all()
        return {plan: int(count) for plan, count in rows}

    async def customer_names(self, ids: Iterable[str]) -> dict[str, str]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        async with self.sessions() as db:
            rows = (await db.execute(select(Customer.id, Customer.name).where(
                Customer.id.in_(wanted)))).all()
        return {cid: name for cid, name in rows}

    async def key_labels(self, ids: Iterable[str]) -> dict[str, KeyLabel]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        async with self.sessions() as db:
            rows = (await db.execute(select(ApiKey.id, ApiKey.start, ApiKey.name,
                                            ApiKey.customer_id).where(
                ApiKey.id.in_(wanted)))).all()
        return {r[0]: KeyLabel(r[0], r[1], r[2], r[3]) for r in rows}

    async def plan_spans(self, customer_id: str) -> list[PlanSpan]:
        """Which plan the customer was on, from when to when (billing's plan periods)."""
        async with self.sessions() as db:
            rows = (await db.scalars(select(PlanPeriod).where(
                PlanPeriod.customer_id == customer_id).order_by(PlanPeriod.starts_at,
                                                               PlanPeriod.id))).all()
        return [PlanSpan(r.plan, r.starts_at, r.ends_at) for r in rows]

    async def recent_alerts(self, limit: int) -> list[Alert]:
        async with self.sessions() as db:
            rows = (await db.scalars(select(AlertMark).order_by(AlertMark.at.desc())
                                     .limit(limit))).all()
        return [Alert(r.kind, r.subject, r.period, r.level, r.at) for r in rows]

    async def recent_failures(self, limit: int) -> list[Failure]:
        """Deliveries given up, or pending after a failed attempt, most recent first."""
        failing = or_(WebhookDelivery.status == FAILED,
                      and_(WebhookDelivery.status == PENDING, WebhookDelivery.attempts > 0))
        query = (select(WebhookDelivery, WebhookEvent.type, WebhookEndpoint.url)
                 .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
                 .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                 .where(failing).order_by(WebhookDelivery.updated_at.desc()).limit(limit))
        async with self.sessions() as db:
            rows = (await db.execute(query)).all()
        return [Failure(d.endpoint_id, url, d.id, kind, d.status, d.attempts,
                        d.last_status_code, d.last_error, d.updated_at)
                for d, kind, url in rows]
