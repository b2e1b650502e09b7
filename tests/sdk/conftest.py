"""SDK tests run against a real sidecar process serving the REST API and gRPC."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator

import pytest

from tests.support import ROOT
from tests.support.servers import RedisServer
from tests.transports.rest.kit import LOOPBACK, RestSidecar, write_rules

try:  # installed with `pip install -e sdk/python[grpc]`; else straight from the source tree
    import viva_ratelimit_client  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    sys.path.insert(0, str(ROOT / "sdk" / "python" / "src"))

_NAMES = itertools.count()


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestSidecar]:
    """One sidecar per module on the memory store; hour windows so none ends mid-test."""
    rules = write_rules(tmp_path_factory.mktemp("sdk") / "rules", unit="hour")
    process = RestSidecar(rules, env=LOOPBACK).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def redis_sidecar(tmp_path_factory: pytest.TempPathFactory,
                  redis_server: RedisServer) -> Iterator[RestSidecar]:
    rules = write_rules(tmp_path_factory.mktemp("sdk-redis") / "rules", unit="hour")
    process = RestSidecar(rules, env={**LOOPBACK, "REDIS_URL": redis_server.url,
                                      "REDIS_TIMEOUT": "2s"}).start()
    yield process
    process.stop()


@pytest.fixture
def user(request: pytest.FixtureRequest) -> str:
    """An identifier no other test of the session uses (the sidecars are shared)."""
    return f"user-{request.node.name}-{next(_NAMES)}"
