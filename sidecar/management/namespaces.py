"""Rules namespaces owned by customers: which may be owned, and their rows in the catalog.

A customer may own rules namespaces (a rules file's ``domain``, the ``namespace`` of
/v1/check): the decisions made in them are counted as its usage (usage/checks.py). The primary
key of ``customer_namespaces`` gives a namespace one owner whatever instances write at once;
one held by another customer is a Conflict naming it. Every function here works inside the
caller's transaction, so a refused change leaves the rows as they were.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from sidecar.management.db.models import Customer, CustomerNamespace
from sidecar.management.errors import Conflict, Invalid
from sidecar.management.plans import DOMAIN, FAILURES_DOMAIN

# Full mode's own engine domains: their decisions are key verifications, counted already.
RESERVED = (DOMAIN, FAILURES_DOMAIN)

# (namespace, customer id, the customer's plan)
Ownership = tuple[str, str, str]


def check_namespaces(namespaces: Sequence[str]) -> list[str]:
    """``namespaces`` as a list, or Invalid naming the first reserved or repeated one (their
    shape is checked by the request's schema)."""
    seen: set[str] = set()
    for i, namespace in enumerate(namespaces):
        if namespace in RESERVED:
            raise Invalid(f"{namespace!r} is full mode's own namespace (key verification); "
                          "expected a domain of your rules", f"namespaces[{i}]")
        if namespace in seen:
            raise Invalid(f"{namespace!r} is listed twice; expected each namespace once",
                          f"namespaces[{i}]")
        seen.add(namespace)
    return list(namespaces)


async def owned(session: AsyncSession, customer_ids: Collection[str]) -> dict[str, list[str]]:
    """The namespaces of each of ``customer_ids`` (sorted; absent: none)."""
    if not customer_ids:
        return {}
    rows = await session.execute(
        select(CustomerNamespace.customer_id, CustomerNamespace.namespace)
        .where(CustomerNamespace.customer_id.in_(customer_ids))
        .order_by(CustomerNamespace.namespace))
    out: dict[str, list[str]] = {}
    for customer_id, namespace in rows.all():
        out.setdefault(customer_id, []).append(namespace)
    return out


async def holder_conflict(session: AsyncSession, customer_id: str,
                          namespaces: Sequence[str]) -> Conflict | None:
    """A Conflict naming the first of ``namespaces`` another customer holds (None: none)."""
    if not namespaces:
        return None
    rows = await session.execute(
        select(CustomerNamespace.namespace, CustomerNamespace.customer_id)
        .where(CustomerNamespace.namespace.in_(namespaces),
               CustomerNamespace.customer_id != customer_id))
    holders = dict(rows.all())
    for i, namespace in enumerate(namespaces):
        if namespace in holders:
            return Conflict(f"namespace {namespace!r} belongs to customer "
                            f"{holders[namespace]!r}; a namespace is counted for one customer "
                            "at most: take it from that customer first", f"namespaces[{i}]")
    return None


async def replace(session: AsyncSession, customer_id: str, namespaces: Sequence[str],
                  now: datetime) -> tuple[list[str], list[str]]:
    """Make ``namespaces`` the customer's own; returns (added, removed). Conflict when another
    customer holds one; IntegrityError at the flush when another transaction took one since
    (the caller turns it into the same Conflict)."""
    conflict = await holder_conflict(session, customer_id, namespaces)
    if conflict is not None:
        raise conflict
    current = set((await owned(session, [customer_id])).get(customer_id, []))
    removed = sorted(current.difference(namespaces))
    if removed:
        await session.execute(delete(CustomerNamespace).where(
            CustomerNamespace.customer_id == customer_id,
            CustomerNamespace.namespace.in_(removed)))
    added = [namespace for namespace in namespaces if namespace not in current]
    session.add_all(CustomerNamespace(namespace=namespace, customer_id=customer_id,
                                      created_at=now) for namespace in added)
    await session.flush()
    return added, removed


async def release(session: AsyncSession, customer_id: str) -> list[str]:
    """Give up every namespace of the customer (it is being deleted); returns them."""
    gone = (await owned(session, [customer_id])).get(customer_id, [])
    if gone:
        await session.execute(delete(CustomerNamespace).where(
            CustomerNamespace.customer_id == customer_id))
    return gone


async def ownerships(session: AsyncSession,
                     customer_id: str | None = None) -> list[Ownership]:
    """Every namespace with its owner and the owner's plan (or only ``customer_id``'s)."""
    query = (select(CustomerNamespace.namespace, Customer.id, Customer.plan)
             .join(Customer, Customer.id == CustomerNamespace.customer_id)
             .where(Customer.deleted_at.is_(None)))
    if customer_id is not None:
        query = query.where(Customer.id == customer_id)
    return [(namespace, owner, plan) for namespace, owner, plan in
            (await session.execute(query)).all()]
