from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.servers import RedisServer
from tests.topologies import redis_cluster, redis_sentinel  # noqa: F401


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the session; tests flush what they use."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def redis_clean(redis_server: RedisServer) -> Iterator[RedisServer]:
    client = redis_server.client()
    client.flushall()
    client.close()
    yield redis_server


class FakeClock:
    """Injected time: tests move it instead of sleeping."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
