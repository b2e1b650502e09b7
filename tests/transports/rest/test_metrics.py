"""REST calls show in the service metrics a sidecar process serves: requests and latency per
endpoint, and the per-rule counters the engine keeps, as for gRPC and /json."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.ports import free_port
from tests.transports.rest.kit import LOOPBACK, RestSidecar, write_rules


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[RestSidecar]:
    process = RestSidecar(write_rules(tmp_path / "rules"), env=LOOPBACK).start()
    yield process
    process.stop()


def post(url: str, body: dict[str, object]) -> int:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        return int(resp.status)


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_rest_requests_latency_and_rule_counters(sidecar: RestSidecar) -> None:
    url = sidecar.http_url
    body = {"namespace": "api_requests", "identifier": "metrics-user"}
    for _ in range(4):  # a limit of 3 a minute: the 4th is over
        assert post(f"{url}/v1/check", body) == 200
    assert post(f"{url}/v1/report", {**body, "hits": 2}) == 200
    request = urllib.request.Request(f"{url}/v1/forward-auth", headers={
        "X-Forwarded-For": "10.1.2.3", "X-RateLimit-Namespace": "api_requests"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status == 200

    got = samples(url)
    for method, count in (("rest_check", 4), ("rest_report", 1), ("forward_auth", 1)):
        label = (("grpc_method", method),)
        assert got[("ratelimit_service_total_requests_total", label)] == count
        assert got[("ratelimit_service_response_time_seconds_count", label)] == count
        assert got[("ratelimit_service_response_time_seconds_sum", label)] > 0
    rule = (("domain", "api_requests"), ("key1", "identifier"), ("key2", ""))
    assert got[("ratelimit_service_rate_limit_total_hits_total", rule)] == 4 + 2 + 1
    assert got[("ratelimit_service_rate_limit_over_limit_total", rule)] == 1 + 2
    assert got[("viva_ratelimit_in_flight_requests", (("transport", "http"),))] == 0


def status_of(request: urllib.request.Request) -> int:
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def errors(got: dict[tuple[str, tuple[tuple[str, str], ...]], float], kind: str) -> float:
    return got.get(("ratelimit_service_should_rate_limit_error_total",
                    (("err_type", kind),)), 0.0)


def test_rest_errors_are_counted_as_the_other_transports_count_theirs(
        sidecar: RestSidecar) -> None:
    url = sidecar.http_url
    bad = [
        urllib.request.Request(f"{url}/v1/check", data=b"{not json"),
        urllib.request.Request(f"{url}/v1/check", data=json.dumps(
            {"namespace": "api_requests", "identifier": "u", "hits": -1}).encode()),
        urllib.request.Request(f"{url}/v1/report", data=b"x" * (64 * 1024 + 1)),
        urllib.request.Request(f"{url}/v1/forward-auth"),  # no X-Forwarded-For
    ]
    assert [status_of(r) for r in bad] == [400, 400, 413, 400]
    got = samples(url)
    assert errors(got, "service_error") == 4
    for method, count in (("rest_check", 2), ("rest_report", 1), ("forward_auth", 1)):
        label = (("grpc_method", method),)
        assert got[("ratelimit_service_total_requests_total", label)] == count
        assert got[("ratelimit_service_response_time_seconds_count", label)] == count


def test_rest_answers_without_a_store_are_counted_as_redis_errors(tmp_path: Path) -> None:
    """Redis unreachable: /v1/check and forward-auth answer 503 and count redis_error, as
    ShouldRateLimit and /json do."""
    dead = f"127.0.0.1:{free_port()}"
    process = RestSidecar(write_rules(tmp_path / "rules"),
                          env={**LOOPBACK, "BACKEND_TYPE": "redis", "REDIS_URL": dead}).start()
    try:
        url = process.http_url
        check = urllib.request.Request(f"{url}/v1/check", data=json.dumps(
            {"namespace": "api_requests", "identifier": "u"}).encode())
        forward = urllib.request.Request(f"{url}/v1/forward-auth", headers={
            "X-Forwarded-For": "10.0.0.1", "X-RateLimit-Namespace": "api_requests"})
        json_call = urllib.request.Request(f"{url}/json", data=json.dumps({
            "domain": "api_requests",
            "descriptors": [{"entries": [{"key": "identifier", "value": "u"}]}]}).encode())
        assert [status_of(r) for r in (check, forward, json_call)] == [503, 503, 503]
        assert errors(samples(url), "redis_error") == 3
    finally:
        process.stop()
