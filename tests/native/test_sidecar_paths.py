"""The native path in the running sidecar: which engine runs for which store, one set of
counters behind every transport (the fast transport's calls answered inside Rust, gRPC over
grpcio, /json, REST), Redis calls of many concurrent callers in shared batches, rules reloads
reaching the native engine, and the counts kept in Rust on /metrics."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import ModuleType

import aiohttp
import pytest

from sidecar.native_path import python_engine_reason
from sidecar.settings import Settings
from tests.support.servers import RedisServer
from tests.transports.kit import RULES, Running, descriptor, request, rls_stub, running
from tests.transports.test_observability import sample

THREE = ("three", "shared")


@pytest.mark.parametrize(("env", "reason"), [
    ({}, None),
    ({"BACKEND_TYPE": "redis", "REDIS_URL": "127.0.0.1:1"}, None),
    ({"REDIS_URL": "m,127.0.0.1:1", "REDIS_TYPE": "sentinel"},
     "REDIS_TYPE=sentinel is not native yet"),
    ({"REDIS_URL": "127.0.0.1:1", "REDIS_TYPE": "cluster"}, "REDIS_TYPE=cluster is not native yet"),
    ({"REDIS_URL": "127.0.0.1:1", "REDIS_PERSECOND": "true", "REDIS_PERSECOND_URL": "h:2"},
     "REDIS_PERSECOND is not native yet"),
])
def test_which_stores_the_native_engine_runs(env: dict[str, str], reason: str | None) -> None:
    settings = Settings.load(env=env)
    assert python_engine_reason(settings, tracing=False) == reason
    assert python_engine_reason(settings, tracing=True) == "OpenTelemetry tracing is on"


async def remaining_over_grpc(app: Running) -> int:
    async with rls_stub(app.grpc_address) as stub:
        reply = await stub.ShouldRateLimit(request("test-domain", descriptor(THREE)))
    return int(reply.statuses[0].limit_remaining)


async def remaining_over_json(http: aiohttp.ClientSession, app: Running) -> int:
    body = {"domain": "test-domain", "descriptors": [{"entries": [
        {"key": THREE[0], "value": THREE[1]}]}]}
    async with http.post(f"{app.http_url}/json", data=json.dumps(body)) as resp:
        assert resp.status == 200, await resp.text()
        return int((await resp.json())["statuses"][0]["limitRemaining"])


async def rest_check(http: aiohttp.ClientSession, app: Running) -> int:
    body = {"namespace": "test-domain", "descriptors": [[{"key": THREE[0], "value": THREE[1]}]]}
    async with http.post(f"{app.http_url}/v1/check", data=json.dumps(body)) as resp:
        return resp.status


def store_env(store: str, redis: RedisServer) -> dict[str, str]:
    if store == "memory":
        return {}
    return {"BACKEND_TYPE": "redis", "REDIS_URL": f"127.0.0.1:{redis.port}",
            "REDIS_TIMEOUT": "2s"}


@pytest.mark.redis
@pytest.mark.parametrize("transport", ["fast", "grpcio"])
@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_every_transport_counts_on_one_native_engine(
        tmp_path: Path, native: ModuleType, redis_clean: RedisServer, store: str,
        transport: str) -> None:
    env = {**store_env(store, redis_clean), "VIVA_TRANSPORT": transport, "VIVA_NATIVE": "true"}
    timeout = aiohttp.ClientTimeout(total=5)
    async with running(tmp_path, env=env) as app, aiohttp.ClientSession(timeout=timeout) as http:
        assert app.sidecar.native is not None
        if transport == "fast":
            assert app.sidecar.native.fast_service is not None  # calls answered in Rust
        assert await remaining_over_grpc(app) == 2
        assert await remaining_over_json(http, app) == 1
        assert await rest_check(http, app) == 200
        assert await remaining_over_grpc(app) == 0  # the fourth: over the limit of 3
        if store == "redis":
            (key,) = redis_clean.client().keys("test-domain_three_shared_*")
            assert redis_clean.client().get(key) == "4"
        async with http.get(f"{app.http_url}/metrics") as resp:
            text = await resp.text()
    labels = {"domain": "test-domain", "key1": "three", "key2": ""}
    assert sample(text, "ratelimit_service_rate_limit_total_hits_total", **labels) == 4
    assert sample(text, "ratelimit_service_rate_limit_over_limit_total", **labels) == 1
    assert sample(text, "ratelimit_service_total_requests_total",
                  grpc_method="ShouldRateLimit") == 2


@pytest.mark.redis
async def test_concurrent_calls_share_redis_batches(tmp_path: Path, native: ModuleType,
                                                    redis_clean: RedisServer) -> None:
    rules = RULES.replace("requests_per_unit: 3}", "requests_per_unit: 100000}")
    env = store_env("redis", redis_clean)
    async with running(tmp_path, {"rules.yaml": rules}, env=env) as app, \
            rls_stub(app.grpc_address) as stub:
        redis = app.sidecar.native.redis  # type: ignore[union-attr]
        assert redis is not None
        before = redis.batches
        replies = await asyncio.gather(*(
            stub.ShouldRateLimit(request("test-domain", descriptor(THREE)), timeout=5)
            for _ in range(200)))
        batches = redis.batches - before
    assert sorted(r.statuses[0].limit_remaining for r in replies) == \
        list(range(100000 - 200, 100000))
    assert 1 <= batches < 200, batches
    (key,) = redis_clean.client().keys("test-domain_three_shared_*")
    assert redis_clean.client().get(key) == "200"


async def test_a_rules_reload_reaches_the_native_engine(tmp_path: Path,
                                                        native: ModuleType) -> None:
    async with running(tmp_path) as app:
        assert await remaining_over_grpc(app) == 2
        (app.rules_dir / "rules.yaml").write_text(
            RULES.replace("requests_per_unit: 3}", "requests_per_unit: 30}"))

        async def reloaded() -> bool:
            return await remaining_over_grpc(app) > 20

        deadline = asyncio.get_running_loop().time() + 10
        while not await reloaded():
            assert asyncio.get_running_loop().time() < deadline, "the new rules never applied"
            await asyncio.sleep(0.1)


async def test_the_start_up_line_says_which_path_runs(tmp_path: Path, native: ModuleType,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="sidecar.app")
    async with running(tmp_path):
        pass
    async with running(tmp_path / "python", env={"VIVA_NATIVE": "false"}):
        pass
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("hot path")]
    assert lines == [
        f"hot path: native (sidecar._native {native.__version__}): HTTP/2 wire in Rust, "
        "engine in Rust on its memory store, calls answered in Rust",
        "hot path: pure Python (VIVA_NATIVE=false)"]


CONCURRENCY = RULES + """
  - key: socket
    rate_limit: {algorithm: concurrency, max: 2, lease_ttl: 60s}
"""


async def test_concurrency_limits_choose_the_python_engine(tmp_path: Path, native: ModuleType,
                                                           caplog: pytest.LogCaptureFixture
                                                           ) -> None:
    caplog.set_level("INFO", logger="sidecar.app")
    async with running(tmp_path, {"rules.yaml": CONCURRENCY}) as app, aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=5)) as http:
        assert app.sidecar.native is None
        body = {"namespace": "test-domain", "descriptors": [[{"key": "socket", "value": "u"}]]}
        async with http.post(f"{app.http_url}/v1/leases", data=json.dumps(body)) as resp:
            lease = await resp.json()
    assert lease["allowed"] is True and lease["lease_id"], lease  # a slot really held
    assert lease["limit"] == 2
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("hot path")]
    assert lines == [
        f"hot path: native (sidecar._native {native.__version__}): HTTP/2 wire in Rust, "
        "engine in Python (the rules have concurrency limits (leases), which are not native yet)"]


async def test_a_reload_bringing_concurrency_limits_is_refused_on_the_native_engine(
        tmp_path: Path, native: ModuleType, caplog: pytest.LogCaptureFixture) -> None:
    async with running(tmp_path) as app:
        assert app.sidecar.native is not None
        assert await remaining_over_grpc(app) == 2
        (app.rules_dir / "rules.yaml").write_text(
            CONCURRENCY.replace("requests_per_unit: 3}", "requests_per_unit: 30}"))
        manager = app.sidecar.rules
        deadline = asyncio.get_running_loop().time() + 10
        while manager.last_exception is None:
            assert asyncio.get_running_loop().time() < deadline, "the reload was never tried"
            await asyncio.sleep(0.1)
        assert await remaining_over_grpc(app) == 1  # the old rules are still in force
    message = str(manager.last_exception)
    assert "test-domain.socket: algorithm concurrency runs on the Python engine" in message
    assert "restart it to load these rules, or set VIVA_NATIVE=0" in message
