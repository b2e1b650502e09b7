from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.management.kit import Database
from tests.management.postgres import PostgresServer


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the session; tests that use it start from an empty schema."""
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def postgres(postgres_server: PostgresServer) -> PostgresServer:
    postgres_server.reset()
    return postgres_server


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    """The catalog on SQLite (files in tmp_path/data, the sidecar's VIVA_DATA_DIR in the
    tests) or on the session's PostgreSQL, emptied."""
    if request.param == "sqlite":
        data = tmp_path / "data"

        def files() -> bytes:
            return b"".join(p.read_bytes() for p in sorted(data.glob("viva.db*")))

        return Database({}, files)
    server: PostgresServer = request.getfixturevalue("postgres")
    return Database({"VIVA_DATABASE_URL": server.url}, server.dump)


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh catalog database: an SQLite file, or the session's PostgreSQL emptied."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'viva.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.url
