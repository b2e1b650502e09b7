"""HTTP endpoints in-process: /healthcheck, /json (reference §6.2 table), /rlconfig, /metrics."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import FakeClock
from tests.support.ports import free_port
from tests.transports.kit import RULES, Running, running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


async def post_json(http: aiohttp.ClientSession, app: Running,
                    body: str | dict[str, Any]) -> tuple[int, str, str]:
    data = body if isinstance(body, str) else json.dumps(body)
    async with http.post(f"{app.http_url}/json", data=data) as resp:
        return resp.status, resp.content_type, await resp.text()


# -- /healthcheck (TC-33) --------------------------------------------------------------------


async def test_healthcheck_ok(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    async with running(tmp_path) as app, http.get(f"{app.http_url}/healthcheck") as resp:
        assert (resp.status, await resp.text()) == (200, "OK")


async def test_healthcheck_fails_while_the_store_is_down(tmp_path: Path,
                                                         http: aiohttp.ClientSession) -> None:
    env = {"REDIS_URL": f"127.0.0.1:{free_port()}", "REDIS_TIMEOUT": "100ms"}
    async with running(tmp_path, env=env) as app, http.get(f"{app.http_url}/healthcheck") as resp:
        assert (resp.status, await resp.text()) == (500, "")


async def test_healthcheck_with_config_required(tmp_path: Path,
                                                http: aiohttp.ClientSession) -> None:
    env = {"HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED": "true"}
    async with running(tmp_path, files={}, env=env) as app:  # a valid load with no domains
        async with http.get(f"{app.http_url}/healthcheck") as resp:
            assert resp.status == 500
        (app.rules_dir / "rules.yaml").write_text(RULES)
        assert app.sidecar.rules.load()
        async with http.get(f"{app.http_url}/healthcheck") as resp:
            assert (resp.status, await resp.text()) == (200, "OK")


async def test_healthcheck_fails_once_stop_begins(tmp_path: Path,
                                                  http: aiohttp.ClientSession) -> None:
    async with running(tmp_path) as app:
        app.sidecar.health.set("sigterm", False)
        async with http.get(f"{app.http_url}/healthcheck") as resp:
            assert resp.status == 500


# -- /json (TC-32) ---------------------------------------------------------------------------


async def test_json_ok(tmp_path: Path, clock: FakeClock, http: aiohttp.ClientSession) -> None:
    async with running(tmp_path, clock=clock) as app:
        status, content_type, text = await post_json(http, app, {
            "domain": "test-domain",
            "descriptors": [{"entries": [{"key": "three", "value": "a"}]},
                            {"entries": [{"key": "nomatch", "value": "b"}]}],
            "hitsAddend": 1})
    assert (status, content_type) == (200, "application/json")
    assert json.loads(text) == {"overallCode": "OK", "statuses": [
        {"code": "OK", "currentLimit": {"requestsPerUnit": 3, "unit": "MINUTE"},
         "limitRemaining": 2, "durationUntilReset": "20s"},
        {"code": "OK"}]}


async def test_json_over_limit(tmp_path: Path, clock: FakeClock,
                               http: aiohttp.ClientSession) -> None:
    body = {"domain": "test-domain", "descriptors": [
        {"entries": [{"key": "one", "value": "a"}]}, {"entries": [{"key": "two", "value": "a"}]}]}
    async with running(tmp_path, clock=clock) as app:
        await post_json(http, app, body)
        clock.advance(7)
        status, content_type, text = await post_json(http, app, body)
    assert (status, content_type) == (429, "application/json")
    assert json.loads(text) == {"overallCode": "OVER_LIMIT", "statuses": [
        {"code": "OVER_LIMIT", "currentLimit": {"requestsPerUnit": 1, "unit": "MINUTE"},
         "durationUntilReset": "13s"},
        {"code": "OK", "currentLimit": {"requestsPerUnit": 2, "unit": "MINUTE"},
         "durationUntilReset": "13s"}]}  # remaining 0 is a default value: omitted


async def test_json_accepts_snake_case_and_any_method(tmp_path: Path,
                                                      http: aiohttp.ClientSession) -> None:
    body = json.dumps({"domain": "test-domain", "hits_addend": 3,
                       "descriptors": [{"entries": [{"key": "three", "value": "s"}]}]})
    async with running(tmp_path) as app:
        async with http.put(f"{app.http_url}/json", data=body) as resp:
            assert resp.status == 200
            assert (await resp.json())["statuses"][0].get("limitRemaining", 0) == 0
        async with http.get(f"{app.http_url}/json", data=body) as resp:
            assert resp.status == 429


@pytest.mark.parametrize(("body", "words"), [
    ("", "not a JSON RateLimitRequest"),
    ("{not json", "not a JSON RateLimitRequest"),
    ("1", "not a JSON RateLimitRequest"),
    ('{"domain": "test-domain", "descripters": []}', "descripters"),
    ('{"domain": "test-domain", "hitsAddend": -1}', "hitsAddend"),
    ('{"domain": "", "descriptors": [{"entries": [{"key": "a", "value": "b"}]}]}',
     "rate limit domain must not be empty"),
    ('{"domain": "test-domain"}', "rate limit descriptor list must not be empty"),
    ('{"domain": "test-domain", "descriptors": [{"entries": [{"key": "a", "value": "b"}], '
     '"limit": {"requestsPerUnit": 1}}]}', "descriptors[0].limit.unit"),
])
async def test_json_bad_requests_are_400(tmp_path: Path, http: aiohttp.ClientSession,
                                         body: str, words: str) -> None:
    async with running(tmp_path) as app:
        status, content_type, text = await post_json(http, app, body)
    assert (status, content_type) == (400, "text/plain")
    assert text.startswith("Bad Request")
    assert words in text


async def test_json_store_down_is_503(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    # The reference answers 400 to every service error; a store outage is not the caller's
    # fault, so it is 503 here, as gRPC answers UNAVAILABLE (a deliberate difference).
    env = {"REDIS_URL": f"127.0.0.1:{free_port()}", "REDIS_TIMEOUT": "100ms"}
    async with running(tmp_path, env=env) as app:
        status, _, text = await post_json(http, app, {
            "domain": "test-domain", "descriptors": [{"entries": [{"key": "three",
                                                                   "value": "a"}]}]})
    assert status == 503
    assert "redis" in text


# -- /rlconfig -------------------------------------------------------------------------------


async def test_rlconfig_lists_every_limit(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    async with running(tmp_path) as app, http.get(f"{app.http_url}/rlconfig") as resp:
        assert resp.status == 200
        text = await resp.text()
        version = app.sidecar.engine.rules.version  # type: ignore[union-attr]
    lines = text.splitlines()
    assert lines[:7] == [
        "test-domain.three: unit=MINUTE requests_per_unit=3, shadow_mode: false, "
        "quota_mode: false",
        "test-domain.key4: unit=DAY requests_per_unit=1, shadow_mode: false, quota_mode: false",
        "test-domain.one: unit=MINUTE requests_per_unit=1, shadow_mode: false, "
        "quota_mode: false",
        "test-domain.two: unit=MINUTE requests_per_unit=2, shadow_mode: false, "
        "quota_mode: false",
        "test-domain.route.method: unit=SECOND requests_per_unit=50, shadow_mode: false, "
        "quota_mode: false",
        "test-domain.free: unit=UNKNOWN requests_per_unit=0, shadow_mode: false, "
        "quota_mode: false",
        "",
    ]
    assert f"# version: {version}" in lines
    assert not any("last_reload_error" in line for line in lines)


async def test_rlconfig_shows_the_last_reload_error(tmp_path: Path,
                                                    http: aiohttp.ClientSession) -> None:
    async with running(tmp_path) as app:
        good = app.sidecar.engine.rules
        (app.rules_dir / "broken.yaml").write_text("domain: other\ndescriptors:\n  - key: k\n"
                                                   "    rate_limit: {unit: minutes}\n")
        assert not app.sidecar.rules.load()
        assert app.sidecar.engine.rules is good  # the last good rules stay
        async with http.get(f"{app.http_url}/rlconfig") as resp:
            text = await resp.text()
        async with http.get(f"{app.http_url}/rlconfig?format=json") as resp:
            data = await resp.json()
    assert "# last_reload_error" in text
    assert "broken.yaml" in text and "minutes" in text
    assert data["version"] == good.version  # type: ignore[union-attr]
    assert "broken.yaml" in data["last_reload_error"]
    assert {"key": "test-domain.three", "unit": "MINUTE", "requests_per_unit": 3,
            "unlimited": False, "name": "", "shadow_mode": False,
            "quota_mode": False} in data["limits"]


async def test_rlconfig_shows_a_concurrency_limit_as_such(tmp_path: Path,
                                                         http: aiohttp.ClientSession) -> None:
    files = {"ws.yaml": "domain: ws\ndescriptors:\n  - key: identifier\n    rate_limit: "
                        "{algorithm: concurrency, max: 5, lease_ttl: 90s}\n"}
    async with running(tmp_path, files) as app:
        async with http.get(f"{app.http_url}/rlconfig") as resp:
            text = await resp.text()
        async with http.get(f"{app.http_url}/rlconfig?format=json") as resp:
            data = await resp.json()
    assert text.splitlines()[0] == ("ws.identifier: algorithm=concurrency max=5 lease_ttl=90s, "
                                    "shadow_mode: false")
    assert data["limits"] == [{"key": "ws.identifier", "unit": "SECOND", "requests_per_unit": 5,
                               "unlimited": False, "name": "", "shadow_mode": False,
                               "quota_mode": False, "algorithm": "concurrency", "max": 5,
                               "lease_ttl_seconds": 90}]


# -- /metrics --------------------------------------------------------------------------------


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


async def test_metrics_after_traffic(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    async with running(tmp_path) as app:
        for _ in range(4):
            await post_json(http, app, {"domain": "test-domain", "descriptors": [
                {"entries": [{"key": "three", "value": "a"}]},
                {"entries": [{"key": "route", "value": "r"}, {"key": "method", "value": "GET"}]}]})
        await post_json(http, app, {"domain": "nowhere", "descriptors": [{"entries": [
            {"key": "a", "value": "b"}]}]})
        async with http.get(f"{app.http_url}/metrics") as resp:
            assert resp.status == 200
            text = await resp.text()
    hits = samples(text, "ratelimit_service_rate_limit_total_hits_total")
    assert hits[(("domain", "test-domain"), ("key1", "three"), ("key2", ""))] == 4
    assert hits[(("domain", "test-domain"), ("key1", "route"), ("key2", "method"))] == 4
    over = samples(text, "ratelimit_service_rate_limit_over_limit_total")
    assert over[(("domain", "test-domain"), ("key1", "three"), ("key2", ""))] == 1
    assert samples(text, "ratelimit_service_rate_limit_domain_not_found_total") == {
        (("domain", "nowhere"),): 1}
    assert samples(text, "ratelimit_service_total_requests_total")[
        (("grpc_method", "json"),)] == 5
    assert samples(text, "ratelimit_service_config_load_success_total") == {(): 1}


async def test_debug_port_serves_rlconfig_and_metrics(tmp_path: Path,
                                                      http: aiohttp.ClientSession) -> None:
    async with running(tmp_path) as app:
        async with http.get(f"{app.debug_url}/rlconfig") as resp:
            assert resp.status == 200
            assert "test-domain.three: unit=MINUTE" in await resp.text()
        async with http.get(f"{app.debug_url}/metrics") as resp:
            assert resp.status == 200
            assert "ratelimit_service_config_load_success_total 1.0" in await resp.text()
        async with http.get(f"{app.debug_url}/") as resp:
            assert "/rlconfig" in await resp.text()
