"""Alembic environment: migrations run on the connection handed over by migrate.py."""

from __future__ import annotations

from alembic import context

from sidecar.management.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through 'viva-ratelimit db upgrade' (sidecar/management/"
                       "db/migrate.py), which hands Alembic its connection")
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
