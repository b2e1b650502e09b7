"""Alembic migrations, run in-process on the catalog's own engine (no alembic.ini needed).

Several instances may start at once on one database: on PostgreSQL the upgrade runs in one
transaction under an advisory lock; on SQLite (whose DDL Alembic does not wrap in a
transaction) under an exclusive lock on a file beside the database. Either way one of them
migrates and the others then find the schema current.
"""

from __future__ import annotations

import asyncio
import fcntl
from pathlib import Path
from typing import IO, Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_LOCK_ID = 0x76697661  # "viva": the advisory lock that serialises upgrades on PostgreSQL


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head() -> str:
    return str(ScriptDirectory.from_config(alembic_config()).get_current_head())


async def upgrade(engine: AsyncEngine, revision: str = "head") -> str:
    """Bring the database to ``revision``; returns the revision it is at afterwards."""
    path = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
    if not path or path == ":memory:":
        return await _upgrade_locked(engine, revision)
    lock = await asyncio.to_thread(_lock_file, f"{path}.migrate-lock")
    try:
        return await _upgrade_locked(engine, revision)
    finally:
        lock.close()  # releases the flock


def _lock_file(path: str) -> IO[bytes]:
    handle = open(path, "ab")  # noqa: SIM115 - held until the upgrade is done
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


async def _upgrade_locked(engine: AsyncEngine, revision: str) -> str:
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(text(f"SELECT pg_advisory_xact_lock({_LOCK_ID})"))
        return str(await connection.run_sync(_upgrade, revision))


def _upgrade(connection: Any, revision: str) -> str | None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
    return MigrationContext.configure(connection).get_current_revision()


async def current(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda c: MigrationContext.configure(c).get_current_revision())
