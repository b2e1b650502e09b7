"""POST /v1/report: charges after the fact, never refused; hits 0 peeks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import FakeClock
from tests.transports.rest.kit import Rest, make_store, serve_rest


async def test_report_charges_and_answers_where_the_budget_stands(rest: Rest) -> None:
    reply = await rest.report(namespace="api_requests", identifier="u", hits=2)
    assert reply.status == 200
    assert (reply.body["allowed"], reply.body["remaining"]) == (True, 1)
    check = await rest.check(namespace="api_requests", identifier="u")
    assert (check.body["allowed"], check.body["remaining"]) == (True, 0)


async def test_report_over_the_budget_is_charged_not_refused(rest: Rest) -> None:
    reply = await rest.report(namespace="api_requests", identifier="u", hits=500)
    assert reply.status == 200
    assert (reply.body["allowed"], reply.body["remaining"]) == (False, 0)
    assert reply.body["retry_after_seconds"] == 20
    # The charge happened: the next request is refused.
    check = await rest.check(namespace="api_requests", identifier="u")
    assert check.body["allowed"] is False


async def test_report_zero_hits_peeks(rest: Rest) -> None:
    await rest.check(namespace="api_requests", identifier="u", hits=2)
    for _ in range(3):
        reply = await rest.report(namespace="api_requests", identifier="u", hits=0)
        assert (reply.body["allowed"], reply.body["remaining"]) == (True, 1)
    assert reply.header("RateLimit") == '"identifier";r=1;t=20'


async def test_peek_at_a_spent_budget(rest: Rest) -> None:
    await rest.check(namespace="api_requests", identifier="u", hits=4)
    reply = await rest.report(namespace="api_requests", identifier="u", hits=0)
    assert (reply.body["allowed"], reply.body["remaining"]) == (False, 0)


async def test_report_with_descriptors(rest: Rest) -> None:
    route = [{"key": "route", "value": "/a"}, {"key": "method", "value": "GET"}]
    reply = await rest.report(namespace="shop", descriptors=[route], hits=5)
    assert reply.status == 200
    assert [r["allowed"] for r in reply.body["results"]] == [False]


async def test_report_for_a_namespace_without_rules(rest: Rest) -> None:
    reply = await rest.report(namespace="nothing_here", identifier="u", hits=10)
    assert (reply.status, reply.body["allowed"], reply.body["limit"]) == (200, True, None)


ALGORITHM_RULES = """
domain: usage
count_rejected: false
descriptors:
  - key: identifier
    value: fixed
    rate_limit: {unit: minute, requests_per_unit: 3}
  - key: identifier
    value: sliding
    rate_limit: {unit: minute, requests_per_unit: 3, algorithm: sliding_window}
  - key: identifier
    value: log
    rate_limit: {unit: minute, requests_per_unit: 3, algorithm: sliding_log}
  - key: identifier
    value: bucket
    rate_limit: {unit: minute, requests_per_unit: 3, algorithm: token_bucket}
  - key: identifier
    value: leaky
    rate_limit: {unit: minute, requests_per_unit: 3, algorithm: leaky_bucket, burst: 3}
"""


@pytest.mark.parametrize("identifier", ["fixed", "sliding", "log", "bucket", "leaky"])
async def test_report_charges_past_the_limit_whatever_the_algorithm(
        identifier: str, store_kind: str, request: pytest.FixtureRequest, tmp_path: Path,
        clock: FakeClock) -> None:
    """Rules that do not count refused checks (count_rejected: false, the buckets, the log)
    still count reported usage: 2 allowed, then 10 reported past the limit leave the
    identifier refused for longer than one request's worth of waiting."""
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "usage.yaml").write_text(ALGORITHM_RULES)
    redis = request.getfixturevalue("redis_clean") if store_kind == "redis" else None
    async with serve_rest(folder, make_store(store_kind, redis), clock=clock) as api:
        body = {"namespace": "usage", "identifier": identifier}
        assert (await api.check(**body, hits=2)).body["allowed"] is True
        refused = await api.check(**body, hits=10)  # a check past the limit charges nothing
        assert refused.body["allowed"] is False
        assert (await api.check(**body)).body["allowed"] is True
        reported = await api.report(**body, hits=10)
        assert reported.status == 200
        assert reported.body["allowed"] is False
        after = await api.check(**body)
        assert after.body["allowed"] is False, "the reported usage was not charged"
        if identifier != "fixed":  # the fixed window simply waits for its end
            clock.advance(25)  # one request's worth of refill for the buckets: not enough
            assert (await api.check(**body)).body["allowed"] is False
