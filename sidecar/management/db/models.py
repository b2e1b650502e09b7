"""The catalog's tables (SQLAlchemy 2 declarative models).

    customers     who pays: a plan, optional limit overrides, free-form meta
    customer_namespaces  the rules namespaces (domains) a customer owns: their /v1/check
                  decisions are counted as its usage; a namespace has one owner at most
    api_keys      a customer's keys: SHA-256 only, display start, overrides, expiry, revocation
    root_keys     admin credentials with scopes (SHA-256 only)
    audit_events  every admin mutation: actor, action, target, changed fields (never secrets)
    changes       the change log other instances poll to drop what they cached (cache.py)
    plan_periods  which plan a customer was on, from when to when (proration, pricing)
    usage_counts  the decisions ledger: per customer, key, refusing limit, outcome, plan and
                  hour, added to by every instance (usage/ledger.py)
    usage_flushes the ids of the ledger batches already written (a retried batch counts once)
    usage_events  reported usage events, unique by id (idempotency), kept per billing period
    billing_periods  closed periods (no event may be added to one)
    invoices      final invoices: gapless numbers, one per customer and period, immutable
    webhook_endpoints   where events are delivered; the signing secret sealed (alerts/sealing)
    webhook_events      the outbox: one row per event, its JSON body exactly as signed
    webhook_deliveries  one per event and subscribed endpoint: state, next attempt, lease
    webhook_attempts    every delivery attempt: status code, error, duration (never a secret)
    alert_marks         what was already announced (a threshold in a period, a key's expiry)
    web_sessions  signed-in dashboard and portal browsers (SHA-256 of the cookie only)
    portal_links  one-time portal links (SHA-256 of the token only), 15 minutes, single use

Ids are text (``cus_…``, ``key_…``) so that later tables (usage ledger, invoices, webhooks)
can refer to a customer or a key without a join on a surrogate. Times are UTC; SQLite keeps
them as naive text, so UtcDateTime puts the zone back on the way out.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

Json = JSON().with_variant(JSONB(), "postgresql")
# SQLite gives autoincrement only to an INTEGER PRIMARY KEY (a rowid alias).
Serial = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: the catalog stores UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime(),
                                                     dict[str, Any]: Json}


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    plan: Mapped[str] = mapped_column(String(64), index=True)
    meta: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    limits: Mapped[list[dict[str, Any]] | None] = mapped_column(Json)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]


class CustomerNamespace(Base):
    """A rules namespace (a domain) owned by a customer; the primary key keeps it to one
    owner, whatever instances write at once. A deleted customer's rows are deleted with it."""

    __tablename__ = "customer_namespaces"

    namespace: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    created_at: Mapped[datetime]


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    start: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    limits: Mapped[list[dict[str, Any]] | None] = mapped_column(Json)
    meta: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    rotated_from: Mapped[str | None] = mapped_column(String(40))


class RootKey(Base):
    __tablename__ = "root_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    start: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(200))
    scopes: Mapped[list[str]] = mapped_column(Json)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_target_id", "target", "id"),
                      {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(String(80))
    changes: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)


class Change(Base):
    """One row per committed mutation that a cache may hold (written in the same
    transaction); ids only grow (sqlite_autoincrement never reuses one)."""

    __tablename__ = "changes"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(20))
    key_id: Mapped[str | None] = mapped_column(String(40))
    customer_id: Mapped[str | None] = mapped_column(String(64))
    key_hash: Mapped[str | None] = mapped_column(String(64))


class PlanPeriod(Base):
    """A customer's plan from ``starts_at`` until ``ends_at`` (None: still in force); written
    in the transaction that creates the customer, changes its plan or deletes it."""

    __tablename__ = "plan_periods"
    __table_args__ = (Index("ix_plan_periods_customer_id_starts_at", "customer_id",
                            "starts_at"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    plan: Mapped[str] = mapped_column(String(64))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime | None]


class UsageCount(Base):
    """Decisions of one hour: every instance adds its own counts (``+=``), never sets them.
    ``limit_name`` is the limit that refused the decision ('' when none did)."""

    __tablename__ = "usage_counts"
    # hour: the pages read every customer's decisions of the last hours (migration 0004).
    __table_args__ = (Index("ix_usage_counts_key_id_hour", "key_id", "hour"),
                      Index("ix_usage_counts_hour", "hour"))

    customer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    key_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    limit_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(20), primary_key=True)
    plan: Mapped[str] = mapped_column(String(64), primary_key=True)
    decisions: Mapped[int] = mapped_column(BigInteger)
    hits: Mapped[int] = mapped_column(BigInteger)


class UsageFlush(Base):
    __tablename__ = "usage_flushes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)


class UsageEvent(Base):
    """One reported event. ``value_micros`` is the value in millionths (exact sums in SQL on
    every database); ``unique_value`` is what a unique_count meter counts."""

    __tablename__ = "usage_events"
    __table_args__ = (
        Index("ix_usage_events_customer_meter_time", "customer_id", "meter", "occurred_at"),
        Index("ix_usage_events_customer_meter_hour", "customer_id", "meter", "hour"),
        Index("ix_usage_events_key_meter_hour", "key_id", "meter", "hour"),
        Index("ix_usage_events_period_received", "period", "received_at"),
    )

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str | None] = mapped_column(String(40))
    meter: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime]
    hour: Mapped[datetime]
    period: Mapped[str] = mapped_column(String(7))
    value_micros: Mapped[int | None] = mapped_column(BigInteger)
    unique_value: Mapped[str | None] = mapped_column(String(256))
    properties: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    received_at: Mapped[datetime]


class BillingPeriod(Base):
    __tablename__ = "billing_periods"

    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    closed_at: Mapped[datetime]
    closed_by: Mapped[str] = mapped_column(String(40))
    invoices: Mapped[int] = mapped_column(Integer)


class Invoice(Base):
    """A final invoice; ``document`` is the whole invoice as the API shows it, written once."""

    __tablename__ = "invoices"
    __table_args__ = (UniqueConstraint("customer_id", "period",
                                       name="uq_invoices_customer_id_period"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger, unique=True)
    customer_id: Mapped[str] = mapped_column(String(64), index=True)
    period: Mapped[str] = mapped_column(String(7), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    subtotal: Mapped[str] = mapped_column(String(40))
    document: Mapped[dict[str, Any]] = mapped_column(Json)
    created_at: Mapped[datetime]


class WebhookEndpoint(Base):
    """A receiver of events. ``secret`` is the signing secret sealed with VIVA_SECRET_KEY
    (AES-GCM, bound to the row's id): it must be recoverable to sign, so it cannot be hashed."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(Json)
    description: Mapped[str | None] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    secret: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]


class WebhookEvent(Base):
    """One event in the outbox, written in the transaction of the change that caused it.
    ``body`` is the JSON sent, byte for byte, on every attempt (what the signature covers)."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # msg_…: webhook-id
    type: Mapped[str] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(index=True)


class WebhookDelivery(Base):
    """One event for one endpoint: pending until delivered, or failed once retried for the
    whole retry period. A dispatcher holds a pending row while it sends (lease_owner and
    lease_until); a lease that runs out (a crashed instance) makes the row claimable again."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
                      Index("ix_webhook_deliveries_endpoint_id", "endpoint_id", "id"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("webhook_events.id"), index=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"))
    status: Mapped[str] = mapped_column(String(12))  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    give_up_at: Mapped[datetime]
    lease_owner: Mapped[str | None] = mapped_column(String(40))
    lease_until: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Serial, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    at: Mapped[datetime]
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(300))
    duration_ms: Mapped[int] = mapped_column(Integer)


class AlertMark(Base):
    """An alert already raised: its primary key makes it once, across instances
    (usage.threshold: customer and limit, window start, threshold; key.expiring: key, expiry)."""

    __tablename__ = "alert_marks"

    kind: Mapped[str] = mapped_column(String(40), primary_key=True)
    subject: Mapped[str] = mapped_column(String(200), primary_key=True)
    period: Mapped[str] = mapped_column(String(40), primary_key=True)
    level: Mapped[str] = mapped_column(String(16), primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)


class WebSession(Base):
    """A signed-in browser (web/sessions.py): the dashboard's (subject: a root key id) or the
    portal's (subject: a customer id). Only the SHA-256 of the cookie's secret is kept."""

    __tablename__ = "web_sessions"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


class PortalLink(Base):
    """A one-time portal link: the SHA-256 of its token, for one customer, used at most once."""

    __tablename__ = "portal_links"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]
