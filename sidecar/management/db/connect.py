"""Database URLs → an async SQLAlchemy engine and session factory.

``VIVA_DATABASE_URL`` unset: an SQLite file ``<VIVA_DATA_DIR>/viva.db`` (aiosqlite, WAL).
``postgresql://…`` (or ``postgres://…``): PostgreSQL through asyncpg.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from sidecar.errors import SettingsError

_DRIVERS = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg",
            "postgresql+asyncpg": "postgresql+asyncpg", "sqlite": "sqlite+aiosqlite",
            "sqlite+aiosqlite": "sqlite+aiosqlite"}


def database_url(url: str, data_dir: str) -> URL:
    """The SQLAlchemy URL of ``url`` (default: the SQLite file in ``data_dir``)."""
    if not url:
        return make_url("sqlite+aiosqlite://").set(
            database=os.path.join(os.path.abspath(data_dir), "viva.db"))
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise SettingsError("VIVA_DATABASE_URL is not a database URL; expected "
                            "postgresql://user:password@host:5432/db or sqlite:///path") from None
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise SettingsError(f"VIVA_DATABASE_URL: {parsed.drivername!r} is not supported; "
                            "expected postgresql:// or sqlite://")
    return parsed.set(drivername=driver)


def create_engine(url: URL) -> AsyncEngine:
    """An engine for ``url``; for SQLite, its directory is created and WAL turned on (readers
    do not wait for the writer), with foreign keys and a busy timeout."""
    if url.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
    if url.database:
        os.makedirs(os.path.dirname(os.path.abspath(url.database)) or ".", exist_ok=True)
    engine = create_async_engine(url)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(connection: Any, record: Any) -> None:
    cursor = connection.cursor()
    for pragma in ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=10000",
                   "synchronous=NORMAL"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def sessions(engine: AsyncEngine) -> async_sessionmaker[Any]:
    return async_sessionmaker(engine, expire_on_commit=False)
