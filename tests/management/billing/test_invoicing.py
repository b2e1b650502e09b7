"""Billing end to end in process, on SQLite and on a real PostgreSQL, with a fake clock:
decisions counted by key verification and usage reported as events, a plan change in the
middle of November, the running invoice, then closing the period (twice), numbering,
immutability, the invoice.created hook inside the closing transaction, and a close that
fails leaving the database as it was. Every total is computed by hand in the comments."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sidecar.management.billing import schemas as b
from sidecar.management.billing.period import Period
from sidecar.management.db.models import AuditEvent, BillingPeriod, Invoice
from sidecar.management.errors import Conflict, NotFound
from sidecar.management.plans import build_plans
from sidecar.rules.loader import RuleFile
from tests.management.rig import ADMIN, PLANS, Rig, make_rig

NOVEMBER, DECEMBER = Period(2026, 11), Period(2026, 12)


@pytest.fixture
async def rig(catalog_url: str) -> AsyncIterator[Rig]:
    made = await make_rig(catalog_url)
    yield made
    await made.db.dispose()


async def november(rig: Rig) -> None:
    """acme: small from Nov 1, large from Nov 11; gamma: large Nov 15-25; beta: free."""
    key = await rig.customer("acme", "small")
    rig.at("2026-11-02T10:00:00")
    # small allows 5 an hour: 5 allowed (2 included + 3 at 0.50), 2 refused (not billed)
    assert await rig.codes(key, 7) == ["VALID"] * 5 + ["RATE_LIMITED"] * 2
    rig.at("2026-11-10T00:00:00")
    result = await rig.report(
        {"id": "t1", "customer_id": "acme", "meter": "tokens", "value": 700,
         "time": "2026-11-03T08:00:00Z"},
        {"id": "t2", "customer_id": "acme", "meter": "tokens", "value": "600",
         "time": "2026-11-05T08:00:00Z"},
        {"id": "s1", "customer_id": "acme", "meter": "storage_gb", "value": 12.5,
         "time": "2026-11-03T09:00:00Z"},
        {"id": "s2", "customer_id": "acme", "meter": "storage_gb", "value": 25,
         "time": "2026-11-04T09:00:00Z"},
        *({"id": f"u{i}", "customer_id": "acme", "meter": "users", "value": user,
           "time": "2026-11-06T10:00:00Z"} for i, user in enumerate(["a", "b", "a", "c"])),
        {"id": "e1", "customer_id": "acme", "meter": "exports",
         "time": "2026-11-07T10:00:00Z"},
        {"id": "e2", "customer_id": "acme", "meter": "exports",
         "time": "2026-11-08T10:00:00Z"})
    assert (result.accepted, result.duplicates, result.rejected) == (10, 0, [])
    rig.at("2026-11-11T00:00:00")
    await rig.plan("acme", "large")
    rig.at("2026-11-12T12:00:00")
    assert await rig.codes(key, 3) == ["VALID"] * 3  # priced on large: 3 x 0.10
    assert (await rig.report({"id": "t3", "customer_id": "acme", "meter": "tokens",
                              "value": 1000}, {"id": "u9", "customer_id": "acme",
                                               "meter": "users", "value": "a"})).accepted == 2
    rig.at("2026-11-15T00:00:00")
    await rig.customer("gamma", "large")
    rig.at("2026-11-20T00:00:00")
    await rig.customer("beta", "free")
    rig.at("2026-11-25T00:00:00")
    await rig.catalog.delete_customer(ADMIN, "gamma")
    await rig.flusher.flush()


ACME_NOVEMBER = [
    # small, Nov 1-11: 10 of 30 days of 30.00
    ("small", "Small base fee (prorated)", "0.333333", "30.00", "10.00"),
    ("small", "requests: included (2)", "2", "0", "0.00"),
    ("small", "requests", "3", "0.50", "1.50"),
    ("small", "tokens: tier 1 (graduated)", "1000", "0.01", "10.00"),  # 700 + 600 = 1300
    ("small", "tokens: tier 2 (graduated)", "300", "0.001", "0.30"),
    ("small", "storage_gb: packages of 10", "3", "2.00", "6.00"),  # max 25 GB: 3 packages
    ("small", "users: tier 2 (volume)", "3", "0.75", "2.25"),  # a, b, c: 3 > 2
    ("small", "exports: included (1)", "1", "0", "0.00"),
    ("small", "exports: flat fee", "1", "5.00", "5.00"),  # 2 exports, 1 included
    # large, Nov 11 - Dec 1: 20 of 30 days of 60.00
    ("large", "Large base fee (prorated)", "0.666667", "60.00", "40.00"),
    ("large", "requests", "3", "0.10", "0.30"),
    ("large", "tokens", "1000", "0.002", "2.00"),
]  # 35.05 on small + 42.30 on large


def lines(invoice: b.Invoice) -> list[tuple[str, str, str, str, str]]:
    return [(x.plan, x.description, x.quantity, x.unit_price, x.amount) for x in invoice.lines]


async def test_the_running_invoice_prices_each_plan_on_its_own_usage(rig: Rig) -> None:
    await november(rig)
    draft = await rig.billing.preview("acme", NOVEMBER)
    assert (draft.status, draft.id, draft.number, draft.currency) == ("draft", None, None,
                                                                      "EUR")
    assert lines(draft) == ACME_NOVEMBER
    assert draft.subtotal == draft.total == "77.35"
    gamma = await rig.billing.preview("gamma", NOVEMBER)  # deleted after 10 days, no usage
    assert lines(gamma) == [
        ("large", "Large base fee (prorated)", "0.333333", "60.00", "20.00"),
        ("large", "requests", "0", "0.10", "0.00"), ("large", "tokens", "0", "0.002", "0.00")]
    with pytest.raises(NotFound, match="no priced plan"):
        await rig.billing.preview("beta", NOVEMBER)
    with pytest.raises(NotFound):
        await rig.billing.preview("nobody", NOVEMBER)


async def test_closing_twice_gives_the_same_invoices_numbered_without_gaps(rig: Rig) -> None:
    await november(rig)
    rig.at("2026-12-01T00:00:30")
    with pytest.raises(Conflict, match="not over"):  # last flushes may still come
        await rig.billing.close(ADMIN, NOVEMBER)
    rig.at("2026-12-01T00:05:00")
    created: list[str] = []

    async def outbox(session: AsyncSession, invoice: b.Invoice) -> None:
        # what a transactional outbox does: a row in the closing transaction
        created.append(f"{invoice.number} {invoice.customer_id} {invoice.total}")
        session.add(AuditEvent(at=invoice.created_at, actor="outbox", action="invoice.created",
                               target=f"invoice:{invoice.id}", changes={}))

    rig.billing.invoice_created.append(outbox)
    first = await rig.billing.close(ADMIN, NOVEMBER)
    assert created == ["INV-000001 acme 77.35", "INV-000002 gamma 20.00"]
    rig.at("2026-12-03T00:00:00")
    again = await rig.billing.close(ADMIN, NOVEMBER)
    assert again == first and len(created) == 2  # the same answer, no second event
    acme = await rig.billing.get_invoice(first.invoices[0])
    assert (acme.status, acme.number, lines(acme), acme.total) == (
        "final", "INV-000001", ACME_NOVEMBER, "77.35")
    assert await rig.billing.preview("acme", NOVEMBER) == acme
    listed = await rig.billing.list_invoices(None, NOVEMBER, 1, None)
    assert [i.number for i in listed.items] == ["INV-000001"] and listed.next_cursor == "1"
    rest = await rig.billing.list_invoices(None, None, 10, int(listed.next_cursor))
    assert [(i.number, i.customer_id) for i in rest.items] == [("INV-000002", "gamma")]

    # the period is closed to new usage; an invoice never changes afterwards
    late = await rig.report({"id": "late", "customer_id": "acme", "meter": "tokens",
                             "value": 5, "time": "2026-11-30T23:00:00Z"})
    assert [r.error for r in late.rejected] == [
        "time: the billing period 2026-11 is closed; events dated in it are no longer "
        "accepted"]
    assert await rig.billing.get_invoice(first.invoices[0]) == acme
    async with rig.catalog.sessions() as session:
        audit = (await session.scalars(select(AuditEvent.action).where(
            AuditEvent.action.in_(["billing.close", "invoice.created"])))).all()
    assert sorted(audit) == ["billing.close", "invoice.created", "invoice.created"]

    # December: acme on large all month; the numbers go on from the last one
    rig.at("2027-01-02T00:00:00")
    december = await rig.billing.close(ADMIN, DECEMBER)
    invoice = await rig.billing.get_invoice(december.invoices[0])
    assert (invoice.number, invoice.customer_id, lines(invoice)) == ("INV-000003", "acme", [
        ("large", "Large base fee", "1", "60.00", "60.00"),
        ("large", "requests", "0", "0.10", "0.00"), ("large", "tokens", "0", "0.002", "0.00")])


async def test_a_failed_close_changes_nothing_and_takes_no_number(rig: Rig) -> None:
    await november(rig)
    rig.at("2026-12-02T00:00:00")

    async def broken(session: AsyncSession, invoice: b.Invoice) -> None:
        raise RuntimeError("the outbox is broken")

    rig.billing.invoice_created.append(broken)
    with pytest.raises(RuntimeError):
        await rig.billing.close(ADMIN, NOVEMBER)
    assert await counts(rig) == (0, 0)
    rig.billing.invoice_created.clear()
    # a plan priced in November removed from the plans files: the period cannot be priced
    rig.plans[0] = build_plans([RuleFile("plans.yaml", PLANS.replace("  small:", "  tiny:"))])
    with pytest.raises(Conflict, match="plan 'small'"):
        await rig.billing.close(ADMIN, NOVEMBER)
    assert await counts(rig) == (0, 0)
    rig.plans[0] = build_plans([RuleFile("plans.yaml", PLANS)])
    closed = await rig.billing.close(ADMIN, NOVEMBER)
    assert [(await rig.billing.get_invoice(i)).number for i in closed.invoices] == [
        "INV-000001", "INV-000002"]
    assert await counts(rig) == (2, 1)


async def counts(rig: Rig) -> tuple[int, int]:
    async with rig.catalog.sessions() as session:
        invoices = await session.scalar(select(func.count()).select_from(Invoice))
        periods = await session.scalar(select(func.count()).select_from(BillingPeriod))
    return int(invoices or 0), int(periods or 0)


async def test_a_period_with_nobody_priced_closes_empty(rig: Rig) -> None:
    await rig.customer("beta", "free")
    rig.at("2026-12-02T00:00:00")
    closed = await rig.billing.close(ADMIN, NOVEMBER)
    assert closed.invoices == [] and str(closed.closed_at.date()) == "2026-12-02"
