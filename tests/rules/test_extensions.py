"""Rule extensions: algorithm, burst, windows, calendar, count_rejected, atomic, time_zone."""

from __future__ import annotations

import pytest

from sidecar.errors import RuleSetError
from sidecar.model import RateLimit, Unit
from sidecar.rules.loader import RuleFile, build_rules
from sidecar.rules.model import DomainOptions


def limit_of(text: str, key: str = "k") -> RateLimit:
    rules = build_rules([RuleFile("x.yaml", text)])
    limit = rules.domains["d"].children[key].limit
    assert limit is not None
    return limit


def errors_of(text: str) -> list[str]:
    with pytest.raises(RuleSetError) as info:
        build_rules([RuleFile("x.yaml", text)])
    return [str(e) for e in info.value.errors]


def rule(body: str, domain_extra: str = "") -> str:
    return f"domain: d\n{domain_extra}descriptors:\n  - key: k\n    rate_limit: {{{body}}}\n"


def test_reference_files_keep_the_reference_algorithm() -> None:
    limit = limit_of(rule("unit: minute, requests_per_unit: 5"))
    assert (limit.algorithm, limit.count_rejected, limit.calendar) == ("fixed_window", True, False)
    assert limit.window_length_ms == 60_000 and limit.reference_compatible


@pytest.mark.parametrize(
    ("body", "algorithm", "burst", "window_ms", "counted"),
    [
        (
            "unit: second, requests_per_unit: 5, algorithm: token_bucket",
            "token_bucket",
            0,
            1000,
            False,
        ),
        (
            "unit: second, requests_per_unit: 5, algorithm: token_bucket, burst: 20",
            "token_bucket",
            20,
            1000,
            False,
        ),
        (
            "unit: minute, requests_per_unit: 60, algorithm: leaky_bucket, burst: 3",
            "leaky_bucket",
            3,
            60_000,
            False,
        ),
        (
            "unit: minute, requests_per_unit: 5, algorithm: sliding_window",
            "sliding_window",
            0,
            60_000,
            False,
        ),
        (
            "unit: minute, requests_per_unit: 5, algorithm: sliding_window, count_rejected: true",
            "sliding_window",
            0,
            60_000,
            True,
        ),
        (
            "unit: minute, requests_per_unit: 5, algorithm: sliding_log",
            "sliding_log",
            0,
            60_000,
            False,
        ),
        (
            "unit: minute, requests_per_unit: 5, unit_multiplier: 5",
            "fixed_window",
            0,
            300_000,
            True,
        ),
        ("requests_per_unit: 5, window: 90s", "fixed_window", 0, 90_000, True),
        (
            "requests_per_unit: 5, window: 1h30m, algorithm: sliding_log",
            "sliding_log",
            0,
            5_400_000,
            False,
        ),
    ],
)
def test_extensions_are_read(
    body: str, algorithm: str, burst: int, window_ms: int, counted: bool
) -> None:
    limit = limit_of(rule(body))
    assert (limit.algorithm, limit.burst, limit.window_length_ms, limit.count_rejected) == (
        algorithm,
        burst,
        window_ms,
        counted,
    )


def test_a_window_without_unit_reports_the_largest_whole_unit() -> None:
    assert limit_of(rule("requests_per_unit: 5, window: 90s")).unit == Unit.SECOND
    assert limit_of(rule("requests_per_unit: 5, window: 5m")).unit == Unit.MINUTE
    assert limit_of(rule("requests_per_unit: 5, window: 2d")).unit == Unit.DAY


def test_calendar_months_and_domain_options() -> None:
    text = rule(
        "unit: month, requests_per_unit: 5, calendar: true",
        "atomic: true\ntime_zone: Europe/Paris\ncount_rejected: false\n",
    )
    rules = build_rules([RuleFile("x.yaml", text)])
    assert rules.options["d"] == DomainOptions(
        atomic=True, count_rejected=False, time_zone="Europe/Paris"
    )
    limit = rules.domains["d"].children["k"].limit
    assert limit is not None and limit.calendar and not limit.count_rejected
    assert not limit.reference_compatible


def test_rule_count_rejected_overrides_the_domain() -> None:
    text = rule(
        "unit: minute, requests_per_unit: 5, count_rejected: true", "count_rejected: false\n"
    )
    assert limit_of(text).count_rejected


@pytest.mark.parametrize(
    ("body", "domain_extra", "message"),
    [
        (
            "unit: minute, requests_per_unit: 5, algorithm: gcra",
            "",
            "x.yaml:4: descriptors[0].rate_limit.algorithm: unknown algorithm 'gcra'; expected "
            "one of fixed_window, sliding_window, sliding_log, token_bucket, leaky_bucket, "
            "concurrency",
        ),
        (
            "unit: minute, requests_per_unit: 20000, algorithm: sliding_log",
            "",
            "x.yaml:4: descriptors[0].rate_limit.requests_per_unit: 20000 is too many for "
            "sliding_log, which keeps one entry per request; expected at most 10000, or "
            "algorithm: sliding_window for larger limits",
        ),
        (
            "unit: minute, requests_per_unit: 5, burst: 3",
            "",
            "x.yaml:4: descriptors[0].rate_limit.burst: burst has no meaning for fixed_window; "
            "expected burst only with algorithm token_bucket or leaky_bucket",
        ),
        (
            "unit: minute, requests_per_unit: 5, algorithm: token_bucket, burst: 0",
            "",
            "x.yaml:4: descriptors[0].rate_limit.burst: '0' is not a valid burst; expected a "
            "whole number from 1 to 4294967295",
        ),
        (
            "unit: minute, requests_per_unit: 5, unit_multiplier: 0",
            "",
            "x.yaml:4: descriptors[0].rate_limit.unit_multiplier: '0' is not a valid "
            "multiplier; expected a whole number from 1 to 1000000",
        ),
        (
            "unit: minute, requests_per_unit: 5, unit_multiplier: 2, window: 2m",
            "",
            "x.yaml:4: descriptors[0].rate_limit.unit_multiplier: unit_multiplier and window "
            "both given; expected one of them: 'unit_multiplier: 5' with a unit, or "
            "'window: 5m'",
        ),
        (
            "requests_per_unit: 5, window: 1.5s",
            "",
            "x.yaml:4: descriptors[0].rate_limit.window: '1.5s' is not a window length; "
            "expected a duration of whole seconds such as 30s, 90s, 5m, 1h30m or 2d",
        ),
        (
            "unit: hour, requests_per_unit: 5, calendar: true",
            "",
            "x.yaml:4: descriptors[0].rate_limit.calendar: calendar windows are one day, week, "
            "month or year; expected unit one of day, week, month, year, without "
            "unit_multiplier or window",
        ),
        (
            "unit: day, requests_per_unit: 5, calendar: true, algorithm: token_bucket",
            "",
            "x.yaml:4: descriptors[0].rate_limit.calendar: calendar windows need fixed_window, "
            "not token_bucket; expected calendar: true only with the fixed_window algorithm",
        ),
        (
            "unit: day, requests_per_unit: 5, algorithm: token_bucket, count_rejected: true",
            "",
            "x.yaml:4: descriptors[0].rate_limit.count_rejected: token_bucket never charges "
            "refused requests; expected count_rejected only with fixed_window or "
            "sliding_window",
        ),
        (
            "unlimited: true, algorithm: token_bucket",
            "",
            "x.yaml:4: descriptors[0].rate_limit.algorithm: 'algorithm' has no meaning on an "
            "unlimited limit; expected either 'unlimited: true' alone, or a limit with its "
            "algorithm",
        ),
        (
            "unit: day, requests_per_unit: 5",
            "time_zone: Mars/Olympus\n",
            "x.yaml:2: time_zone: unknown time zone 'Mars/Olympus'; expected an IANA time zone "
            "name such as UTC, Europe/Paris or America/New_York",
        ),
        (
            "unit: day, requests_per_unit: 5",
            "atomic: maybe\n",
            "x.yaml:2: atomic: 'maybe' is not a boolean; expected true or false, without quotes",
        ),
    ],
)
def test_invalid_extensions_are_reported(body: str, domain_extra: str, message: str) -> None:
    assert errors_of(rule(body, domain_extra)) == [message]


def test_failure_policy_per_domain() -> None:
    rules = build_rules([RuleFile("x.yaml", rule("unit: day, requests_per_unit: 5",
                                                 "failure_policy: local\n"))])
    assert rules.options["d"].failure_policy == "local"
    assert errors_of(rule("unit: day, requests_per_unit: 5", "failure_policy: open\n")) == [
        "x.yaml:2: failure_policy: unknown failure policy 'open'; expected one of allow, deny, "
        "unavailable, local"
    ]


def test_merged_files_must_agree_on_domain_options() -> None:
    a = RuleFile("a.yaml", "domain: d\natomic: true\ndescriptors:\n  - key: a\n")
    b = RuleFile("b.yaml", "domain: d\ndescriptors:\n  - key: b\n")
    with pytest.raises(RuleSetError) as info:
        build_rules([a, b], merge_domains=True)
    assert "merged with a.yaml but sets different atomic" in str(info.value)


# -- concurrency limits ------------------------------------------------------------------------

HOLDERS = "the most holders at once: a whole number from 1 to 4294967295"
DURATION = "a duration of whole seconds such as 30s, 90s, 5m, 1h30m or 2d"
SHAPE = ("max: <holders at once> and lease_ttl: <duration>, e.g. {algorithm: concurrency, "
         "max: 5, lease_ttl: 60s}")


def test_a_concurrency_limit() -> None:
    limit = limit_of(rule("algorithm: concurrency, max: 5, lease_ttl: 60s, name: sockets"))
    assert (limit.algorithm, limit.requests_per_unit, limit.window_ms, limit.unit) == (
        "concurrency", 5, 60_000, Unit.MINUTE)
    assert (limit.name, limit.count_rejected, limit.reference_compatible) == (
        "sockets", False, False)
    assert limit_of(rule("algorithm: concurrency, max: 1, lease_ttl: 1h30m")).window_ms == \
        5_400_000
    assert limit_of(rule("algorithm: concurrency, max: 1, lease_ttl: 90s")).unit == Unit.SECOND


def test_shadow_mode_and_detailed_metric_apply_to_concurrency() -> None:
    text = ("domain: d\ndescriptors:\n  - key: k\n    shadow_mode: true\n    detailed_metric: "
            "true\n    rate_limit: {algorithm: concurrency, max: 2, lease_ttl: 10s}\n")
    limit = limit_of(text)
    assert limit.shadow_mode and limit.detailed_metric


@pytest.mark.parametrize(("body", "messages"), [
    ("algorithm: concurrency, lease_ttl: 60s",
     [f"x.yaml:4: descriptors[0].rate_limit.max: max is missing; expected {HOLDERS}"]),
    ("algorithm: concurrency, max: 0, lease_ttl: 60s",
     [f"x.yaml:4: descriptors[0].rate_limit.max: '0' is not a valid max; expected {HOLDERS}"]),
    ("algorithm: concurrency, max: many, lease_ttl: 60s",
     [f"x.yaml:4: descriptors[0].rate_limit.max: 'many' is not a valid max; expected {HOLDERS}"]),
    ("algorithm: concurrency, max: 5",
     ["x.yaml:4: descriptors[0].rate_limit.lease_ttl: lease_ttl is missing: how long a holder "
      f"that stops renewing keeps its slot; expected {DURATION}"]),
    ("algorithm: concurrency, max: 5, lease_ttl: 60",
     ["x.yaml:4: descriptors[0].rate_limit.lease_ttl: '60' is not a lease time to live; "
      f"expected {DURATION}"]),
    ("algorithm: concurrency, max: 5, lease_ttl: 60s, unit: minute, requests_per_unit: 5",
     [f"x.yaml:4: descriptors[0].rate_limit.{key}: '{key}' has no meaning for algorithm "
      "concurrency, which counts holders at once, not requests over time; expected "
      f"{SHAPE}" for key in ("requests_per_unit", "unit")]),
    ("algorithm: concurrency, max: 5, lease_ttl: 60s, window: 1m, burst: 3",
     [f"x.yaml:4: descriptors[0].rate_limit.{key}: '{key}' has no meaning for algorithm "
      "concurrency, which counts holders at once, not requests over time; expected "
      f"{SHAPE}" for key in ("window", "burst")]),
    ("algorithm: concurrency, max: 5, lease_ttl: 60s, replaces: [{name: a}]",
     ["x.yaml:4: descriptors[0].rate_limit.replaces: 'replaces' has no meaning for algorithm "
      "concurrency, which counts holders at once, not requests over time; expected "
      f"{SHAPE}"]),
    ("unit: minute, requests_per_unit: 5, max: 3",
     ["x.yaml:4: descriptors[0].rate_limit.max: 'max' has no meaning for fixed_window, which "
      f"limits a rate; expected algorithm: concurrency with {SHAPE}; or, for a rate, "
      "requests_per_unit and unit only"]),
    ("unit: minute, requests_per_unit: 5, algorithm: token_bucket, lease_ttl: 1m",
     ["x.yaml:4: descriptors[0].rate_limit.lease_ttl: 'lease_ttl' has no meaning for "
      f"token_bucket, which limits a rate; expected algorithm: concurrency with {SHAPE}; or, "
      "for a rate, requests_per_unit and unit only"]),
    ("unlimited: true, max: 3",
     ["x.yaml:4: descriptors[0].rate_limit.max: 'max' has no meaning on an unlimited limit; "
      "expected either 'unlimited: true' alone, or a limit with its algorithm"]),
])
def test_invalid_concurrency_limits(body: str, messages: list[str]) -> None:
    assert errors_of(rule(body)) == messages


def test_quota_mode_has_no_meaning_for_concurrency() -> None:
    text = ("domain: d\ndescriptors:\n  - key: k\n    quota_mode: true\n"
            "    rate_limit: {algorithm: concurrency, max: 2, lease_ttl: 10s}\n")
    assert errors_of(text) == [
        "x.yaml:4: descriptors[0].quota_mode: quota_mode has no meaning for a concurrency "
        "limit; expected no quota_mode on a descriptor whose rate_limit has algorithm: "
        "concurrency (shadow_mode and detailed_metric are fine)"]


def test_a_typo_of_max_is_reported_once() -> None:
    assert errors_of(rule("algorithm: concurrency, maxx: 5, lease_ttl: 60s")) == [
        "x.yaml:4: descriptors[0].rate_limit.maxx: unknown key 'maxx' (did you mean 'max'?); "
        "expected one of unit, requests_per_unit, unlimited, name, replaces, algorithm, burst, "
        "unit_multiplier, window, calendar, count_rejected, max, lease_ttl"]
