"""Read-only catalog queries the pages need beyond the admin API's (search, counts, names).
Every change still goes through catalog.py; nothing here writes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sidecar.management import schemas as s
from sidecar.management.catalog import customer_view
from sidecar.management.db.models import ApiKey, Customer


@dataclass(frozen=True, slots=True)
class KeyLabel:
    id: str
    start: str
    name: str | None
    customer_id: str


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
