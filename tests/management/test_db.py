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
        assert await upgrade(engine) == head()
        assert await upgrade(engine) == head()  # idempotent

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
