"""A limit the caller sends with its descriptor (Descriptor.limit) is applied as a rule with the
same RateLimit would be: every field counts (algorithm, burst, window, calendar,
count_rejected, shadow and quota mode, unlimited, replaces). Full mode turns each limit of a
key's plan into such a descriptor, so nothing of a RateLimit may be lost on that path."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.limiter.engine import Engine
from sidecar.limiter.options import EngineOptions
from sidecar.model import Code, Decision, Descriptor, RateLimit
from sidecar.rules.loader import RuleFile, build_rules
from sidecar.rules.model import RuleSet
from sidecar.storage.memory import MemoryStore
from tests.conftest import FakeClock

RATE_LIMITS = {
    "fixed_reference": "{unit: minute, requests_per_unit: 5}",
    "fixed_not_counting_refusals": "{unit: minute, requests_per_unit: 5, count_rejected: false}",
    "fixed_multiplied": "{unit: second, unit_multiplier: 30, requests_per_unit: 4}",
    "calendar_day": "{unit: day, requests_per_unit: 6, calendar: true}",
    "sliding_window": "{unit: minute, requests_per_unit: 5, algorithm: sliding_window}",
    "sliding_window_counting": (
        "{unit: minute, requests_per_unit: 5, algorithm: sliding_window, count_rejected: true}"),
    "sliding_log": "{window: 20s, requests_per_unit: 4, algorithm: sliding_log}",
    "token_bucket": "{unit: minute, requests_per_unit: 6, algorithm: token_bucket, burst: 3}",
    "leaky_bucket": "{unit: minute, requests_per_unit: 6, algorithm: leaky_bucket, burst: 2}",
}
FLAGS = {"plain": "", "shadow_mode": "shadow_mode: true", "quota_mode": "quota_mode: true"}
DOMAINS = {"defaults": "", "atomic_paris": "atomic: true\ntime_zone: Europe/Paris\n"}
# (seconds since the previous call, hits): bursts, refusals, recovery, a new window.
CALLS = [(0.0, 1), (0.2, 2), (0.1, 1), (0.3, 3), (1.5, 1), (4.0, 1), (7.5, 2), (12.0, 1),
         (0.001, 1), (25.0, 1), (3.0, 4), (40.0, 1), (61.0, 2), (0.5, 1)]


def rules_for(descriptors: list[tuple[str, str, str]], domain: str = "") -> RuleSet:
    """Domain ``d`` with one descriptor per (key, flag line, rate_limit)."""
    lines = ["domain: d", *domain.splitlines(), "descriptors:"]
    for key, flag, rate_limit in descriptors:
        lines += [f"  - key: {key}", *([f"    {flag}"] if flag else []),
                  f"    rate_limit: {rate_limit}"]
    return build_rules([RuleFile("d.yaml", "\n".join(lines) + "\n")])


def rule_limit(rules: RuleSet, key: str) -> RateLimit:
    limit = rules.domains["d"].children[key].limit
    assert limit is not None
    return limit


async def answers(rules: RuleSet, descriptors: list[Descriptor]) -> list[Any]:
    """The decisions of CALLS for ``descriptors``, on a fresh store and a fake clock."""
    clock = FakeClock(1_700_000_000.0)
    engine = Engine(MemoryStore(), EngineOptions(expiration_jitter_max_seconds=0), clock=clock)
    engine.set_rules(rules)
    out = []
    for pause, hits in CALLS:
        clock.advance(pause)
        out.append(summary(await engine.should_rate_limit("d", descriptors, hits)))
    return out


def summary(decision: Decision) -> tuple[Code, list[tuple[Any, ...]]]:
    return decision.overall, [
        (s.code, s.remaining, s.reset_seconds, s.reset_ms,
         None if s.limit is None else (s.limit.requests_per_unit, s.limit.unit))
        for s in decision.statuses]


@pytest.mark.parametrize("domain", list(DOMAINS))
@pytest.mark.parametrize("flag", list(FLAGS))
@pytest.mark.parametrize("name", list(RATE_LIMITS))
async def test_an_explicit_limit_answers_as_the_same_rule(name: str, flag: str,
                                                          domain: str) -> None:
    rules = rules_for([("k", FLAGS[flag], RATE_LIMITS[name])], DOMAINS[domain])
    by_rule = await answers(rules, [Descriptor((("k", "v"),))])
    # Entries no rule matches: the limit alone decides.
    by_limit = await answers(rules, [Descriptor((("other", "x"),), limit=rule_limit(rules, "k"))])
    assert by_limit == by_rule
    if flag == "shadow_mode":
        assert {code for code, _ in by_rule} == {Code.OK}  # over the limit, answered OK
    else:  # the calls reach the limit, so the comparison covers refusals too
        assert Code.OVER_LIMIT in {s[0] for _, statuses in by_rule for s in statuses}


async def test_explicit_unlimited_and_replaced_limits() -> None:
    rules = rules_for([("open", "", "{unlimited: true}"),
                       ("old", "", "{unit: minute, requests_per_unit: 1, name: old}"),
                       ("new", "", "{unit: minute, requests_per_unit: 3, replaces: [{name: old}]}"),
                       ("quota", "quota_mode: true", "{unit: minute, requests_per_unit: 2}")])
    keys = ["open", "old", "new", "quota"]
    by_rule = await answers(rules, [Descriptor(((k, "v"),)) for k in keys])
    by_limit = await answers(rules, [Descriptor(((f"x{k}", "v"),), limit=rule_limit(rules, k))
                                     for k in keys])
    assert by_limit == by_rule
    first_statuses = by_rule[0][1]
    assert first_statuses[0][1] == 4294967295  # unlimited
    assert first_statuses[1][4] is None  # replaced: no limit
