"""The gateways' direct header builder says exactly what /v1/check's make_answer +
rate_limit_headers would say for the same decision."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.management.answers import key_headers
from sidecar.model import Code, Decision, DescriptorStatus, RateLimit, Unit
from sidecar.transports.rest.answers import make_answer, rate_limit_headers

UNITS = [Unit.SECOND, Unit.MINUTE, Unit.HOUR, Unit.DAY, Unit.MONTH]
FAMILIES = [frozenset({"ietf", "x", "retry-after"}), frozenset({"x"}), frozenset()]


@st.composite
def decisions(draw: st.DrawFn) -> Decision:
    count = draw(st.integers(1, 4))
    statuses = []
    for i in range(count):
        limit = RateLimit(requests_per_unit=draw(st.integers(0, 10**6)),
                          unit=draw(st.sampled_from(UNITS)), stats_key="k", name=f"limit_{i}",
                          window_ms=draw(st.sampled_from([0, 1500, 90_000])))
        statuses.append(DescriptorStatus(
            draw(st.sampled_from([Code.OK, Code.OVER_LIMIT])), limit,
            draw(st.integers(0, 10**6)), draw(st.integers(0, 10**7)),
            draw(st.none() | st.integers(0, 10**10))))
    over = any(s.code == Code.OVER_LIMIT for s in statuses)
    overall = draw(st.sampled_from([Code.OVER_LIMIT, Code.OK])) if over else Code.OK
    return Decision(overall, statuses)


@settings(max_examples=300, deadline=None)
@given(decisions(), st.sampled_from(FAMILIES))
def test_key_headers_match_make_answer(decision: Decision, families: frozenset[str]) -> None:
    entries = [(("customer", "c"), ("limit", f"limit_{i}")) for i in
               range(len(decision.statuses))]
    expected = rate_limit_headers(make_answer(decision, entries, 1_800_000_000.5), families)
    assert key_headers(decision, families) == expected
