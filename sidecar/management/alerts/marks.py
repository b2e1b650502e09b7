"""Raising an alert once: its mark and its event commit together, and the mark's primary key
lets only the first instance (or round) that raises it do so."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sidecar.management.alerts.outbox import Outbox
from sidecar.management.db.models import AlertMark


async def raise_once(sessions: async_sessionmaker[AsyncSession], outbox: Outbox,
                     kind: str, subject: str, period: str, level: str, data: Any) -> bool:
    """Write the mark (kind, subject, period, level) and the ``kind`` event; False when the
    mark was there already (nothing is written then)."""
    try:
        async with sessions.begin() as session:
            session.add(AlertMark(kind=kind, subject=subject, period=period, level=level,
                                  at=outbox.now()))
            await session.flush()  # the duplicate shows here, before the event is written
            await outbox.emit(session, kind, data)
    except IntegrityError:
        return False
    return True
