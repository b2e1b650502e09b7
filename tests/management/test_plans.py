"""Plans: the shipped file, every problem reported with its place, overrides merged by name,
reloads that never apply a bad version."""

from __future__ import annotations

import asyncio
import textwrap
from fractions import Fraction
from pathlib import Path

import pytest

from sidecar.errors import RuleSetError
from sidecar.management.plans import (
    PlansManager,
    build_plans,
    check_limits,
    load_plans,
    merge_limits,
)
from sidecar.model import Unit
from sidecar.rules.loader import RuleFile, load_rules
from tests.support import ROOT

GOOD = """
plans:
  free:
    name: Free
    max_keys: 1
    limits:
      - {name: per_minute, unit: minute, requests_per_unit: 3}
      - {name: monthly, unit: month, requests_per_unit: 5, calendar: true}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(RuleSetError) as info:
        build_plans([RuleFile("plans.yaml", textwrap.dedent(text))])
    return [str(e) for e in info.value.errors]


def test_the_shipped_plans_load_and_the_rules_loader_skips_them() -> None:
    plans = load_plans(str(ROOT / "config"))
    assert sorted(plans.plans) == ["enterprise", "free", "pro"]
    free, pro = plans.plans["free"], plans.plans["pro"]
    assert (free.name, free.max_keys, free.features) == ("Free", 2, frozenset())
    assert [limit.name for limit in pro.limits] == ["per_second", "per_minute", "monthly"]
    monthly = pro.limits[2]
    assert (monthly.unit, monthly.calendar, monthly.requests_per_unit) == (Unit.MONTH, True,
                                                                           1_000_000)
    assert pro.limits[0].algorithm == "token_bucket" and pro.limits[0].burst == 100
    assert "exports" in pro.features and plans.options.atomic
    assert str(ROOT / "config" / "plans.yaml") not in load_rules(str(ROOT / "config")).files
    assert free.alerts is not None and [float(t) for t in free.alerts.thresholds] == [0.8, 1.0]
    assert [x.name for x in pro.limits if pro.alerted(x)] == ["monthly"]


def test_every_problem_is_reported_with_file_line_and_path() -> None:
    found = problems("""
        plans:
          free:
            name: Free
            max_kyes: 3
            limits:
              - {name: per_minute, unit: minutes, requests_per_unit: 3}
              - {unit: second, requests_per_unit: 1}
              - {name: b, unit: second, requests_per_unit: 1, burst: 5}
              - {name: q, unit: minute, requests_per_unit: 1, calendar: true}
              - {name: u, unlimited: true}
            features: [exports, "bad feature"]
          "no way": {}
        colour: blue
        """)
    assert found == [
        "plans.yaml:5: plans.free.max_kyes: unknown key 'max_kyes' (did you mean 'max_keys'?); "
        "expected one of name, limits, max_keys, features, alerts, price",
        "plans.yaml:7: plans.free.limits[0].unit: invalid rate limit unit 'minutes'; expected "
        "one of second, minute, hour, day, week, month, year (any case), or 'unlimited: true'",
        "plans.yaml:8: plans.free.limits[1].name: limit has no name; expected 1 to 64 letters, "
        "digits, '_', '.' or '-'",
        "plans.yaml:9: plans.free.limits[2].burst: burst has no meaning for fixed_window; "
        "expected burst only with algorithm token_bucket or leaky_bucket",
        "plans.yaml:10: plans.free.limits[3].calendar: calendar windows are one day, week, "
        "month or year; expected unit one of day, week, month, year, without unit_multiplier "
        "or window",
        "plans.yaml:11: plans.free.limits[4].unlimited: unknown key 'unlimited' (did you mean "
        "'unit'?); expected one "
        "of name, unit, requests_per_unit, algorithm, burst, window, unit_multiplier, calendar",
        "plans.yaml:12: plans.free.features[1]: feature 'bad feature' is not valid; expected 1 "
        "to 64 letters, digits, '_', '.' or '-'",
        "plans.yaml:13: plans.no way: plan id 'no way' is not valid; expected 1 to 64 letters, "
        "digits, '_', '.' or '-'",
        "plans.yaml:14: colour: unknown key 'colour'; expected one of plans, time_zone, meters",
    ]


def test_alerts_thresholds_are_increasing_shares_of_watched_limits() -> None:
    found = problems("""
        plans:
          free:
            limits:
              - {name: hourly, unit: hour, requests_per_unit: 10}
              - {name: burst, unit: second, requests_per_unit: 5, algorithm: token_bucket}
            alerts:
              thresholds: [0.5, 0.5, 1.2, high, 0]
              limits: [burst, daily]
              when: always
          paid:
            alerts: {limits: [hourly]}
        """)
    expected = "a list of 1 to 10 shares of a limit, increasing, each above 0 and at most 1"
    assert found == [
        f"plans.yaml:8: plans.free.alerts.thresholds[1]: 0.5 does not come after 0.5; "
        f"expected {expected}",
        "plans.yaml:8: plans.free.alerts.thresholds[2]: the number 1.2 is not a share of a "
        "limit; expected a number above 0 and at most 1, e.g. 0.8",
        "plans.yaml:8: plans.free.alerts.thresholds[3]: 'high' is not a share of a limit; "
        "expected a number above 0 and at most 1, e.g. 0.8",
        "plans.yaml:8: plans.free.alerts.thresholds[4]: '0' is not a share of a limit; "
        "expected a number above 0 and at most 1, e.g. 0.8",
        "plans.yaml:9: plans.free.alerts.limits[0]: 'burst' is a token_bucket, which refills "
        "continuously: its usage has no period to alert on; expected a limit with algorithm "
        "fixed_window, sliding_window, sliding_log",
        "plans.yaml:9: plans.free.alerts.limits[1]: the plan has no limit 'daily'; expected "
        "one of burst, hourly",
        "plans.yaml:10: plans.free.alerts.when: unknown key 'when'; expected one of "
        "thresholds, limits",
        f"plans.yaml:12: plans.paid.alerts.thresholds: no thresholds; expected {expected}, "
        "e.g. [0.8, 1.0]",
        "plans.yaml:12: plans.paid.alerts.limits[0]: the plan has no limit 'hourly'; expected "
        "one of none",
    ]


def test_alerts_watch_quotas_and_long_windows_unless_limits_are_named() -> None:
    plans = build_plans([RuleFile("plans.yaml", textwrap.dedent("""
        plans:
          free:
            limits:
              - {name: per_second, unit: second, requests_per_unit: 5, algorithm: token_bucket}
              - {name: per_minute, unit: minute, requests_per_unit: 50}
              - {name: hourly, unit: hour, requests_per_unit: 500, algorithm: sliding_window}
              - {name: monthly, unit: month, requests_per_unit: 5000, calendar: true}
            alerts: {thresholds: [0.8, 1]}
          named:
            limits:
              - {name: per_minute, unit: minute, requests_per_unit: 50}
              - {name: monthly, unit: month, requests_per_unit: 5000, calendar: true}
            alerts: {thresholds: [0.5], limits: [per_minute]}
          none:
            limits:
              - {name: monthly, unit: month, requests_per_unit: 5000, calendar: true}
        """))]).plans
    free, named, none = plans["free"], plans["named"], plans["none"]
    assert free.alerts is not None and free.alerts.thresholds == (Fraction(4, 5), Fraction(1))
    assert [x.name for x in free.limits if free.alerted(x)] == ["hourly", "monthly"]
    assert [x.name for x in named.limits if named.alerted(x)] == ["per_minute"]
    assert not any(none.alerted(x) for x in none.limits)


def test_a_plan_in_two_files_and_a_missing_plans_file_are_errors(tmp_path: Path) -> None:
    with pytest.raises(RuleSetError, match=r"plan .free. is also in a\.yaml"):
        build_plans([RuleFile("a.yaml", GOOD), RuleFile("b.yaml", GOOD)])
    with pytest.raises(RuleSetError, match="no plans file found"):
        load_plans(str(tmp_path))


def test_overrides_are_checked_by_the_same_code_and_merge_by_name() -> None:
    plan = build_plans([RuleFile("p.yaml", GOOD)]).plans["free"]
    customer = check_limits([{"name": "per_minute", "unit": "minute", "requests_per_unit": 10}],
                            "free")
    key = check_limits([{"name": "daily", "unit": "day", "requests_per_unit": 7,
                         "calendar": True}], "free")
    merged = merge_limits(plan.limits, customer, key)
    assert [(m.name, m.requests_per_unit) for m in merged] == [
        ("per_minute", 10), ("monthly", 5), ("daily", 7)]
    with pytest.raises(RuleSetError) as info:
        check_limits([{"name": "x", "unit": "second", "requests_per_unit": -1}], "free")
    assert info.value.errors[0].path == "limits[0].requests_per_unit"
    with pytest.raises(RuleSetError, match="not a list"):
        check_limits({"name": "x"}, "free")


async def test_a_bad_reload_keeps_the_good_plans(tmp_path: Path) -> None:
    (tmp_path / "plans.yaml").write_text(GOOD)
    seen: list[str] = []
    manager = PlansManager(str(tmp_path), poll_interval=0.2,
                           on_change=lambda p: seen.append(p.version))
    assert manager.load() and manager.current is not None
    manager.start(asyncio.get_running_loop())
    try:
        (tmp_path / "plans.yaml").write_text(GOOD.replace("unit: minute", "unit: fortnight"))
        for _ in range(100):
            if manager.status.errors:
                break
            await asyncio.sleep(0.05)
        assert manager.status.errors == 1 and "fortnight" in manager.status.last_error
        assert manager.current.plans["free"].limits[0].unit == Unit.MINUTE
        (tmp_path / "plans.yaml").write_text(GOOD.replace("requests_per_unit: 3",
                                                          "requests_per_unit: 30"))
        for _ in range(100):
            if len(seen) == 2:
                break
            await asyncio.sleep(0.05)
        assert manager.current.plans["free"].limits[0].requests_per_unit == 30
    finally:
        await manager.stop()


def test_a_concurrency_limit_is_no_plan_limit() -> None:
    assert problems("""
        plans:
          free:
            limits:
              - {name: sockets, algorithm: concurrency}
        """) == [
        "plans.yaml:5: plans.free.limits[0].algorithm: a plan's limits are rates, and a key "
        "verification holds no lease; expected one of fixed_window, sliding_window, "
        "sliding_log, token_bucket, leaky_bucket; concurrency limits belong in the rules, held "
        "with /v1/leases"]
