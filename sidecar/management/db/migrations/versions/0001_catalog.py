"""The catalog: customers, API keys, root keys, the audit log and the change log.

Revision ID: 0001
Revises:
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320)),
        sa.Column("plan", sa.String(64), nullable=False, index=True),
        sa.Column("meta", JSON, nullable=False),
        sa.Column("limits", JSON),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.Column("deleted_at", TIME),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("customer_id", sa.String(64), sa.ForeignKey("customers.id"), nullable=False,
                  index=True),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.Column("start", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200)),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("limits", JSON),
        sa.Column("meta", JSON, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.Column("expires_at", TIME),
        sa.Column("revoked_at", TIME),
        sa.Column("rotated_from", sa.String(40)),
    )
    op.create_table(
        "root_keys",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.Column("start", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200)),
        sa.Column("scopes", JSON, nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("revoked_at", TIME),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", SERIAL, primary_key=True, autoincrement=True),
        sa.Column("at", TIME, nullable=False),
        sa.Column("actor", sa.String(40), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("target", sa.String(80), nullable=False),
        sa.Column("changes", JSON, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_events_target_id", "audit_events", ["target", "id"])
    op.create_table(
        "changes",
        sa.Column("id", SERIAL, primary_key=True, autoincrement=True),
        sa.Column("at", TIME, nullable=False, index=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("key_id", sa.String(40)),
        sa.Column("customer_id", sa.String(64)),
        sa.Column("key_hash", sa.String(64)),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    for table in ("changes", "audit_events", "root_keys", "api_keys", "customers"):
        op.drop_table(table)
