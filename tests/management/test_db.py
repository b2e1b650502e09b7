"""The catalog's schema: migrations on SQLite and PostgreSQL match the models exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from sidecar.errors import SettingsError
from sidecar.management.db.connect import create_engine, database_url
from sidecar.management.db.migrate import current, head, upgrade
from sidecar.management.db.models import Base
from tests.management.postgres import PostgresServer


def test_urls_map_to_async_drivers(tmp_path: Path) -> None:
    assert database_url("", str(tmp_path)).render_as_string() == (
        f"sqlite+aiosqlite:///{tmp_path}/viva.db")
    pg = database_url("postgresql://u:secret@db:5432/viva", "")
    assert (pg.drivername, pg.host, pg.database) == ("postgresql+asyncpg", "db", "viva")
    assert database_url("postgres://db/viva", "").drivername == "postgresql+asyncpg"
    with pytest.raises(SettingsError, match="'mysql' is not supported"):
        database_url("mysql://db/viva", "")
    with pytest.raises(SettingsError, match="not a database URL"):
        database_url("::nonsense", "")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(database_url("", str(tmp_path / "data")).render_as_string(False))
    server: PostgresServer = request.getfixturevalue("postgres")
    return str(database_url(server.url, "").render_as_string(False))


async def test_migrations_build_exactly_the_models(url: str) -> None:
    engine = create_engine(database_url(url, ""))
    try:
        assert await current(engine) is None
        assert await upgrade(engine) == head() == "0005"
        assert await upgrade(engine) == "0005"  # idempotent

        def diff(connection: Any) -> list[Any]:
            return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))

        async with engine.connect() as connection:
            assert await connection.run_sync(diff) == []
    finally:
        await engine.dispose()


async def test_instances_starting_together_migrate_once(url: str) -> None:
    import asyncio

    engines = [create_engine(database_url(url, "")) for _ in range(3)]
    try:
        revisions = await asyncio.gather(*(upgrade(e) for e in engines))
        assert revisions == [head()] * 3
    finally:
        for engine in engines:
            await engine.dispose()


async def test_the_usage_revision_gives_existing_customers_their_plan_period(url: str) -> None:
    from sqlalchemy import text

    engine = create_engine(database_url(url, ""))
    try:
        assert await upgrade(engine, "0001") == "0001"
        async with engine.begin() as connection:
            await connection.execute(text(
                "INSERT INTO customers (id, name, plan, meta, created_at, updated_at) VALUES "
                "('acme', 'Acme', 'pro', '{}', '2026-10-05 10:00:00', '2026-10-05 10:00:00')"))
        assert await upgrade(engine, "0002_usage_billing") == "0002_usage_billing"
        async with engine.connect() as connection:
            rows = (await connection.execute(text(
                "SELECT customer_id, plan, ends_at FROM plan_periods"))).all()
        assert [tuple(r) for r in rows] == [("acme", "pro", None)]
    finally:
        await engine.dispose()


async def test_instances_registering_the_same_root_key_at_once_agree(url: str) -> None:
    """Instances starting together each register VIVA_ROOT_KEY: one inserts it, the others
    find it (a unique-key race is not a failed start)."""
    import asyncio
    import time

    from sidecar.management.catalog import Catalog
    from sidecar.management.db.connect import sessions

    engines = [create_engine(database_url(url, "")) for _ in range(4)]
    try:
        await upgrade(engines[0])
        catalogs = [Catalog(sessions(e), lambda: None, time.time) for e in engines]
        secret = "root-key-registered-by-every-instance-0123456789"
        added = await asyncio.gather(*(c.add_root_key(secret, ["admin"], "VIVA_ROOT_KEY")
                                       for c in catalogs))
        assert len({key_id for key_id, _ in added}) == 1
        assert len(await catalogs[0].root_keys()) == 1
    finally:
        for engine in engines:
            await engine.dispose()
