"""Usage metering and billing: plan periods, the decisions ledger, usage events, closed
billing periods and invoices.

Revision ID: 0002_usage_billing
Revises: 0001
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002_usage_billing"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "plan_periods",
        sa.Column("id", SERIAL, primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.String(64), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("plan", sa.String(64), nullable=False),
        sa.Column("starts_at", TIME, nullable=False),
        sa.Column("ends_at", TIME),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_plan_periods_customer_id_starts_at", "plan_periods",
                    ["customer_id", "starts_at"])
    # Customers made before this revision: on their plan since they were created.
    op.execute("INSERT INTO plan_periods (customer_id, plan, starts_at, ends_at) "
               "SELECT id, plan, created_at, deleted_at FROM customers")
    op.create_table(
        "usage_counts",
        sa.Column("customer_id", sa.String(64), primary_key=True),
        sa.Column("hour", TIME, primary_key=True),
        sa.Column("key_id", sa.String(40), primary_key=True),
        sa.Column("limit_name", sa.String(64), primary_key=True),
        sa.Column("outcome", sa.String(20), primary_key=True),
        sa.Column("plan", sa.String(64), primary_key=True),
        sa.Column("decisions", sa.BigInteger, nullable=False),
        sa.Column("hits", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_usage_counts_key_id_hour", "usage_counts", ["key_id", "hour"])
    op.create_table(
        "usage_flushes",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("at", TIME, nullable=False, index=True),
    )
    op.create_table(
        "usage_events",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(40)),
        sa.Column("meter", sa.String(64), nullable=False),
        sa.Column("occurred_at", TIME, nullable=False),
        sa.Column("hour", TIME, nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("value_micros", sa.BigInteger),
        sa.Column("unique_value", sa.String(256)),
        sa.Column("properties", JSON, nullable=False),
        sa.Column("received_at", TIME, nullable=False),
    )
    for name, columns in (("customer_meter_time", ["customer_id", "meter", "occurred_at"]),
                          ("customer_meter_hour", ["customer_id", "meter", "hour"]),
                          ("key_meter_hour", ["key_id", "meter", "hour"]),
                          ("period_received", ["period", "received_at"])):
        op.create_index(f"ix_usage_events_{name}", "usage_events", columns)
    op.create_table(
        "billing_periods",
        sa.Column("period", sa.String(7), primary_key=True),
        sa.Column("closed_at", TIME, nullable=False),
        sa.Column("closed_by", sa.String(40), nullable=False),
        sa.Column("invoices", sa.Integer, nullable=False),
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("number", sa.BigInteger, nullable=False, unique=True),
        sa.Column("customer_id", sa.String(64), nullable=False, index=True),
        sa.Column("period", sa.String(7), nullable=False, index=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("subtotal", sa.String(40), nullable=False),
        sa.Column("document", JSON, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.UniqueConstraint("customer_id", "period", name="uq_invoices_customer_id_period"),
    )


def downgrade() -> None:
    for table in ("invoices", "billing_periods", "usage_events", "usage_flushes",
                  "usage_counts", "plan_periods"):
        op.drop_table(table)
