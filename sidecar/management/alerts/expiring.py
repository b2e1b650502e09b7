"""key.expiring: a key's expiry is less than VIVA_KEY_EXPIRING_DAYS away, announced once per
key and expiry date (a key given a new expires_at is announced again).

Every VIVA_ALERTS_INTERVAL each instance lists the keys expiring within the notice (not
revoked, customer not deleted, and not rotated: a rotated key's expiry ends its grace period,
which key.rotated announced already), leaves out those already marked, and raises the rest
(marks.py: one instance wins each).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from sidecar.management.alerts.marks import raise_once
from sidecar.management.alerts.outbox import Outbox
from sidecar.management.alerts.schemas import KeyExpiringData
from sidecar.management.catalog import key_view
from sidecar.management.db.models import AlertMark, ApiKey, Customer

KIND = "key.expiring"
BATCH = 500


class ExpiryNotices:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], outbox: Outbox,
                 notice_days: int) -> None:
        self.sessions = sessions
        self.outbox = outbox
        self.notice_days = notice_days

    async def run_once(self) -> int:
        """Raise key.expiring for every key due; returns how many were raised."""
        if self.notice_days <= 0:
            return 0
        count, after = 0, ""
        while True:
            rows, marked = await self._due(after)
            for key, plan in rows:
                assert key.expires_at is not None
                period = key.expires_at.isoformat()
                if (key.id, period) not in marked:
                    data = KeyExpiringData(key_view(key, plan), key.expires_at,
                                           self.notice_days)
                    count += await raise_once(self.sessions, self.outbox, KIND, key.id,
                                              period, "", data)
            if len(rows) < BATCH:
                return count
            after = rows[-1][0].id

    async def _due(self, after: str) -> tuple[list[tuple[ApiKey, str]], set[tuple[str, str]]]:
        """A page of keys due a notice (by id, after ``after``), and their marks."""
        now = self.outbox.now()
        successor = aliased(ApiKey)
        query = (select(ApiKey, Customer.plan).join(Customer)
                 .where(ApiKey.id > after, ApiKey.revoked_at.is_(None),
                        Customer.deleted_at.is_(None), ApiKey.expires_at > now,
                        ApiKey.expires_at <= now + timedelta(days=self.notice_days),
                        ~exists().where(successor.rotated_from == ApiKey.id))
                 .order_by(ApiKey.id).limit(BATCH))
        async with self.sessions() as session:
            rows = [(key, plan) for key, plan in (await session.execute(query)).all()]
            marks = await session.execute(select(AlertMark.subject, AlertMark.period).where(
                AlertMark.kind == KIND, AlertMark.subject.in_([k.id for k, _ in rows])))
        return rows, {(subject, period) for subject, period in marks.all()}
