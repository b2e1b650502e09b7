"""The billing lock: closing a period excludes adding usage events to it.

Event ingestion holds it shared (ingestions run side by side), closing a period holds it
exclusively, each for its whole transaction. So an event is either in the database before a
close reads the period's usage, or sees the period closed and is refused: never accepted
into an invoice already made.

PostgreSQL: a transaction-level advisory lock (shared or exclusive). SQLite has a single
writer: a write that changes nothing, as the transaction's first statement, takes the
database's write lock at once, which excludes every other writing transaction until commit
(and, under WAL, keeps a later write from failing on a stale snapshot).
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

BILLING_LOCK = 0x76697662  # "vivb"


async def billing_lock(session: AsyncSession, exclusive: bool) -> None:
    """Hold the billing lock until the session's transaction ends (call it first)."""
    if session.get_bind().dialect.name == "postgresql":
        function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        await session.execute(text(f"SELECT {function}(:id)"), {"id": BILLING_LOCK})
    else:
        await session.execute(text("UPDATE billing_periods SET period = period WHERE 0 = 1"))
