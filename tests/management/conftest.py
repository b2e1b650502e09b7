from __future__ import annotations

from collections.abc import Iterator

import pytest

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
