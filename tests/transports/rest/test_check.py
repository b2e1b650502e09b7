"""POST /v1/check on memory and on Redis: decisions, bodies, headers, descriptors, failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.storage.memory import MemoryStore
from sidecar.storage.redis.options import RedisOptions
from sidecar.storage.redis.store import RedisStore
from sidecar.transports.rest.options import RestOptions
from tests.conftest import FakeClock
from tests.support.ports import free_port
from tests.transports.rest.kit import Rest, serve_rest, write_rules

# The fake clock stands at 1_000_000 s: 40 s into a minute, 2800 s into an hour.
MINUTE_END = "1970-01-12T13:47:00Z"
HOUR_END = "1970-01-12T14:00:00Z"
RATE_HEADERS = ("ratelimit-policy", "ratelimit", "x-ratelimit-limit", "x-ratelimit-remaining",
                "x-ratelimit-reset", "retry-after")


async def test_first_check_is_allowed_with_the_whole_answer(rest: Rest) -> None:
    reply = await rest.check(namespace="api_requests", identifier="user_123", hits=1)
    assert reply.status == 200
    assert reply.body == {"allowed": True, "limit": 3, "remaining": 2, "reset_at": MINUTE_END,
                          "reset_after_seconds": 20, "retry_after_seconds": None,
                          "window_seconds": 60, "policy": "identifier"}
    assert reply.header("RateLimit-Policy") == '"identifier";q=3;w=60'
    assert reply.header("RateLimit") == '"identifier";r=2;t=20'
    assert (reply.header("X-RateLimit-Limit"), reply.header("X-RateLimit-Remaining"),
            reply.header("X-RateLimit-Reset")) == ("3", "2", "20")
    assert reply.header("Retry-After") is None


async def test_hits_default_to_one(rest: Rest) -> None:
    reply = await rest.check(namespace="api_requests", identifier="user_123")
    assert reply.body["remaining"] == 2


async def test_refused_once_the_budget_is_spent(rest: Rest) -> None:
    for remaining in (2, 1, 0):
        reply = await rest.check(namespace="api_requests", identifier="u")
        assert (reply.body["allowed"], reply.body["remaining"]) == (True, remaining)
    reply = await rest.check(namespace="api_requests", identifier="u")
    assert reply.status == 200  # the decision is in the body
    assert reply.body["allowed"] is False
    assert (reply.body["remaining"], reply.body["retry_after_seconds"]) == (0, 20)
    assert reply.header("Retry-After") == "20"
    assert reply.header("RateLimit") == '"identifier";r=0;t=20'


async def test_every_identifier_has_its_own_budget(rest: Rest) -> None:
    await rest.check(namespace="api_requests", identifier="a", hits=3)
    assert (await rest.check(namespace="api_requests", identifier="a")).body["allowed"] is False
    other = await rest.check(namespace="api_requests", identifier="b")
    assert (other.body["allowed"], other.body["remaining"]) == (True, 2)


async def test_hits_charge_several_at_once(rest: Rest) -> None:
    reply = await rest.check(namespace="api_requests", identifier="u", hits=3)
    assert (reply.body["allowed"], reply.body["remaining"]) == (True, 0)
    reply = await rest.check(namespace="api_requests", identifier="u", hits=2)
    assert reply.body["allowed"] is False


async def test_hits_zero_peeks_without_charging(rest: Rest) -> None:
    await rest.check(namespace="api_requests", identifier="u")
    for _ in range(3):
        reply = await rest.check(namespace="api_requests", identifier="u", hits=0)
        assert (reply.body["allowed"], reply.body["remaining"]) == (True, 2)


async def test_a_new_window_restores_the_budget(rest: Rest, clock: FakeClock) -> None:
    await rest.check(namespace="api_requests", identifier="u", hits=4)
    clock.advance(20)
    reply = await rest.check(namespace="api_requests", identifier="u")
    assert (reply.body["allowed"], reply.body["remaining"]) == (True, 2)
    assert reply.body["reset_after_seconds"] == 60


@pytest.mark.parametrize(("namespace", "identifier"), [
    ("no_such_namespace", "u"),  # a domain without rules
    ("api_requests", "vip"),  # unlimited
    ("api_requests", "free"),  # an exact entry without a limit: exempt
])
async def test_no_limit_is_allowed_with_limit_null(rest: Rest, namespace: str,
                                                   identifier: str) -> None:
    for _ in range(5):
        reply = await rest.check(namespace=namespace, identifier=identifier)
        assert reply.status == 200
        assert reply.body == {"allowed": True, "limit": None, "remaining": None,
                              "reset_at": None, "reset_after_seconds": None,
                              "retry_after_seconds": None, "window_seconds": None,
                              "policy": None}
        assert not set(RATE_HEADERS) & set(reply.headers)


SHOP_DESCRIPTORS = [
    [{"key": "user", "value": "u1"}],
    [{"key": "route", "value": "/cart"}, {"key": "method", "value": "POST"}],
    [{"key": "unknown", "value": "x"}],
]


async def test_descriptors_get_one_result_each_and_the_overall_answer(rest: Rest) -> None:
    reply = await rest.check(namespace="shop", descriptors=SHOP_DESCRIPTORS)
    assert reply.status == 200
    results = reply.body.pop("results")
    # Overall: the most constrained limit (the fewest remaining).
    assert reply.body == {"allowed": True, "limit": 2, "remaining": 1, "reset_at": HOUR_END,
                          "reset_after_seconds": 800, "retry_after_seconds": None,
                          "window_seconds": 3600, "policy": "route.method"}
    assert [(r["allowed"], r["limit"], r["remaining"], r["policy"]) for r in results] == [
        (True, 5, 4, "per_user"), (True, 2, 1, "route.method"), (True, None, None, None)]
    assert reply.header("RateLimit-Policy") == '"per_user";q=5;w=60, "route.method";q=2;w=3600'
    assert reply.header("RateLimit") == '"per_user";r=4;t=20, "route.method";r=1;t=800'
    assert reply.header("X-RateLimit-Remaining") == "1"


async def test_one_descriptor_over_refuses_the_request(rest: Rest) -> None:
    await rest.check(namespace="shop", descriptors=SHOP_DESCRIPTORS[1:2], hits=2)
    reply = await rest.check(namespace="shop", descriptors=SHOP_DESCRIPTORS)
    results = reply.body.pop("results")
    assert [r["allowed"] for r in results] == [True, False, True]
    assert results[1]["retry_after_seconds"] == 800
    assert (reply.body["allowed"], reply.body["policy"]) == (False, "route.method")
    assert reply.body["retry_after_seconds"] == 800
    assert reply.header("Retry-After") == "800"
    assert reply.header("X-RateLimit-Limit") == "2"


async def test_identifier_answers_have_no_results(rest: Rest) -> None:
    reply = await rest.check(namespace="api_requests", identifier="u")
    assert "results" not in reply.body


async def test_repeated_policies_are_numbered(rest: Rest) -> None:
    same = [{"key": "user", "value": "a"}]
    reply = await rest.check(namespace="shop", descriptors=[same, [{"key": "user",
                                                                     "value": "b"}]])
    assert [r["policy"] for r in reply.body["results"]] == ["per_user", "per_user.2"]
    assert reply.header("RateLimit") == '"per_user";r=4;t=20, "per_user.2";r=4;t=20'


async def test_token_bucket_resets_to_the_millisecond(rest: Rest) -> None:
    token = [[{"key": "token", "value": "t"}]]
    first = await rest.check(namespace="shop", descriptors=token)
    assert (first.body["allowed"], first.body["limit"], first.body["window_seconds"]) == (
        True, 1, 1)
    await rest.check(namespace="shop", descriptors=token)
    refused = await rest.check(namespace="shop", descriptors=token)
    assert refused.body["allowed"] is False
    assert refused.body["retry_after_seconds"] == 1
    assert refused.body["reset_at"] == "1970-01-12T13:46:41Z"


@pytest.mark.parametrize(("families", "present"), [
    (frozenset(), set()),
    (frozenset({"ietf"}), {"ratelimit-policy", "ratelimit"}),
    (frozenset({"x"}), {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"}),
    (frozenset({"retry-after"}), {"retry-after"}),
])
async def test_header_families_are_switchable(tmp_path: Path, families: frozenset[str],
                                              present: set[str]) -> None:
    rules = write_rules(tmp_path / "rules")
    async with serve_rest(rules, MemoryStore(), RestOptions(headers=families)) as api:
        reply = await api.check(namespace="api_requests", identifier="u", hits=4)
    assert reply.body["allowed"] is False
    assert set(RATE_HEADERS) & set(reply.headers) == present


async def test_store_down_is_503_with_a_json_error(tmp_path: Path) -> None:
    store = RedisStore(RedisOptions(url=f"127.0.0.1:{free_port()}", timeout=0.2))
    async with serve_rest(write_rules(tmp_path / "rules"), store) as api:
        reply = await api.check(namespace="api_requests", identifier="u")
        report = await api.report(namespace="api_requests", identifier="u", hits=5)
    assert (reply.status, reply.body["field"]) == (503, None)
    assert reply.body["error"].startswith("cannot decide now:")
    assert report.status == 503


async def test_no_rules_loaded_is_503(tmp_path: Path) -> None:
    async with serve_rest(write_rules(tmp_path / "rules"), MemoryStore()) as api:
        assert api.engine is not None
        api.engine.rules = None  # as when FORCE_START_WITHOUT_INITIAL_CONFIG started it
        reply = await api.check(namespace="api_requests", identifier="u")
    assert reply.status == 503
    assert "no rate limit configuration loaded" in reply.body["error"]


async def test_curl_style_form_content_type_is_accepted(rest: Rest) -> None:
    async with rest.session.post(
            rest.url + "/v1/check", data='{"namespace":"api_requests","identifier":"u"}',
            headers={"Content-Type": "application/x-www-form-urlencoded"}) as resp:
        assert resp.status == 200
        assert (await resp.json())["remaining"] == 2
