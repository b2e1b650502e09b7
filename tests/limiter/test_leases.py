"""Leases through the engine on the memory store with a fake clock: holders at once, release,
renewal, expiry, several descriptors, shadow mode, ids, metrics, and the rate check's read."""

from __future__ import annotations

import re

import pytest

from sidecar.errors import LeaseNotFound, NoRulesError, RequestError
from sidecar.limiter.engine import Engine
from sidecar.limiter.lease_ids import decode_id, encode_id
from sidecar.limiter.leases import Leases
from sidecar.limiter.options import EngineOptions
from sidecar.model import Code, Descriptor
from sidecar.observability.metrics import Metrics
from sidecar.storage.memory import MemoryStore
from tests.conftest import FakeClock
from tests.limiter.kit import make_rules

RULES = """
domain: ws
descriptors:
  - key: identifier
    rate_limit: {algorithm: concurrency, max: 5, lease_ttl: 60s}
  - key: export
    rate_limit: {algorithm: concurrency, max: 2, lease_ttl: 30s, name: exports}
  - key: region
    rate_limit: {algorithm: concurrency, max: 3, lease_ttl: 1m}
  - key: trial
    shadow_mode: true
    rate_limit: {algorithm: concurrency, max: 1, lease_ttl: 60s}
  - key: route
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: room
    value: "lobby*"
    share_threshold: true
    rate_limit: {algorithm: concurrency, max: 2, lease_ttl: 10s}
"""
USER = [(("identifier", "user_1"),)]


def desc_of(key: str, value: str) -> list[tuple[tuple[str, str], ...]]:
    return [((key, value),)]


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def engine(store: MemoryStore, clock: FakeClock) -> Engine:
    engine = Engine(store, EngineOptions(), clock=clock)
    engine.set_rules(make_rules(RULES))
    return engine


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def leases(engine: Engine, metrics: Metrics) -> Leases:
    return Leases(engine, metrics)


async def test_five_allowed_the_sixth_refused(leases: Leases) -> None:
    taken = [await leases.acquire("ws", USER) for _ in range(5)]
    assert [d.allowed for d in taken] == [True] * 5
    assert [d.statuses[0].active for d in taken] == [1, 2, 3, 4, 5]
    assert all(d.lease_id is not None for d in taken)
    assert len({d.lease_id for d in taken}) == 5
    sixth = await leases.acquire("ws", USER)
    assert not sixth.allowed and sixth.lease_id is None
    status = sixth.statuses[0]
    assert (status.active, status.expires_at_ms) == (5, None)
    assert status.limit is not None and status.limit.requests_per_unit == 5
    assert status.retry_after_ms == 60_000  # the earliest lease held expires a TTL from now


async def test_every_identifier_has_its_own_slots(leases: Leases) -> None:
    for _ in range(5):
        await leases.acquire("ws", USER)
    other = await leases.acquire("ws", desc_of("identifier", "user_2"))
    assert other.allowed and other.statuses[0].active == 1


async def test_release_frees_a_slot(leases: Leases) -> None:
    taken = [await leases.acquire("ws", USER) for _ in range(5)]
    assert not (await leases.acquire("ws", USER)).allowed
    released = await leases.release(taken[2].lease_id or "")
    assert released.allowed and released.lease_id is None
    assert released.statuses[0].active == 4
    again = await leases.acquire("ws", USER)
    assert again.allowed and again.statuses[0].active == 5


async def test_a_released_or_unknown_lease_is_not_found(leases: Leases) -> None:
    lease = await leases.acquire("ws", USER)
    assert lease.lease_id is not None
    await leases.release(lease.lease_id)
    with pytest.raises(LeaseNotFound, match="expired, was released"):
        await leases.release(lease.lease_id)
    with pytest.raises(LeaseNotFound):
        await leases.renew(lease.lease_id)
    for bad in ("", "x", "not-a-lease.id", "A" * 24 + ".!!!", "A" * 24 + ".WyJ3cyJd"):
        with pytest.raises(LeaseNotFound, match="is not a lease id"):
            await leases.release(bad)


async def test_a_holder_that_stops_renewing_loses_its_slot_after_the_ttl(
        leases: Leases, clock: FakeClock) -> None:
    taken = [await leases.acquire("ws", USER) for _ in range(5)]
    clock.advance(59.999)
    assert not (await leases.acquire("ws", USER)).allowed
    clock.advance(0.001)  # 60 s: every lease taken at 0 has expired
    fresh = await leases.acquire("ws", USER)
    assert fresh.allowed and fresh.statuses[0].active == 1
    with pytest.raises(LeaseNotFound):
        await leases.renew(taken[0].lease_id or "")


async def test_renew_extends_by_the_ttl_from_now(leases: Leases, clock: FakeClock) -> None:
    lease = await leases.acquire("ws", USER, ttl_ms=10_000)
    assert lease.lease_id is not None
    assert lease.statuses[0].expires_at_ms == int(clock() * 1000) + 10_000
    for _ in range(5):  # 40 s held with renewals every 8 s, four times its ttl
        clock.advance(8)
        renewed = await leases.renew(lease.lease_id)
        assert renewed.lease_id == lease.lease_id
        # the acquire's ttl again, from now
        assert renewed.statuses[0].expires_at_ms == int(clock() * 1000) + 10_000
        assert renewed.statuses[0].active == 1
    longer = await leases.renew(lease.lease_id, ttl_ms=30_000)
    assert longer.statuses[0].expires_at_ms == int(clock() * 1000) + 30_000
    clock.advance(29)
    assert (await leases.renew(lease.lease_id)).allowed
    clock.advance(10.001)
    with pytest.raises(LeaseNotFound):
        await leases.renew(lease.lease_id)


async def test_ttl_is_at_most_the_rules_lease_ttl(leases: Leases) -> None:
    with pytest.raises(RequestError, match=r"ttl: 61 s is longer than the lease_ttl of the "
                                           r"rule ws.identifier \(60 s\)") as info:
        await leases.acquire("ws", USER, ttl_ms=61_000)
    assert info.value.field == "ttl"
    lease = await leases.acquire("ws", USER)
    with pytest.raises(RequestError, match="exports"):
        await leases.acquire("ws", desc_of("export", "x"), ttl_ms=31_000)
    with pytest.raises(RequestError):
        await leases.renew(lease.lease_id or "", ttl_ms=120_000)
    assert (await leases.acquire("ws", USER)).statuses[0].active == 2  # nothing was held


async def test_several_descriptors_hold_every_slot_or_none(leases: Leases) -> None:
    both = [(("export", "u1"),), (("region", "eu"),)]
    first = await leases.acquire("ws", both)
    second = await leases.acquire("ws", both)
    assert first.allowed and second.allowed
    assert [s.active for s in second.statuses] == [2, 2]
    # the export slots of u1 are full: the region slot it took is given back
    third = await leases.acquire("ws", both)
    assert not third.allowed and third.lease_id is None
    assert [(s.allowed, s.active) for s in third.statuses] == [(False, 2), (True, 2)]
    region = await leases.acquire("ws", [(("region", "eu"),)])
    assert region.allowed and region.statuses[0].active == 3
    # a release frees both of a lease's slots
    await leases.release(first.lease_id or "")
    assert (await leases.acquire("ws", [(("export", "u1"),)])).allowed


async def test_a_lease_that_lost_one_slot_gives_up_the_others(
        leases: Leases, store: MemoryStore, clock: FakeClock) -> None:
    lease = await leases.acquire("ws", [(("export", "u1"),), (("region", "eu"),)])
    # the export slot expires (30 s) while the region one (60 s) would hold
    clock.advance(45)
    with pytest.raises(LeaseNotFound):
        await leases.renew(lease.lease_id or "")
    region = await leases.acquire("ws", [(("region", "eu"),)])
    assert region.statuses[0].active == 1


async def test_descriptors_without_a_concurrency_limit_hold_nothing(leases: Leases) -> None:
    for descriptors in ([(("route", "/a"),)], [(("nothing", "x"),)]):
        decision = await leases.acquire("ws", descriptors)
        assert decision.allowed and decision.lease_id is None
        assert decision.statuses[0].limit is None
    unknown = await leases.acquire("no-such-domain", USER)
    assert unknown.allowed and unknown.lease_id is None
    mixed = await leases.acquire("ws", [(("route", "/a"),), (("export", "u"),)])
    assert mixed.lease_id is not None
    assert [s.limit is not None for s in mixed.statuses] == [False, True]


async def test_shadow_mode_takes_the_slot_over_max_and_allows(leases: Leases,
                                                              metrics: Metrics) -> None:
    first = await leases.acquire("ws", desc_of("trial", "t"))
    second = await leases.acquire("ws", desc_of("trial", "t"))
    assert first.allowed and second.allowed and second.lease_id is not None
    assert second.statuses[0].active == 2
    samples = _samples(metrics, "viva_ratelimit_lease_acquires_total")
    assert samples[("ws", "trial", "", "allowed")] == 1
    assert samples[("ws", "trial", "", "shadow")] == 1


async def test_global_shadow_mode_too(store: MemoryStore, clock: FakeClock) -> None:
    engine = Engine(store, EngineOptions(shadow_mode=True), clock=clock)
    engine.set_rules(make_rules(RULES))
    leases = Leases(engine)
    decisions = [await leases.acquire("ws", desc_of("export", "x")) for _ in range(3)]
    assert all(d.allowed for d in decisions) and decisions[2].statuses[0].active == 3


async def test_share_threshold_counts_every_matching_value_together(leases: Leases) -> None:
    assert (await leases.acquire("ws", desc_of("room", "lobby-1"))).allowed
    assert (await leases.acquire("ws", desc_of("room", "lobby-2"))).allowed
    assert not (await leases.acquire("ws", desc_of("room", "lobby-3"))).allowed


async def test_lease_ids_are_random_and_carry_the_request(leases: Leases) -> None:
    lease = await leases.acquire("ws", USER, ttl_ms=5000)
    assert lease.lease_id is not None
    token, _, _ = lease.lease_id.partition(".")
    assert re.fullmatch(r"[A-Za-z0-9_-]{24}", token)  # 18 random bytes: 144 bits
    ref = decode_id(lease.lease_id)
    assert (ref.domain, ref.descriptors, ref.ttl_ms) == ("ws", USER, 5000)
    # the same request with any other token names no lease: the token is the secret part
    forged = encode_id("B" * 24, "ws", USER, 5000)
    with pytest.raises(LeaseNotFound):
        await leases.release(forged)
    assert (await leases.renew(lease.lease_id)).allowed


async def test_renew_and_release_follow_the_rules_in_force(leases: Leases,
                                                           engine: Engine) -> None:
    lease = await leases.acquire("ws", USER)
    engine.set_rules(make_rules(RULES.replace("max: 5, lease_ttl: 60s", "max: 9, lease_ttl: 5s")))
    renewed = await leases.renew(lease.lease_id or "")  # the acquire's ttl was the rule's
    assert renewed.statuses[0].ttl_ms == 5000
    engine.set_rules(make_rules("domain: ws\ndescriptors:\n  - key: other\n"
                                "    rate_limit: {unit: minute, requests_per_unit: 1}\n"))
    with pytest.raises(LeaseNotFound, match="no concurrency limit applies"):
        await leases.renew(lease.lease_id or "")


async def test_no_rules_and_bad_requests(store: MemoryStore, clock: FakeClock) -> None:
    leases = Leases(Engine(store, clock=clock))
    with pytest.raises(NoRulesError):
        await leases.acquire("ws", USER)
    leases.engine.set_rules(make_rules(RULES))
    with pytest.raises(RequestError):
        await leases.acquire("", USER)
    with pytest.raises(RequestError):
        await leases.acquire("ws", [])


async def test_the_gauge_counts_the_leases_held_until_released_or_expired(
        leases: Leases, metrics: Metrics, clock: FakeClock) -> None:
    ids = [(await leases.acquire("ws", desc_of("identifier", f"u{i}"))).lease_id
           for i in range(3)]
    await leases.acquire("ws", desc_of("export", "x"), ttl_ms=1000)
    gauge = "viva_ratelimit_leases_active"
    assert _samples(metrics, gauge) == {("ws", "identifier", ""): 3, ("ws", "export", ""): 1}
    await leases.release(ids[0] or "")
    clock.advance(1)
    leases.prune()
    assert _samples(metrics, gauge) == {("ws", "identifier", ""): 2, ("ws", "export", ""): 0}
    await leases.renew(ids[1] or "")  # held until 61 s; the third lease until 60 s
    clock.advance(59.5)
    leases.prune()
    assert _samples(metrics, gauge)[("ws", "identifier", "")] == 1
    assert len(leases.book) == 1


async def test_refusals_are_counted_per_rule(leases: Leases, metrics: Metrics) -> None:
    for _ in range(3):
        await leases.acquire("ws", desc_of("export", "x"))
    samples = _samples(metrics, "viva_ratelimit_lease_acquires_total")
    assert samples[("ws", "export", "", "allowed")] == 2
    assert samples[("ws", "export", "", "refused")] == 1


async def test_memory_forgets_a_lease_table_once_its_leases_are_gone(
        leases: Leases, store: MemoryStore, clock: FakeClock) -> None:
    lease = await leases.acquire("ws", USER)
    await leases.acquire("ws", desc_of("identifier", "u2"), ttl_ms=1000)
    assert len(store) == 2
    await leases.release(lease.lease_id or "")
    assert len(store) == 1  # the last lease of a table gone: the table is gone
    clock.advance(2)
    await store.run([], [], int(clock() * 1000), False)  # any call sweeps what has expired
    store.increment_now([], int(clock()))
    assert len(store) == 0


# -- the rate check's read ---------------------------------------------------------------------


async def test_a_rate_check_reads_the_holders_and_never_takes_a_slot(
        leases: Leases, engine: Engine, clock: FakeClock) -> None:
    check = [Descriptor((("export", "x"),))]
    for _ in range(3):  # reading, however often, holds nothing; none held: reset one TTL
        decision = await engine.should_rate_limit("ws", check)
        status = decision.statuses[0]
        assert (decision.overall, status.remaining, status.reset_ms) == (Code.OK, 1, 30_000)
    first = await leases.acquire("ws", desc_of("export", "x"), ttl_ms=10_000)
    decision = await engine.should_rate_limit("ws", check)
    status = decision.statuses[0]
    assert (decision.overall, status.remaining, status.reset_ms) == (Code.OK, 0, 10_000)
    await leases.acquire("ws", desc_of("export", "x"))
    clock.advance(4)
    decision = await engine.should_rate_limit("ws", check)
    status = decision.statuses[0]
    assert (decision.overall, status.remaining, status.reset_ms) == (Code.OVER_LIMIT, 0, 6000)
    assert status.limit is not None and status.limit.requests_per_unit == 2
    peek = await engine.should_rate_limit("ws", [Descriptor((("export", "x"),), hits_addend=0)])
    assert peek.overall == Code.OK  # hits 0: a peek, as for every algorithm
    await leases.release(first.lease_id or "")
    assert (await engine.should_rate_limit("ws", check)).overall == Code.OK
    assert (await leases.acquire("ws", desc_of("export", "x"))).allowed


async def test_a_report_reads_too(leases: Leases, engine: Engine) -> None:
    for _ in range(3):
        decision = await engine.should_rate_limit("ws", [Descriptor((("export", "y"),))], 1,
                                                  charge_always=True)
        assert decision.overall == Code.OK
    assert (await leases.acquire("ws", desc_of("export", "y"))).statuses[0].active == 1


def _samples(metrics: Metrics, name: str) -> dict[tuple[str, ...], float]:
    out = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sample.labels.values())] = sample.value
    return out


async def test_a_refused_lease_counts_as_refused_on_each_of_its_rules(
        leases: Leases, metrics: Metrics) -> None:
    both = [(("export", "u9"),), (("region", "r9"),)]
    await leases.acquire("ws", [(("export", "u9"),)])
    await leases.acquire("ws", [(("export", "u9"),)])
    assert not (await leases.acquire("ws", both)).allowed
    samples = _samples(metrics, "viva_ratelimit_lease_acquires_total")
    assert samples[("ws", "export", "", "refused")] == 1
    assert samples[("ws", "region", "", "refused")] == 1  # taken, then given back
    assert ("ws", "region", "", "allowed") not in samples
    assert _samples(metrics, "viva_ratelimit_leases_active").get(("ws", "region", "")) is None
