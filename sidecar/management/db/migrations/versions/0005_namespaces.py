"""Rules namespaces owned by customers: their /v1/check and /v1/report decisions are counted
as the owner's usage.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "customer_namespaces",
        sa.Column("namespace", sa.String(64), primary_key=True),
        sa.Column("customer_id", sa.String(64), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
    )
    op.create_index("ix_customer_namespaces_customer_id", "customer_namespaces",
                    ["customer_id"])


def downgrade() -> None:
    op.drop_index("ix_customer_namespaces_customer_id", "customer_namespaces")
    op.drop_table("customer_namespaces")
