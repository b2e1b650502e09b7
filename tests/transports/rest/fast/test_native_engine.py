"""The fast HTTP/1.1 path on the native engine: the check endpoints answered inside Rust (no
call reaches Python's endpoints), counted under the same metrics as the general path, on the
memory store and on Redis (held for the event-loop turn's batch, answered in request order).
The byte-for-byte comparison with the other paths is in test_parity.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sidecar.storage.base import Store
from sidecar.storage.memory import MemoryStore
from sidecar.storage.redis.options import RedisOptions
from sidecar.storage.redis.store import RedisStore
from sidecar.transports.http1 import Http1Options
from sidecar.transports.rest.fast import FastRest
from tests.conftest import FakeClock
from tests.support.servers import RedisServer
from tests.transports.rest.fast.wire import exchange, request
from tests.transports.rest.kit import ENGINES, Rest, serve_rest, write_rules
from tests.transports.test_observability import sample

pytestmark = pytest.mark.skipif("native" not in ENGINES, reason="the native engine does not run")

FORWARD = {"X-Forwarded-For": "10.0.0.1", "X-RateLimit-Namespace": "api_requests"}


def post(path: str, body: dict[str, Any]) -> bytes:
    return request("POST", path, json.dumps(body).encode())


# One of each endpoint (and a HEAD), pipelined: a counter of 3 a minute reaches its limit.
PIPELINE = b"".join([
    post("/v1/check", {"namespace": "api_requests", "identifier": "10.0.0.1"}),
    post("/v1/report", {"namespace": "api_requests", "identifier": "10.0.0.1"}),
    request("GET", "/v1/forward-auth/some/path", headers=FORWARD),
    request("HEAD", "/v1/forward-auth", headers=FORWARD),
    post("/json", {"domain": "api_requests", "descriptors": [
        {"entries": [{"key": "identifier", "value": "10.0.0.1"}]}]}),
])


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def native(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock,
                 monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Rest, list[Any]]]:
    """The fast path on the native engine; the calls that reach Python's endpoints."""
    reached: list[Any] = []
    python_call = FastRest.call

    async def call(self: FastRest, item: Any) -> bytes:
        reached.append(item)
        return await python_call(self, item)

    monkeypatch.setattr(FastRest, "call", call)
    store: Store = MemoryStore()
    if request.param == "redis":
        redis = request.getfixturevalue("redis_clean")
        store = RedisStore(RedisOptions(url=redis.url, timeout=5.0))
    async with serve_rest(write_rules(tmp_path / "rules", leases=False), store, clock=clock,
                          fast=True, engine="native") as api:
        yield api, reached


async def test_every_endpoint_is_answered_inside_rust(native: tuple[Rest, list[Any]]) -> None:
    api, reached = native
    got = await asyncio.to_thread(exchange, api.port, PIPELINE, 5,
                                  [False, False, False, True, False])
    assert got.statuses == [200, 200, 200, 429, 429]
    assert b'"remaining": 2' in got.answers[0] and b'"remaining": 1' in got.answers[1]
    assert b'"remaining": 0' in got.answers[2]
    assert got.answers[3].endswith(b"\r\n\r\n")  # HEAD: no body
    assert b'"overallCode": "OVER_LIMIT"' in got.answers[4]
    assert reached == []  # no call became a Python object
    assert api.native is not None and api.native.http1_service is not None


async def test_counted_as_the_general_path_counts(native: tuple[Rest, list[Any]]) -> None:
    api, _ = native
    await asyncio.to_thread(exchange, api.port, PIPELINE, 5, [False, False, False, True, False])
    assert api.metrics is not None
    text = api.metrics.exposition().decode()
    requests = "ratelimit_service_total_requests_total"
    counted = {m: sample(text, requests, grpc_method=m)
               for m in ("rest_check", "rest_report", "forward_auth", "json")}
    assert counted == {"rest_check": 1, "rest_report": 1, "forward_auth": 2, "json": 1}
    assert sample(text, "ratelimit_service_response_time_seconds_count",
                  grpc_method="forward_auth") == 2
    assert sample(text, "viva_ratelimit_in_flight_requests", transport="http") == 0
    hits = sample(text, "ratelimit_service_rate_limit_total_hits_total",
                  domain="api_requests", key1="identifier")
    assert hits == 5

async def test_errors_are_counted_by_kind(tmp_path: Path, clock: FakeClock) -> None:
    async with serve_rest(write_rules(tmp_path / "rules", leases=False), MemoryStore(),
                          clock=clock, fast=True, engine="native", load=False) as api:
        got = await asyncio.to_thread(exchange, api.port, PIPELINE, 5,
                                      [False, False, False, True, False])
        assert got.statuses == [503] * 5
        assert api.metrics is not None
        text = api.metrics.exposition().decode()
    errors = "ratelimit_service_should_rate_limit_error_total"
    assert sample(text, errors, err_type="no_config") == 5


@pytest.mark.redis
async def test_held_calls_across_many_reads_keep_their_order(tmp_path: Path, clock: FakeClock,
                                                             redis_clean: RedisServer) -> None:
    """300 pipelined checks in reads of 777 bytes, at most 8 waiting at a time: reading
    pauses while batches are out and resumes as their answers are delivered, in order."""
    store = RedisStore(RedisOptions(url=redis_clean.url, timeout=5.0))
    async with serve_rest(write_rules(tmp_path / "rules", leases=False), store, clock=clock,
                          fast=True, engine="native", http1=Http1Options(max_pending=8)) as api:
        bodies = [{"namespace": "shop", "descriptors": [[{"key": "user", "value": f"u{i % 7}"}]]}
                  for i in range(300)]
        data = b"".join(post("/v1/check", body) for body in bodies)
        pieces = [data[i:i + 777] for i in range(0, len(data), 777)]
        got = await asyncio.to_thread(exchange, api.port, pieces, len(bodies), timeout=20)
        assert api.native is not None and api.native.redis is not None
        assert 1 < api.native.redis.batches < len(bodies)
    assert got.statuses == [200] * len(bodies)
    # per_user allows 5 a minute: each user's first five are allowed, in request order
    seen: dict[int, int] = {}
    for i, answer in enumerate(got.answers):
        seen[i % 7] = seen.get(i % 7, 0) + 1
        allowed = b'{"allowed": true' in answer
        assert allowed == (seen[i % 7] <= 5), (i, answer)
        if allowed:
            assert f'"remaining": {5 - seen[i % 7]},'.encode() in answer, (i, answer)
