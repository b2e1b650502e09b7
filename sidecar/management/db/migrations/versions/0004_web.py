"""The web pages: dashboard and portal sessions, one-time portal links, and an index by
hour on the usage ledger (the overview reads every customer's last hours).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False, index=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("expires_at", TIME, nullable=False, index=True),
    )
    op.create_table(
        "portal_links",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("customer_id", sa.String(64), sa.ForeignKey("customers.id"), nullable=False,
                  index=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("expires_at", TIME, nullable=False, index=True),
        sa.Column("used_at", TIME),
    )
    op.create_index("ix_usage_counts_hour", "usage_counts", ["hour"])


def downgrade() -> None:
    op.drop_index("ix_usage_counts_hour", "usage_counts")
    op.drop_table("portal_links")
    op.drop_table("web_sessions")
