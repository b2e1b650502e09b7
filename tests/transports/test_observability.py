"""Metrics after real traffic, bounded cardinality, JSON logs and OpenTelemetry spans."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from sidecar.observability.metrics import OVERFLOW_LABEL, Metrics
from tests.support.paths import native_runs
from tests.support.ports import eventually
from tests.support.servers import SidecarProcess

RULES = """\
domain: obs
descriptors:
  - key: user
    rate_limit: {unit: hour, requests_per_unit: 2}
  - key: detailed
    detailed_metric: true
    rate_limit: {unit: hour, requests_per_unit: 100}
"""


def call(address: str, key: str, value: str, n: int = 1) -> list[int]:
    with grpc.insecure_channel(address) as channel:
        stub = rls_pb2_grpc.RateLimitServiceStub(channel)
        desc = ratelimit_pb2.RateLimitDescriptor(entries=[{"key": key, "value": value}])
        request = rls_pb2.RateLimitRequest(domain="obs", descriptors=[desc])
        return [stub.ShouldRateLimit(request, timeout=5).overall_code for _ in range(n)]


def scrape(sidecar: SidecarProcess, port: int | None = None) -> str:
    url = f"http://127.0.0.1:{port or sidecar.http_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def start(tmp_path: Path, env: dict[str, str]) -> SidecarProcess:
    (tmp_path / "rules.yaml").write_text(RULES)
    return SidecarProcess(tmp_path, env=env).start()


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[SidecarProcess]:
    process = start(tmp_path, {"LOG_FORMAT": "json"})
    yield process
    process.stop()


@pytest.fixture
def traced_sidecar(tmp_path: Path) -> Iterator[SidecarProcess]:
    """Spans go to the console exporter (the process' stdout), flushed every 50 ms."""
    process = start(tmp_path, {"OTEL_TRACES_EXPORTER": "console",
                               "OTEL_BSP_SCHEDULE_DELAY": "50"})
    yield process
    process.stop()


def test_metrics_move_with_traffic_and_logs_are_json(sidecar: SidecarProcess) -> None:
    assert call(sidecar.grpc_address, "user", "alice", 3) == [1, 1, 2]
    text = scrape(sidecar)
    labels = {"domain": "obs", "key1": "user", "key2": ""}
    assert sample(text, "ratelimit_service_rate_limit_total_hits_total", **labels) == 3
    assert sample(text, "ratelimit_service_rate_limit_within_limit_total", **labels) == 2
    assert sample(text, "ratelimit_service_rate_limit_over_limit_total", **labels) == 1
    assert sample(text, "ratelimit_service_rate_limit_near_limit_total", **labels) == 1
    assert sample(text, "ratelimit_service_response_time_seconds_count",
                  grpc_method="ShouldRateLimit") == 3
    assert sample(text, "ratelimit_service_total_requests_total",
                  grpc_method="ShouldRateLimit") == 3
    assert sample(text, "ratelimit_service_config_load_success_total") == 1
    assert sample(text, "viva_ratelimit_in_flight_requests", transport="grpcio") == 0
    assert sample(text, "viva_ratelimit_build_info") == 1
    # The native engine's memory store is part of the engine: no round trips to time.
    assert sample(text, "viva_ratelimit_store_latency_seconds_count", store="memory",
                  op="run") == (0 if native_runs() else 3)
    # The debug port serves the same registry.
    assert "ratelimit_service_rate_limit_total_hits_total" in scrape(sidecar, sidecar.debug_port)
    # Structured logs: every line is one JSON object, and no descriptor value is logged.
    sidecar.stop()
    lines = [line for line in sidecar.log().splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    assert records and all({"@timestamp", "level", "@message"} <= set(r) for r in records)
    assert "alice" not in sidecar.log()


def test_spans_for_calls_and_store(traced_sidecar: SidecarProcess) -> None:
    call(traced_sidecar.grpc_address, "user", "bob")

    def spans() -> list[str]:
        names = re.findall(r'"name": "([^"]+)"', traced_sidecar.log())
        return names if {"ShouldRateLimit", "store"} <= set(names) else []

    assert eventually(spans, timeout=5)


def test_key_only_rules_keep_one_series_for_any_number_of_values(
        sidecar: SidecarProcess) -> None:
    with grpc.insecure_channel(sidecar.grpc_address) as channel:
        stub = rls_pb2_grpc.RateLimitServiceStub(channel)
        for i in range(10_000):
            desc = ratelimit_pb2.RateLimitDescriptor(entries=[{"key": "user", "value": f"u{i}"}])
            stub.ShouldRateLimit(rls_pb2.RateLimitRequest(domain="obs", descriptors=[desc]),
                                 timeout=5)
    text = scrape(sidecar)
    series = [line for line in text.splitlines()
              if line.startswith("ratelimit_service_rate_limit_total_hits_total{")]
    assert len(series) == 1
    assert sample(text, "ratelimit_service_rate_limit_total_hits_total", key1="user") == 10_000


def test_values_in_labels_are_capped() -> None:
    metrics = Metrics()
    metrics.max_series = 50
    for i in range(200):
        metrics.record("obs", f"obs.detailed_v{i}", 1, 0, 0, 1, 0)
        metrics.domain_not_found(f"unknown{i}")
    text = metrics.exposition().decode()
    series = [line for line in text.splitlines()
              if line.startswith("ratelimit_service_rate_limit_total_hits_total{")]
    assert len(series) == 51  # 50 own series + the overflow one
    assert sample(text, "ratelimit_service_rate_limit_total_hits_total",
                  key1=OVERFLOW_LABEL) == 150
    assert sample(text, "viva_ratelimit_metric_series_folded_total") == 150


async def test_store_failures_are_counted_by_kind() -> None:
    from sidecar.errors import StorageError
    from sidecar.observability.tracing import ObservedStore, Tracing

    class DownStore:
        name = "redis"

        async def run(self, *args: object) -> object:
            raise StorageError("redis did not answer within 15 ms")

        async def get(self, *args: object) -> object:
            raise StorageError("redis unavailable: connection refused")

    metrics = Metrics()
    store = ObservedStore(DownStore(), Tracing(), metrics)
    for call in (store.run([], [], 0, False), store.get(["k"], 0.0)):
        with pytest.raises(StorageError):
            await call
    text = metrics.exposition().decode()
    assert sample(text, "viva_ratelimit_store_errors_total", store="redis", kind="timeout") == 1
    assert sample(text, "viva_ratelimit_store_errors_total", store="redis",
                  kind="StorageError") == 1
    assert sample(text, "viva_ratelimit_store_latency_seconds_count", store="redis",
                  op="get") == 1
