from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sidecar.management.db.connect import create_engine, database_url, sessions
from sidecar.management.db.migrate import upgrade
from sidecar.management.plans import PlanSet, build_plans
from sidecar.rules.loader import RuleFile
from tests.management.alerts.receiver import Receiver
from tests.management.kit import PLANS
from tests.management.postgres import PostgresServer

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Sessions]:
    """A migrated catalog on SQLite or a real PostgreSQL."""
    url = ""
    if request.param == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres")
        url = server.url
    engine = create_engine(database_url(url, str(tmp_path / "data")))
    await upgrade(engine)
    yield sessions(engine)
    await engine.dispose()


@pytest.fixture
def plans() -> PlanSet:
    return build_plans([RuleFile("plans.yaml", textwrap.dedent(PLANS))])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()
