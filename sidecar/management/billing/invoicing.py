"""Invoices in the catalog: the running one of an open period, closing a period, reading
final invoices.

Closing ``YYYY-MM`` is one transaction under the billing lock (db/locks.py, exclusive): it
refuses periods not over yet (plus a grace for the last usage flush), then, if the period is
not closed already, prices every customer that was on a plan during it, numbers the invoices
after the deployment's highest number (no gap: numbers are taken inside the locked
transaction, and a failed close takes none), stores each as the document the API shows,
marks the period closed and writes the audit event. Closing it again finds it closed and
answers the same invoices: an invoice never changes once written.

``Billing.invoice_created`` is where a transactional outbox hooks in: each hook is awaited
with the closing transaction's session and each new invoice, before the commit, so an
``invoice.created`` event it writes commits or rolls back with the invoice itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec
from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sidecar.management.billing import schemas as b
from sidecar.management.billing.invoice import PlanUsage, Segment, invoice_lines
from sidecar.management.billing.money import plain
from sidecar.management.billing.period import Period
from sidecar.management.catalog import Actor
from sidecar.management.db.locks import billing_lock
from sidecar.management.db.models import (
    AuditEvent,
    BillingPeriod,
    Customer,
    Invoice,
    PlanPeriod,
)
from sidecar.management.errors import Conflict, NotFound
from sidecar.management.keys import new_id
from sidecar.management.meters import REQUESTS
from sidecar.management.plans import Plan, PlanSet
from sidecar.management.usage import ledger, readings

InvoiceHook = Callable[[AsyncSession, b.Invoice], Awaitable[None]]
MIN_GRACE_SECONDS = 60.0


class Billing:
    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 plans: Callable[[], PlanSet | None], clock: Callable[[], float],
                 flush_interval: float = 10.0) -> None:
        self.sessions = sessions
        self.plans = plans
        self.clock = clock
        # A period closes this long after it ends, so every instance has flushed its last
        # decisions of it (two flush intervals, at least a minute).
        self.grace = timedelta(seconds=max(MIN_GRACE_SECONDS, 2 * flush_interval))
        self.invoice_created: list[InvoiceHook] = []

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    # -- reading -----------------------------------------------------------------------------

    async def preview(self, customer_id: str, period: Period) -> b.Invoice:
        """The final invoice of a closed period, else the running one (a draft)."""
        async with self.sessions() as session:
            final = await session.scalar(select(Invoice).where(
                Invoice.customer_id == customer_id, Invoice.period == str(period)))
            if final is not None:
                return _document(final)
            customer = await session.get(Customer, customer_id)
            if customer is None:
                raise NotFound(f"no customer {customer_id!r}", "customer_id")
            draft = await self._draft(session, customer, period, self._plans())
        if draft is None:
            raise NotFound(f"customer {customer_id!r} was on no priced plan in {period}; "
                           "there is nothing to invoice", "period")
        return draft

    async def get_invoice(self, invoice_id: str) -> b.Invoice:
        if len(invoice_id) > 40 or "\x00" in invoice_id:  # no invoice id looks like that
            raise NotFound(f"no invoice {invoice_id[:64]!r}")
        async with self.sessions() as session:
            row = await session.get(Invoice, invoice_id)
        if row is None:
            raise NotFound(f"no invoice {invoice_id[:64]!r}")
        return _document(row)

    async def list_invoices(self, customer_id: str | None, period: Period | None, limit: int,
                            cursor: int | None) -> b.InvoiceList:
        """Final invoices by number; ``cursor``: the last number of the previous page."""
        query = select(Invoice)
        if customer_id is not None:
            query = query.where(Invoice.customer_id == customer_id)
        if period is not None:
            query = query.where(Invoice.period == str(period))
        if cursor is not None:
            query = query.where(Invoice.number > cursor)
        async with self.sessions() as session:
            rows = (await session.scalars(query.order_by(Invoice.number).limit(limit + 1))
                    ).all()
        items = [_document(row) for row in rows[:limit]]
        more = len(rows) > limit
        return b.InvoiceList(items, str(rows[limit - 1].number) if more else None)

    # -- closing -----------------------------------------------------------------------------

    async def close(self, actor: Actor, period: Period) -> b.PeriodClosed:
        now = self.now()
        if now < period.end + self.grace:
            raise Conflict(f"the period {period} is not over: it can be closed from "
                           f"{(period.end + self.grace).isoformat()}", "period")
        plans = self._plans()
        async with self.sessions.begin() as session:
            await billing_lock(session, exclusive=True)
            closed = await session.get(BillingPeriod, str(period))
            if closed is None:
                closed = await self._close(session, actor, period, plans, now)
            ids = (await session.scalars(select(Invoice.id).where(
                Invoice.period == str(period)).order_by(Invoice.number))).all()
        return b.PeriodClosed(str(period), closed.closed_at, list(ids))

    async def _close(self, session: AsyncSession, actor: Actor, period: Period,
                     plans: PlanSet, now: datetime) -> BillingPeriod:
        customers = (await session.scalars(select(Customer).where(Customer.id.in_(
            select(PlanPeriod.customer_id).where(_overlaps(period)))).order_by(Customer.id))
                     ).all()
        number = int(await session.scalar(select(func.coalesce(func.max(Invoice.number), 0)))
                     or 0)
        made: list[b.Invoice] = []
        for customer in customers:
            draft = await self._draft(session, customer, period, plans)
            if draft is None:
                continue
            number += 1
            final = msgspec.structs.replace(draft, id=new_id("inv"), status="final",
                                            number=f"INV-{number:06d}", created_at=now)
            assert final.id is not None
            session.add(Invoice(id=final.id, number=number, customer_id=customer.id,
                                period=str(period), currency=final.currency,
                                subtotal=final.subtotal, document=msgspec.to_builtins(final),
                                created_at=now))
            made.append(final)
        await session.flush()
        for invoice in made:
            for hook in self.invoice_created:
                await hook(session, invoice)
        row = BillingPeriod(period=str(period), closed_at=now, closed_by=actor.id,
                            invoices=len(made))
        session.add(row)
        session.add(AuditEvent(at=now, actor=actor.id, action="billing.close",
                               target=f"period:{period}",
                               changes={"invoices": [i.id for i in made]}))
        return row

    # -- pricing -----------------------------------------------------------------------------

    async def _draft(self, session: AsyncSession, customer: Customer, period: Period,
                     plans: PlanSet) -> b.Invoice | None:
        usages = await self._usages(session, customer.id, period, plans)
        priced = invoice_lines(period, usages)
        if priced is None:
            return None
        currency, lines, subtotal = priced
        return b.Invoice(None, None, "draft", customer.id, customer.name, customer.email,
                         str(period), period.start, period.end, currency, lines,
                         plain(subtotal), plain(subtotal), None)

    async def _usages(self, session: AsyncSession, customer_id: str, period: Period,
                      plans: PlanSet) -> list[PlanUsage]:
        """What ``customer_id`` used on each plan during ``period``: its plan periods, and
        the plans its decisions were made on (a decision a second after a plan change may
        still be decided, and counted, on the previous plan)."""
        usages: dict[str, PlanUsage] = {}
        for segment in await _segments(session, customer_id, period):
            usages.setdefault(segment.plan, PlanUsage(_plan(plans, segment.plan, customer_id,
                                                            period))).segments.append(segment)
        allowed = await ledger.allowed_by_plan(session, customer_id, period.start, period.end)
        for plan_id in sorted(allowed.keys() - usages.keys()):
            usages[plan_id] = PlanUsage(_plan(plans, plan_id, customer_id, period))
        for usage in usages.values():
            price = usage.plan.price
            if price is None:
                continue
            ranges = [(s.starts_at, s.ends_at) for s in usage.segments]
            for name in price.meters:
                usage.quantities[name] = Decimal(allowed.get(usage.plan.id, 0)) \
                    if name == REQUESTS else await readings.quantity(
                        session, customer_id, name, plans.meters[name].aggregation, ranges)
        return list(usages.values())

    def _plans(self) -> PlanSet:
        plans = self.plans()
        if plans is None:
            raise Conflict("no plans are loaded; invoices cannot be priced")
        return plans


def _overlaps(period: Period) -> ColumnElement[bool]:
    """Plan periods with time inside ``period``."""
    return and_(PlanPeriod.starts_at < period.end,
                or_(PlanPeriod.ends_at.is_(None), PlanPeriod.ends_at > period.start))


async def _segments(session: AsyncSession, customer_id: str,
                    period: Period) -> Sequence[Segment]:
    rows = (await session.scalars(select(PlanPeriod).where(
        PlanPeriod.customer_id == customer_id, _overlaps(period))
        .order_by(PlanPeriod.starts_at, PlanPeriod.id))).all()
    segments = [Segment(row.plan, max(row.starts_at, period.start),
                        min(row.ends_at or period.end, period.end)) for row in rows]
    return [s for s in segments if s.ends_at > s.starts_at]  # a plan changed twice at once


def _plan(plans: PlanSet, plan_id: str, customer_id: str, period: Period) -> Plan:
    plan = plans.plans.get(plan_id)
    if plan is None:
        raise Conflict(f"customer {customer_id!r} was on plan {plan_id!r} in {period}, which "
                       "is not in the plans files; restore the plan to price the period",
                       "period")
    return plan


def _document(row: Invoice) -> b.Invoice:
    return msgspec.convert(row.document, b.Invoice)
