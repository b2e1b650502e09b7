from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import FakeClock
from tests.transports.rest.kit import ENGINES, Rest, make_store, serve_rest, write_rules

STORES = ["memory", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=ENGINES)
def engine_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def rest(store_kind: str, engine_kind: str, request: pytest.FixtureRequest,
               tmp_path: Path, clock: FakeClock) -> AsyncIterator[Rest]:
    """The REST API on a real engine (Python, and native when it runs) over each store, the
    example rules and a fake clock."""
    redis = request.getfixturevalue("redis_clean") if store_kind == "redis" else None
    rules = write_rules(tmp_path / "rules", leases=engine_kind == "python")
    async with serve_rest(rules, make_store(store_kind, redis), clock=clock,
                          engine=engine_kind) as api:
        yield api
