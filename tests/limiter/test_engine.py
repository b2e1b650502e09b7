"""Engine semantics (reference §3, cases TC-02..TC-39) on the memory store and a fake clock."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from sidecar.errors import NoRulesError, RequestError, StorageError
from sidecar.limiter.engine import Engine
from sidecar.limiter.fixed_window import near_threshold
from sidecar.limiter.options import EngineOptions
from sidecar.model import (
    UNIT_SECONDS,
    UNLIMITED_REMAINING,
    Algorithm,
    Code,
    Decision,
    Descriptor,
    RateLimit,
    Unit,
)
from sidecar.rules.model import DomainOptions
from sidecar.storage.algorithms import Check, Verdict
from sidecar.storage.base import Increment
from sidecar.storage.memory import MemoryStore
from tests.conftest import FakeClock
from tests.limiter.kit import BASIC_RULES, EXAMPLE_RULES, RecordingStats, desc, make_rules

OK, OVER = Code.OK, Code.OVER_LIMIT
NOW = 1_000_000  # the FakeClock's start; its minute window began at 999960, 20 s left
MINUTE_START = 999_960


class Rig:
    """An engine on a memory store with recorded stats; jitter off unless asked for."""

    def __init__(self, clock: FakeClock, rules: Sequence[str], **options: Any) -> None:
        options.setdefault("expiration_jitter_max_seconds", 0)
        self.clock = clock
        self.store = MemoryStore()
        self.stats = RecordingStats()
        self.engine = Engine(self.store, EngineOptions(**options), self.stats, clock)
        self.engine.set_rules(make_rules(*rules))

    async def check(self, domain: str, *descriptors: Descriptor, hits: int = 0) -> Decision:
        return await self.engine.should_rate_limit(domain, list(descriptors), hits)

    async def codes(self, domain: str, *descriptors: Descriptor,
                    hits: int = 0) -> tuple[Code, list[Code]]:
        d = await self.check(domain, *descriptors, hits=hits)
        return d.overall, [s.code for s in d.statuses]

    async def repeat(self, times: int, domain: str, *descriptors: Descriptor) -> list[Code]:
        """The overall code of ``times`` identical requests."""
        return [(await self.check(domain, *descriptors)).overall for _ in range(times)]

    def seed(self, key: str, value: int) -> None:
        """Put ``value`` hits on counter ``key`` as if earlier requests had made them."""
        self.store.increment_now([Increment(key, value, 3600)], int(self.clock()))

    def value(self, key: str) -> int | None:
        entry = self.store._counters.get(key)
        return entry[0] if entry is not None else None


MakeRig = Callable[..., Rig]


@pytest.fixture
def rig(clock: FakeClock) -> MakeRig:
    def make(*rules: str, **options: Any) -> Rig:
        return Rig(clock, rules or (BASIC_RULES,), **options)

    return make


def remaining(d: Decision) -> list[int]:
    return [s.remaining for s in d.statuses]


def per_unit(d: Decision) -> list[int | None]:
    return [s.limit.requests_per_unit if s.limit else None for s in d.statuses]


# -- statuses and the overall code -----------------------------------------------------------


async def test_statuses_follow_request_order(rig: MakeRig) -> None:
    r = rig()
    d = await r.check("test-domain", desc(("key2", "a")), desc(("nomatch", "x")),
                      desc(("key1", "value1"), ("subkey1", "s")), desc(("key2", "value2")))
    assert d.overall == OK
    assert per_unit(d) == [20, None, 5, 30]
    assert remaining(d) == [19, 0, 4, 29]
    assert [s.limit.unit if s.limit else None for s in d.statuses] == [
        Unit.MINUTE, None, Unit.SECOND, Unit.MINUTE]
    assert d.statuses[1].reset_seconds == 0  # no limit: no duration either


async def test_one_over_limit_descriptor_makes_the_request_over(rig: MakeRig) -> None:
    r = rig()
    await r.repeat(3, "test-domain", desc(("three", "x")))
    assert await r.codes("test-domain", desc(("key2", "a")), desc(("three", "x"))) == (
        OVER, [OK, OVER])


async def test_nth_hit_of_an_n_limit_is_ok_with_nothing_left(rig: MakeRig) -> None:
    r = rig()
    results = [await r.check("test-domain", desc(("three", "x"))) for _ in range(4)]
    assert [d.overall for d in results] == [OK, OK, OK, OVER]
    assert [d.statuses[0].remaining for d in results] == [2, 1, 0, 0]
    assert r.stats.of("test-domain.three") == {
        "total": 4, "over": 1, "near": 1, "within": 3, "shadow": 0}


async def test_name_is_echoed_in_current_limit(rig: MakeRig) -> None:
    d = await rig().check("test-domain", desc(("key4", "foo")), desc(("key3", "foo")))
    assert d.statuses[0].limit is not None and d.statuses[0].limit.name == "key4_rate_limit"
    assert d.statuses[1].limit is not None and d.statuses[1].limit.name == ""


# -- hits_addend -----------------------------------------------------------------------------


async def test_request_hits_addend_zero_counts_as_one(rig: MakeRig) -> None:
    r = rig()
    await r.check("test-domain", desc(("three", "x")), hits=0)
    assert r.value(f"test-domain_three_x_{MINUTE_START}") == 1


async def test_request_hits_addend_is_added_to_every_descriptor(rig: MakeRig) -> None:
    r = rig()
    d = await r.check("test-domain", desc(("three", "x")), desc(("key2", "y")), hits=3)
    assert remaining(d) == [0, 17]
    assert (await r.check("test-domain", desc(("three", "x")))).overall == OVER
    assert r.stats.of("test-domain.key2")["total"] == 3


async def test_descriptor_hits_addend_wins_over_the_request_one(rig: MakeRig) -> None:
    r = rig()
    d = await r.check("test-domain", desc(("key2", "y"), hits=2), desc(("key3", "z")), hits=5)
    assert remaining(d) == [18, 5]


async def test_descriptor_hits_addend_zero_checks_without_consuming(rig: MakeRig) -> None:
    r = rig()
    key = f"test-domain_three_x_{MINUTE_START}"
    d = await r.check("test-domain", desc(("three", "x"), hits=0))
    assert (d.overall, remaining(d)) == (OK, [3])
    assert r.value(key) == 0  # INCRBY key 0 still creates the key, as Redis does
    await r.check("test-domain", desc(("three", "x"), hits=3))
    d = await r.check("test-domain", desc(("three", "x"), hits=0))
    assert (d.overall, remaining(d)) == (OK, [0])  # count == limit is not over
    assert r.value(key) == 3
    assert r.stats.of("test-domain.three")["total"] == 3


async def test_hits_addend_may_exceed_the_limit(rig: MakeRig) -> None:
    r = rig()
    d = await r.check("test-domain", desc(("key2", "y"), hits=25))
    assert d.overall == OVER
    assert r.stats.of("test-domain.key2") == {
        "total": 25, "over": 5, "near": 4, "within": 0, "shadow": 0}


# -- Envoy's limit override (TC-06) ----------------------------------------------------------


async def test_limit_override_replaces_the_rules_and_shares_one_stats_key(rig: MakeRig) -> None:
    r = rig()
    entries = (("key1", "value1"), ("subkey1", "something"))
    d = await r.check("test-domain", desc(*entries, limit=(10, Unit.DAY)))
    status = d.statuses[0]
    assert status.limit is not None
    assert (status.limit.requests_per_unit, status.limit.unit, status.remaining) == (
        10, Unit.DAY, 9)
    assert status.reset_seconds == 86400 - NOW % 86400
    d = await r.check("test-domain", desc(*entries, limit=(42, Unit.HOUR)))
    assert d.statuses[0].limit is not None
    assert (d.statuses[0].limit.requests_per_unit, d.statuses[0].limit.unit) == (42, Unit.HOUR)
    assert r.stats.of("test-domain.key1_value1.subkey1_something")["total"] == 2
    assert set(r.store._counters) == {"test-domain_key1_value1_subkey1_something_950400",
                                      "test-domain_key1_value1_subkey1_something_997200"}
    await r.check("test-domain", desc(("key1", "value1"), ("subkey1", "something_else"),
                                      limit=(10, Unit.DAY)))
    assert r.stats.of("test-domain.key1_value1.subkey1_something_else")["total"] == 1


async def test_limit_override_is_never_shadowed(rig: MakeRig) -> None:
    r = rig()
    d = await r.check("test-domain", desc(("shadowed", "x"), limit=(1, Unit.MINUTE), hits=2))
    assert d.overall == OVER


async def test_limit_override_on_an_unknown_domain_gives_no_limit(rig: MakeRig) -> None:
    r = rig()
    d = await r.check("foo_domain", desc(("key1", "value1"), limit=(10, Unit.DAY),
                                         domain="foo_domain"))
    assert (d.overall, d.statuses[0].limit) == (OK, None)
    assert r.stats.not_found["foo_domain"] == 1
    assert len(r.store) == 0


async def test_limit_override_with_an_unknown_unit_names_the_field(rig: MakeRig) -> None:
    r = rig()
    with pytest.raises(RequestError, match=r"descriptors\[1\]\.limit\.unit: 0 is not a unit"):
        await r.check("test-domain", desc(("key2", "a")),
                      desc(("k", "v"), limit=(5, Unit.UNKNOWN)))
    assert len(r.store) == 0  # nothing was charged


# -- a caller that owns its domain (options=): explicit limits, no rules --------------------


def _explicit(rpu: int, unit: Unit = Unit.MINUTE, **more: Any) -> RateLimit:
    return RateLimit(requests_per_unit=rpu, unit=unit, stats_key="keys.pro.per_minute", **more)


async def test_a_caller_owning_its_domain_needs_no_rules(clock: FakeClock) -> None:
    engine = Engine(MemoryStore(), EngineOptions(expiration_jitter_max_seconds=0), clock=clock)
    one = Descriptor((("key", "key_1"), ("limit", "per_minute")), limit=_explicit(2))
    own = DomainOptions()
    codes = [(await engine.should_rate_limit("keys", [one], options=own)).overall
             for _ in range(3)]
    assert codes == [OK, OK, OVER]
    bare = await engine.should_rate_limit("keys", [Descriptor((("k", "v"),))], options=own)
    assert (bare.overall, bare.statuses[0].limit) == (OK, None)  # no limit of its own: none
    with pytest.raises(NoRulesError):  # without options, the rules decide as always
        await engine.should_rate_limit("keys", [one])


async def test_an_owned_domain_runs_the_limits_algorithm_and_ignores_the_rules(
        rig: MakeRig) -> None:
    r = rig()
    bucket = _explicit(1, Unit.SECOND, algorithm=Algorithm.TOKEN_BUCKET, burst=3,
                       count_rejected=False, name="burst")
    entries = (("key", "key_1"), ("limit", "burst"))
    own = DomainOptions()
    codes = [(await r.engine.should_rate_limit("unknown-domain", [Descriptor(entries,
                                                                             limit=bucket)],
                                               options=own)).overall for _ in range(4)]
    assert codes == [OK, OK, OK, OVER]
    assert r.stats.of("keys.pro.per_minute")["over"] == 1
    assert r.stats.not_found == {}
    # the same descriptor without options: an unknown domain gives no limit (the reference)
    d = await r.check("unknown-domain", Descriptor(entries, limit=bucket))
    assert (d.overall, d.statuses[0].limit) == (OK, None)


async def test_explicit_options_make_a_request_atomic(rig: MakeRig) -> None:
    r = rig()
    small, big = _explicit(1, name="small"), _explicit(5, name="big")
    pair = [Descriptor((("k", "a"),), limit=small), Descriptor((("k", "b"),), limit=big)]
    atomic = DomainOptions(atomic=True)
    for _ in range(3):
        await r.engine.should_rate_limit("keys", pair, options=atomic)
    d = await r.engine.should_rate_limit("keys", pair[1:], options=atomic)
    assert d.statuses[0].remaining == 3  # charged once with "small", not on its refusals


# -- unlimited, replaces, whitelists, unknown domains ----------------------------------------


async def test_unlimited_is_never_counted(rig: MakeRig) -> None:
    r = rig()
    d = await r.check("test-domain", desc(("key2", "a")), desc(("nomatch", "x")),
                      desc(("key6", "foo")))
    assert d.overall == OK
    assert [s.code for s in d.statuses] == [OK, OK, OK]
    assert remaining(d) == [19, 0, UNLIMITED_REMAINING]
    assert d.statuses[2].limit is None
    assert list(r.store._counters) == [f"test-domain_key2_a_{MINUTE_START}"]
    assert set(r.stats.rules) == {"test-domain.key2"}


CHAIN_RULES = """
domain: chain
descriptors:
  - key: a
    rate_limit: {name: A, unit: minute, requests_per_unit: 1, replaces: [{name: B}]}
  - key: b
    rate_limit: {name: B, unit: minute, requests_per_unit: 1}
  - key: c
    rate_limit: {name: C, unit: minute, requests_per_unit: 5, replaces: [{name: A}]}
  - key: u
    rate_limit: {unlimited: true, name: U}
  - key: v
    rate_limit: {unit: minute, requests_per_unit: 1, replaces: [{name: U}]}
  - key: w
    rate_limit: {unlimited: true, replaces: [{name: B}]}
"""


async def test_replaces_is_evaluated_over_the_whole_request(rig: MakeRig) -> None:
    r = rig(CHAIN_RULES)
    for _ in range(3):  # C drops A, A drops B: only C counts
        d = await r.check("chain", desc(("a", "1")), desc(("b", "1")), desc(("c", "1")))
        assert d.overall == OK
        assert per_unit(d) == [None, None, 5]
    assert list(r.store._counters) == [f"chain_c_1_{MINUTE_START}"]
    assert set(r.stats.rules) == {"chain.c"}


async def test_unlimited_wins_over_being_replaced_and_still_replaces(rig: MakeRig) -> None:
    r = rig(CHAIN_RULES)
    d = await r.check("chain", desc(("u", "1")), desc(("v", "1")))
    assert remaining(d) == [UNLIMITED_REMAINING, 0]
    assert await r.repeat(2, "chain", desc(("w", "1")), desc(("b", "1"))) == [OK, OK]


async def test_replaces_example_steps_tc36(rig: MakeRig) -> None:
    r = rig(EXAMPLE_RULES)
    banned = desc(("foo", "bkthomps"), ("bar", "banned"))
    my_foo = desc(("foo", "my_foo"), ("bar", "bkthomps"))

    def proxy(dest: str) -> Descriptor:
        return desc(("source_cluster", "proxy"), ("destination_cluster", dest))

    assert await r.repeat(1, "rl", banned) == [OVER]  # a: banned_limit is 0/min
    assert await r.repeat(1, "rl", banned, proxy("mock")) == [OVER]  # b
    assert await r.repeat(3, "rl", banned, proxy("override")) == [OK, OK, OVER]  # c
    assert await r.repeat(3, "rl", my_foo, proxy("bkthomps")) == [OK, OK, OVER]  # d
    assert await r.repeat(2, "rl", my_foo, proxy("not_bkthomps")) == [OK, OVER]  # e
    assert await r.repeat(1, "rl", my_foo, proxy("bkthomps")) == [OVER]  # f
    category = desc(("category", "account"))
    assert await r.repeat(5, "rl", my_foo, proxy("fake"), category) == [OK] * 4 + [OVER]  # g
    assert await r.repeat(2, "rl", desc(("foo", "foo_2"), ("bar", "bkthomps"))) == [OK, OVER]
    assert await r.repeat(3, "rl", desc(("foo", "foo_3"), ("bar", "bar_3")), proxy("fake")) == [
        OK, OK, OVER]  # i
    assert await r.repeat(1, "rl", my_foo, proxy("fake"), category) == [OVER]  # j


async def test_trigger_ratelimit_tc34(rig: MakeRig) -> None:
    r = rig(EXAMPLE_RULES)
    d = desc(("foo", "pelle"), ("baz", "not-so-shady"))
    assert await r.repeat(4, "rl", d) == [OK, OK, OK, OVER]


async def test_whitelisted_and_unmatched_descriptors_have_no_limit(rig: MakeRig) -> None:
    r = rig()
    for d in (desc(("key2", "value3")), desc(("key1", "something")), desc(("key1", "value1")),
              desc(("key2", "value2"), ("subkey", "subvalue")), desc()):
        decision = await r.check("test-domain", d)
        assert (decision.overall, decision.statuses[0].limit) == (OK, None)
    assert len(r.store) == 0
    assert per_unit(await r.check("test-domain", desc(("key2", "value4")))) == [20]


async def test_unknown_domain_is_all_ok_and_counted(rig: MakeRig) -> None:
    r = rig()
    d = await r.check("foo", desc(("hello", "world")), desc(("key2", "x")))
    assert d.overall == OK
    assert [(s.code, s.limit) for s in d.statuses] == [(OK, None), (OK, None)]
    assert r.stats.not_found == {"foo": 2}
    assert len(r.store) == 0
    await r.check("test-domain", desc())
    assert "test-domain" not in r.stats.not_found


# -- shadow mode -----------------------------------------------------------------------------


async def test_rule_shadow_mode_reports_ok_with_nothing_left(rig: MakeRig) -> None:
    r = rig()
    results = [await r.check("test-domain", desc(("shadowed", "x"))) for _ in range(4)]
    assert [d.overall for d in results] == [OK] * 4
    assert [d.statuses[0].code for d in results] == [OK] * 4
    assert [d.statuses[0].remaining for d in results] == [1, 0, 0, 0]
    assert r.stats.of("test-domain.shadowed") == {
        "total": 4, "over": 2, "near": 1, "within": 2, "shadow": 2}
    assert r.value(f"test-domain_shadowed_x_{MINUTE_START}") == 4  # still counted


async def test_shadow_rule_in_the_example_tc35(rig: MakeRig) -> None:
    r = rig(EXAMPLE_RULES)
    assert await r.repeat(6, "rl", desc(("foo", "pelle"), ("baz", "shady"))) == [OK] * 6
    assert r.stats.of("rl.foo.baz_shady")["shadow"] == 3


async def test_global_shadow_mode_keeps_statuses_but_answers_ok_tc14(rig: MakeRig) -> None:
    r = rig(shadow_mode=True)
    await r.repeat(3, "test-domain", desc(("three", "x")))
    assert await r.codes("test-domain", desc(("three", "x")), desc(("key2", "a"))) == (
        OK, [OVER, OK])
    assert r.stats.global_shadow_count == 1


# -- quota mode (TC-20, TC-38, TC-39) --------------------------------------------------------


async def test_global_quota_mode_all_over_is_over(rig: MakeRig) -> None:
    r = rig(quota_mode=True)
    d = await r.check("test-domain", desc(("three", "x"), hits=4), desc(("key3", "y"), hits=11))
    assert (d.overall, [s.code for s in d.statuses]) == (OVER, [OVER, OVER])


async def test_global_quota_mode_some_over_is_ok(rig: MakeRig) -> None:
    r = rig(quota_mode=True)
    d = await r.check("test-domain", desc(("three", "x"), hits=4), desc(("key3", "y")))
    assert (d.overall, [s.code for s in d.statuses]) == (OK, [OVER, OK])


async def test_global_quota_mode_counts_descriptors_without_a_limit(rig: MakeRig) -> None:
    # total_q counts every non-unlimited descriptor (reference §3.7), so one that has no
    # limit keeps "all quota descriptors over" from being true.
    r = rig(quota_mode=True)
    assert await r.codes("test-domain", desc(("three", "x"), hits=4), desc(("nomatch", "y"))) \
        == (OK, [OVER, OK])
    assert await r.codes("test-domain", desc(("three", "x")), desc(("key6", "y"))) == (
        OVER, [OVER, OK])  # unlimited descriptors are left out


async def test_quota_rules_some_over_is_ok(rig: MakeRig) -> None:
    r = rig()
    assert await r.codes("test-domain", desc(("quota_a", "x"), hits=2),
                         desc(("quota_b", "x"))) == (OK, [OVER, OK])


async def test_normal_over_with_quota_ok_is_over(rig: MakeRig) -> None:
    r = rig()
    assert await r.codes("test-domain", desc(("three", "x"), hits=4),
                         desc(("quota_b", "x"))) == (OVER, [OVER, OK])


async def test_normal_ok_with_the_only_quota_over_is_over(rig: MakeRig) -> None:
    r = rig()
    assert await r.codes("test-domain", desc(("three", "x")),
                         desc(("quota_a", "x"), hits=2)) == (OVER, [OK, OVER])


async def test_global_shadow_with_quota_all_over_is_ok(rig: MakeRig) -> None:
    r = rig(quota_mode=True, shadow_mode=True)
    assert await r.codes("test-domain", desc(("three", "x"), hits=4),
                         desc(("key3", "y"), hits=11)) == (OK, [OVER, OVER])
    assert r.stats.global_shadow_count == 1


async def test_quota_example_tc38(rig: MakeRig) -> None:
    r = rig(EXAMPLE_RULES)
    s1, s2 = desc(("service", "service_1")), desc(("service", "service_2"))
    assert await r.repeat(3, "rl", s1, s2) == [OK, OK, OVER]


async def test_token_quota_checks_with_addend_zero_tc39(rig: MakeRig) -> None:
    r = rig(EXAMPLE_RULES)
    checks = []
    for _ in range(4):
        checks.append((await r.check("rl", desc(("service", "service_2"), hits=0))).overall)
        await r.check("rl", desc(("service", "service_2"), hits=1))  # the response path
    assert checks == [OK, OK, OK, OVER]


# -- response headers (TC-15) ----------------------------------------------------------------


async def test_response_headers_from_the_over_limit_status(rig: MakeRig) -> None:
    r = rig(response_headers=True)
    r.clock.now = 2222
    d = await r.check("test-domain", desc(("hdr", "x"), limit=(10, Unit.MINUTE), hits=11),
                      desc(("nomatch", "y")))
    assert d.overall == OVER
    assert d.headers == [("RateLimit-Limit", "10"), ("RateLimit-Remaining", "0"),
                         ("RateLimit-Reset", "58")]


async def test_response_headers_with_custom_names(rig: MakeRig) -> None:
    r = rig(response_headers=True, limit_header="A-Ratelimit-Limit",
            remaining_header="A-Ratelimit-Remaining", reset_header="A-Ratelimit-Reset")
    r.clock.now = 2222
    d = await r.check("test-domain", desc(("hdr", "x"), limit=(10, Unit.MINUTE), hits=11))
    assert d.headers == [("A-Ratelimit-Limit", "10"), ("A-Ratelimit-Remaining", "0"),
                         ("A-Ratelimit-Reset", "58")]


async def test_response_headers_off_by_default(rig: MakeRig) -> None:
    d = await rig().check("test-domain", desc(("three", "x"), hits=4))
    assert d.headers == []


async def test_response_headers_pick_the_first_lowest_remaining(rig: MakeRig) -> None:
    r = rig(response_headers=True)
    d = await r.check("test-domain", desc(("key2", "a")), desc(("three", "x")),
                      desc(("three", "y")), desc(("nomatch", "z")))
    assert d.headers == [("RateLimit-Limit", "3"), ("RateLimit-Remaining", "2"),
                         ("RateLimit-Reset", "20")]


async def test_response_headers_last_non_quota_over_wins(rig: MakeRig) -> None:
    r = rig(response_headers=True)
    d = await r.check("test-domain", desc(("three", "x"), hits=4), desc(("key3", "x"), hits=11),
                      desc(("key2", "a")))
    assert d.headers == [("RateLimit-Limit", "10"), ("RateLimit-Remaining", "0"),
                         ("RateLimit-Reset", str(3600 - NOW % 3600))]


async def test_response_headers_quota_over_does_not_override(rig: MakeRig) -> None:
    r = rig(response_headers=True)
    d = await r.check("test-domain", desc(("key2", "a"), hits=18), desc(("quota_b", "x"),
                                                                        hits=3))
    assert d.overall == OVER  # the only quota descriptor is over
    # quota_b (remaining 0) is the lowest, and no non-quota status is over
    assert d.headers[:2] == [("RateLimit-Limit", "2"), ("RateLimit-Remaining", "0")]
    d = await r.check("test-domain", desc(("quota_b", "y"), hits=3), desc(("three", "x"),
                                                                          hits=4))
    assert d.headers[:2] == [("RateLimit-Limit", "3"), ("RateLimit-Remaining", "0")]


async def test_response_headers_survive_global_shadow_mode(rig: MakeRig) -> None:
    r = rig(response_headers=True, shadow_mode=True)
    d = await r.check("test-domain", desc(("three", "x"), hits=4))
    assert d.overall == OK
    assert d.headers[0] == ("RateLimit-Limit", "3")


# -- near-limit arithmetic in float32 (TC-24, TC-25) -----------------------------------------


async def test_near_and_over_arithmetic_tc24(rig: MakeRig) -> None:
    r = rig()
    fifteen_an_hour = desc(("k", "v"), limit=(15, Unit.HOUR))
    key, stats_key = f"test-domain_k_v_{NOW - NOW % 3600}", "test-domain.k_v"
    r.seed(key, 10)  # INCRBY answers 11: near threshold is 12
    d = await r.check("test-domain", fifteen_an_hour)
    assert (d.overall, remaining(d), r.stats.of(stats_key)["near"]) == (OK, [4], 0)
    r.seed(key, 1)  # 13
    d = await r.check("test-domain", fifteen_an_hour)
    assert (d.overall, remaining(d), r.stats.of(stats_key)["near"]) == (OK, [2], 1)
    r.seed(key, 2)  # 16
    d = await r.check("test-domain", fifteen_an_hour)
    assert (d.overall, remaining(d)) == (OVER, [0])
    assert r.stats.of(stats_key) == {"total": 3, "over": 1, "near": 1, "within": 2, "shadow": 0}


@pytest.mark.parametrize(("limit", "addend", "after", "code", "expected"), [
    (20, 3, 5, OK, {"total": 3, "over": 0, "near": 0, "within": 3, "shadow": 0}),
    (8, 2, 7, OK, {"total": 2, "over": 0, "near": 1, "within": 2, "shadow": 0}),
    (20, 3, 19, OK, {"total": 3, "over": 0, "near": 3, "within": 3, "shadow": 0}),
    (20, 3, 22, OVER, {"total": 3, "over": 2, "near": 1, "within": 0, "shadow": 0}),
    (20, 7, 22, OVER, {"total": 7, "over": 2, "near": 4, "within": 0, "shadow": 0}),
    (10, 3, 30, OVER, {"total": 3, "over": 3, "near": 0, "within": 0, "shadow": 0}),
])
async def test_hits_addend_arithmetic_tc25(rig: MakeRig, limit: int, addend: int, after: int,
                                           code: Code, expected: dict[str, int]) -> None:
    r = rig()
    r.seed(f"test-domain_k_v_{NOW}", after - addend)
    d = await r.check("test-domain", desc(("k", "v"), limit=(limit, Unit.SECOND), hits=addend))
    assert d.statuses[0].code == code
    assert d.statuses[0].remaining == max(0, limit - after)
    assert r.stats.of("test-domain.k_v") == expected


@pytest.mark.parametrize(("ratio", "limit", "before", "near_hits"), [
    (0.29, 100, 28, 0),  # float32 threshold 29 (float64 would say 28 and count 1)
    (0.21, 300, 62, 1),  # float32 threshold 62 (float64 would say 63 and count 0)
])
async def test_near_threshold_is_float32(rig: MakeRig, ratio: float, limit: int, before: int,
                                         near_hits: int) -> None:
    r = rig(near_limit_ratio=ratio)
    r.seed(f"test-domain_k_v_{NOW}", before)
    await r.check("test-domain", desc(("k", "v"), limit=(limit, Unit.SECOND)))
    assert r.stats.of("test-domain.k_v")["near"] == near_hits


def test_near_threshold_values() -> None:
    assert near_threshold(8, 0.8) == 6
    assert near_threshold(100, 0.29) == 29
    assert near_threshold(300, 0.21) == 62
    # Go multiplies two float32s and rounds the product to float32: 6.9999999 becomes 7.0.
    # (Reference §3.6 says 6 here; that is float32(ratio) times an exact 10, not Go's result.)
    assert near_threshold(10, 0.7) == 7


# -- STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT (TC-28) -----------------------------------------


@pytest.mark.parametrize("stop", [False, True])
async def test_stop_increment_when_over_limit(rig: MakeRig, stop: bool) -> None:
    r = rig(stop_increment_when_over_limit=stop)
    key2_left, overall = [], []
    for _ in range(15):
        d = await r.check("test-domain", desc(("key2", "r2")), desc(("key3", "r2")))
        key2_left.append(d.statuses[0].remaining)
        overall.append(d.overall)
    assert overall == [OK] * 10 + [OVER] * 5
    if stop:
        assert key2_left == [20 - i for i in range(1, 11)] + [10] * 5
        assert r.value(f"test-domain_key2_r2_{MINUTE_START}") == 10
    else:
        assert key2_left == [20 - i for i in range(1, 16)]
    assert r.value(f"test-domain_key3_r2_{NOW - NOW % 3600}") == 15


# -- errors ----------------------------------------------------------------------------------


async def test_empty_domain_is_a_request_error(rig: MakeRig) -> None:
    with pytest.raises(RequestError, match=r"^rate limit domain must not be empty$"):
        await rig().check("", desc(("key2", "a")))


async def test_empty_descriptor_list_is_a_request_error(rig: MakeRig) -> None:
    with pytest.raises(RequestError, match=r"^rate limit descriptor list must not be empty$"):
        await rig().check("test-domain")


async def test_no_rules_loaded(clock: FakeClock) -> None:
    engine = Engine(MemoryStore(), clock=clock)
    with pytest.raises(NoRulesError, match=r"^no rate limit configuration loaded$"):
        await engine.should_rate_limit("d", [desc(("k", "v"))])
    with pytest.raises(RequestError):  # request validation comes first, as in the reference
        await engine.should_rate_limit("", [desc(("k", "v"))])


class FailingStore(MemoryStore):
    async def run(self, increments: Sequence[Increment], checks: Sequence[Check], now_ms: int,
                  atomic: bool) -> tuple[list[int], list[Verdict]]:
        raise StorageError("cache error")


async def test_store_failure_propagates(clock: FakeClock) -> None:
    stats = RecordingStats()
    engine = Engine(FailingStore(), stats=stats, clock=clock)
    engine.set_rules(make_rules(BASIC_RULES))
    with pytest.raises(StorageError, match="cache error"):
        await engine.should_rate_limit("test-domain", [desc(("key2", "a"))])
    assert not stats.rules
    # descriptors that need no counter do not touch the store at all
    d = await engine.should_rate_limit("test-domain", [desc(("key6", "a"))])
    assert d.overall == OK


# -- windows and the fake clock --------------------------------------------------------------


async def test_next_window_starts_from_zero(rig: MakeRig) -> None:
    r = rig()
    results = [await r.check("test-domain", desc(("three", "x"))) for _ in range(4)]
    assert [d.statuses[0].reset_seconds for d in results] == [20] * 4
    r.clock.advance(19)
    d = await r.check("test-domain", desc(("three", "x")))
    assert (d.overall, d.statuses[0].reset_seconds) == (OVER, 1)
    r.clock.advance(1)  # now == the next window's start
    d = await r.check("test-domain", desc(("three", "x")))
    assert (d.overall, remaining(d), d.statuses[0].reset_seconds) == (OK, [2], 60)


@pytest.mark.parametrize("unit", [Unit.SECOND, Unit.MINUTE, Unit.HOUR, Unit.DAY, Unit.WEEK,
                                  Unit.MONTH, Unit.YEAR])
@pytest.mark.parametrize("now", [1_000_000, 1_000_000.75, 1_234_567_890, 86_400 * 10_000])
async def test_duration_until_reset(rig: MakeRig, unit: Unit, now: float) -> None:
    r = rig()
    r.clock.now = now
    d = await r.check("test-domain", desc(("k", "v"), limit=(5, unit)))
    window = UNIT_SECONDS[unit]
    assert d.statuses[0].reset_seconds == window - int(now) % window
    assert 1 <= d.statuses[0].reset_seconds <= window
