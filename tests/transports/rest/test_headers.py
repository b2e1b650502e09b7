"""The answer and its headers from engine statuses, without a server."""

from __future__ import annotations

import msgspec

from sidecar.model import Code, Decision, DescriptorStatus, RateLimit, Unit
from sidecar.transports.rest.answers import make_answer, rate_limit_headers
from sidecar.transports.rest.options import HEADER_FAMILIES

ALL = frozenset(HEADER_FAMILIES)
NOW = 1_000_000.25


def limit(rpu: int, unit: Unit = Unit.MINUTE, name: str = "") -> RateLimit:
    return RateLimit(requests_per_unit=rpu, unit=unit, stats_key="d.k", name=name)


def status(code: Code, lim: RateLimit | None, remaining: int = 0, reset: int = 0,
           reset_ms: int | None = None) -> DescriptorStatus:
    return DescriptorStatus(code, lim, remaining, reset, reset_ms)


def test_policy_names_are_structured_field_strings() -> None:
    decision = Decision(Code.OK, [status(Code.OK, limit(10, name='say "hi" \\ bye'), 9, 20),
                                  status(Code.OK, limit(5, name="caf\u00e9\n"), 4, 20)])
    answer = make_answer(decision, [(("k", "v"),), (("k", "w"),)], NOW)
    headers = dict(rate_limit_headers(answer, ALL))
    assert headers["RateLimit-Policy"] == ('"say \\"hi\\" \\\\ bye";q=10;w=60, '
                                           '"caf__";q=5;w=60')


def test_unnamed_policies_are_the_keys_of_the_descriptor() -> None:
    decision = Decision(Code.OK, [status(Code.OK, limit(10, Unit.HOUR), 3, 100)])
    answer = make_answer(decision, [(("route", "/a"), ("method", "GET"))], NOW)
    assert answer.overall.policy == "route.method"
    assert dict(rate_limit_headers(answer, ALL))["RateLimit"] == '"route.method";r=3;t=100'


def test_reset_at_from_whole_seconds_and_from_milliseconds() -> None:
    decision = Decision(Code.OK, [status(Code.OK, limit(1), 0, 20),
                                  status(Code.OK, limit(2), 1, 1, reset_ms=400)])
    answer = make_answer(decision, [(("a", "1"),), (("b", "1"),)], NOW)
    assert [r.reset_at for r in answer.results] == [1_000_020, 1_000_001]


def test_refused_overall_takes_the_latest_retry() -> None:
    decision = Decision(Code.OVER_LIMIT, [status(Code.OVER_LIMIT, limit(1), 0, 50),
                                          status(Code.OVER_LIMIT, limit(9, Unit.SECOND), 0, 1),
                                          status(Code.OK, limit(100), 90, 50)])
    answer = make_answer(decision, [(("a", "1"),), (("b", "1"),), (("c", "1"),)], NOW)
    assert (answer.overall.allowed, answer.overall.retry_after) == (False, 50)
    headers = dict(rate_limit_headers(answer, ALL))
    assert headers["Retry-After"] == "50"
    assert headers["X-RateLimit-Limit"] == "9"  # the last refusing descriptor (as Envoy's)


def test_shadow_mode_over_is_allowed() -> None:
    decision = Decision(Code.OK, [status(Code.OK, limit(1), 0, 10)])
    answer = make_answer(decision, [(("a", "1"),)], NOW)
    assert (answer.overall.allowed, answer.overall.retry_after) == (True, None)
    assert "Retry-After" not in dict(rate_limit_headers(answer, ALL))


def test_no_limit_no_headers() -> None:
    decision = Decision(Code.OK, [status(Code.OK, None, 4294967295)])
    answer = make_answer(decision, [(("a", "1"),)], NOW)
    assert rate_limit_headers(answer, ALL) == []
    assert msgspec.to_builtins(answer.overall.body())["limit"] is None


def test_sub_second_windows_round_up() -> None:
    lim = RateLimit(requests_per_unit=5, unit=Unit.SECOND, stats_key="d.k", window_ms=500)
    answer = make_answer(Decision(Code.OK, [status(Code.OK, lim, 4, 1)]), [(("a", "1"),)], NOW)
    assert answer.overall.window == 1
