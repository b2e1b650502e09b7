"""Envoy's own gRPC client (the ratelimit filter) against the fast transport: the shipped
bootstrap (deploy/envoy/envoy.yaml) and rules (config/example.yaml), with H2Server in place of
the sidecar's grpcio server, including a restart of the server under Envoy's feet."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest

from sidecar.h2 import H2Options
from tests.e2e.envoy import EnvoyProcess
from tests.h2.conftest import ThreadedServer, make_engine
from tests.support import ROOT
from tests.support.ports import eventually

# Also on the whole native path: the native engine answering inside Rust (conftest.py).
RUST_ENGINE = True

Serve = Callable[..., ThreadedServer]
RULES = (ROOT / "config" / "example.yaml").read_text()
FAILED_OPEN = "cluster.backend.ratelimit.failure_mode_allowed"
OVER_LIMIT = "cluster.backend.ratelimit.over_limit"
_paths = itertools.count()


def fresh_path() -> str:
    return f"/api/item-{next(_paths)}"  # /api/* allows 1000/s: every call is answered OK


@pytest.fixture
def envoy_for(request: pytest.FixtureRequest) -> Iterator[Callable[[int], EnvoyProcess]]:
    started: list[EnvoyProcess] = []

    def start(grpc_port: int) -> EnvoyProcess:
        envoy = EnvoyProcess.shipped(grpc_port).start()
        started.append(envoy)
        return envoy

    yield start
    for envoy in started:
        envoy.stop()


@pytest.mark.envoy
def test_envoy_rate_limits_through_the_fast_transport(
        serve: Serve, envoy_for: Callable[[int], EnvoyProcess]) -> None:
    server = serve(make_engine(RULES), H2Options(eager_start=True))
    envoy = envoy_for(server.port)
    replies = [envoy.request("/slow") for _ in range(5)]
    assert [r.status for r in replies] == [200, 200, 200, 429, 429]
    assert replies[0].headers["x-ratelimit-limit"].startswith("3")
    assert [envoy.request(fresh_path()).status for _ in range(50)] == [200] * 50
    assert envoy.stat(FAILED_OPEN) == 0  # every decision came from the sidecar
    assert envoy.stat(OVER_LIMIT) == 2


@pytest.mark.envoy
def test_envoy_rides_out_a_restart_of_the_fast_transport(
        serve: Serve, envoy_for: Callable[[int], EnvoyProcess]) -> None:
    engine = make_engine(RULES)
    first = serve(engine)
    envoy = envoy_for(first.port)
    assert envoy.request(fresh_path()).status == 200
    first.stop(grace=2.0)  # GOAWAY to Envoy's connection, then closed
    down = [envoy.request(fresh_path()) for _ in range(3)]
    assert [r.status for r in down] == [200] * 3  # failure_mode_deny: false lets them pass
    assert envoy.stat(FAILED_OPEN) == 3
    serve(engine, port=first.port)  # back on the same port: Envoy reconnects by itself
    eventually(lambda: envoy.request("/slow").status == 200 and envoy.stat(FAILED_OPEN) == 3)
    statuses = [envoy.request("/slow").status for _ in range(3)]
    assert statuses[-1] == 429
