"""The native engine's Python surface: compiling rules, bad input, errors, batches, stats."""

from __future__ import annotations

from types import ModuleType

import pytest

from sidecar.errors import NoRulesError, RequestError, StorageError
from sidecar.limiter.native import STATUS_FIELDS, NativeEngineAdapter, compile_rules
from sidecar.limiter.options import EngineOptions
from sidecar.model import Code, Unit
from sidecar.storage.redis.scripts import script_sha, script_source
from tests.conftest import FakeClock
from tests.limiter.kit import BASIC_RULES, RecordingStats, desc, make_rules

LIMIT_ROW = (5, 1, "d.k", "", False, False, False, False, (), "fixed_window", 0, 0, True, False)


def adapter(native: ModuleType, clock: FakeClock | None = None, **options: object
            ) -> NativeEngineAdapter:
    engine = NativeEngineAdapter(native, EngineOptions(expiration_jitter_max_seconds=0),
                                 clock or FakeClock(), script_sha=script_sha(),
                                 script_source=script_source(), **options)
    engine.set_rules(make_rules(BASIC_RULES))
    return engine


def test_compiled_rules_keep_every_limit_once(native: ModuleType) -> None:
    rules = make_rules(BASIC_RULES)
    compiled = compile_rules(native, rules)
    assert compiled.compiled.domains == 1
    every = [limit for _, limit in rules.iter_limits()]
    assert sorted(map(id, compiled.limits)) == sorted(map(id, every))
    assert len(compiled.limits) == compiled.compiled.limits


@pytest.mark.parametrize(("limits", "nodes", "domains", "message"), [
    ([LIMIT_ROW[:3]], [], [], r"^limits\[0\]: a limit has 14 fields, not 3$"),
    ([(*LIMIT_ROW[:9], "sliding", *LIMIT_ROW[10:])], [], [],
     r"^limits\[0\] \(d\.k\): unknown algorithm 'sliding'$"),
    ([(*LIMIT_ROW[:10], 1500, *LIMIT_ROW[11:])], [], [],
     r"^limits\[0\] \(d\.k\): window of 1500 ms; expected whole seconds below 2\^53 ms$"),
    ([], [("k", "", None, [("x", 3)], [], False, False)], [],
     r"^nodes\[0\]: node 3 does not exist \(1 nodes\)$"),
    ([], [("d", "", None, [], [], False, False)], [("d", 0, False, "sometimes", "UTC", None)],
     r"^domain 'd': unknown failure policy 'sometimes'$"),
    ([], [("d", "", None, [], [], False, False)], [("d", 0, False, None, "X", b"nope")],
     r"^domain 'd': time zone 'X': not a TZif file: magic not found$"),
])
def test_compile_errors_name_the_item(native: ModuleType, limits: list, nodes: list,
                                      domains: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        native.compile_rules(limits, nodes, domains)


def test_errors_are_the_sidecars_own(native: ModuleType) -> None:
    engine = NativeEngineAdapter(native)
    with pytest.raises(RequestError, match=r"^rate limit domain must not be empty$"):
        engine.decide("", [desc(("k", "v"))])
    with pytest.raises(NoRulesError, match=r"^no rate limit configuration loaded$"):
        engine.decide("d", [desc(("k", "v"))])
    engine = adapter(native)
    with pytest.raises(RequestError, match=r"descriptors\[0\]\.limit\.unit: 0 is not a unit"):
        engine.decide("test-domain", [desc(("k", "v"), limit=(1, Unit.UNKNOWN))])
    with pytest.raises(RequestError, match=r"descriptors\[0\]\.hits_addend: 4294967296 is too "
                                           r"large; expected at most 4294967295"):
        engine.decide("test-domain", [desc(("k", "v"), hits=2**32)])


@pytest.mark.parametrize(("descriptors", "message"), [
    ([("not", "three")], r"^descriptors\[0\]: a descriptor tuple has 3 fields, not 2$"),
    ([((("k", 1),), None, None)], r"^descriptors\[0\]: entry keys and values are text$"),
    ([(("kv",), None, None)], r"^descriptors\[0\]: an entry is a \(key, value\) tuple$"),
    ([((("k", "v"),), -1, None)], r"^descriptors\[0\]: "),
    ([42], r"^descriptors\[0\]: "),
])
def test_malformed_descriptors_are_request_errors(native: ModuleType, descriptors: list,
                                                  message: str) -> None:
    engine = adapter(native)
    with pytest.raises(native.RequestError, match=message):
        engine.engine.decide("test-domain", descriptors, 0, 1_000_000_000)


def test_decisions_cross_as_integers_and_come_back_as_objects(native: ModuleType) -> None:
    assert native.STATUS_FIELDS == STATUS_FIELDS == 7
    engine = adapter(native)
    overall, flat, headers = engine.engine.decide(
        "test-domain", [((("key2", "a"),), None, None), ((("k", "v"),), 3, (7, 2))], 0,
        1_000_000_000)
    assert engine.compiled is not None
    key2 = next(i for i, limit in enumerate(engine.compiled.limits)
                if limit.stats_key == "test-domain.key2")
    assert (overall, headers) == (1, ())
    assert flat == (1, key2, 20, 2, 19, 20, -1,  # a rule's limit by id; reset 20 s
                    1, -2, 7, 2, 4, 20, -1)  # a limit Envoy sent: id -2, 7 per minute
    decision = engine.decide("test-domain", [desc(("key2", "a"))])
    assert decision.statuses[0].limit is engine.compiled.limits[key2]


def test_stats_are_read_and_reset_on_demand(native: ModuleType) -> None:
    engine = adapter(native)
    for _ in range(4):
        engine.decide("test-domain", [desc(("three", "x"))])
    engine.decide("nowhere", [desc(("k", "v")), desc(("k", "w"))])
    stats = RecordingStats()
    engine.replay_stats(stats)
    assert stats.of("test-domain.three") == {"total": 4, "over": 1, "near": 1, "within": 3,
                                             "shadow": 0}
    assert stats.not_found["nowhere"] == 2
    again = RecordingStats()
    engine.replay_stats(again)
    assert not again.rules and not again.not_found


def test_a_batch_keeps_the_rules_it_was_planned_under(native: ModuleType) -> None:
    engine = adapter(native)
    planned = engine.redis_batch([("test-domain", [desc(("three", "x"))], 0, False)])
    engine.set_rules(make_rules("domain: other\ndescriptors: []\n"))
    assert planned.batch.expected == 2
    planned.batch.feed(b":1\r\n:1\r\n")
    assert planned.batch.commands is None
    (decision,) = engine.decisions(planned)
    assert not isinstance(decision, Exception)
    assert decision.statuses[0].limit is not None
    assert decision.statuses[0].limit.stats_key == "test-domain.three"
    assert decision.statuses[0].remaining == 2


def test_a_batch_answers_errors_per_request(native: ModuleType) -> None:
    engine = adapter(native, failure_policy="unavailable")
    planned = engine.redis_batch([("", [desc(("k", "v"))], 0, False),
                                  ("test-domain", [desc(("key6", "x"))], 0, False),
                                  ("test-domain", [desc(("three", "x"))], 0, False)])
    assert planned.batch.expected == 2  # only the third reaches Redis
    planned.batch.fail("redis 127.0.0.1:1 did not answer within 15 ms", True)
    assert planned.batch.endpoint_failed
    bad, unlimited, failed = engine.decisions(planned)
    assert isinstance(bad, RequestError)
    assert not isinstance(unlimited, Exception) and unlimited.overall == Code.OK
    assert isinstance(failed, StorageError) and failed.transient
    assert str(failed) == "redis 127.0.0.1:1 did not answer within 15 ms"


def test_a_batch_refuses_replies_that_are_not_resp(native: ModuleType) -> None:
    engine = adapter(native, failure_policy="unavailable")
    planned = engine.redis_batch([("test-domain", [desc(("three", "x"))], 0, False)])
    planned.batch.feed(b":1\r\n")  # one reply of two
    (failed,) = engine.decisions(planned)
    assert isinstance(failed, StorageError) and not failed.transient
    assert str(failed) == "redis: unexpected reply: fewer than 2 replies"


def test_reply_end_finds_reply_boundaries(native: ModuleType) -> None:
    data = b"*2\r\n:1\r\n$3\r\nabc\r\n:7\r\n"
    assert native.reply_end(data, 1) == 17
    assert native.reply_end(data, 2) == len(data)
    assert native.reply_end(data, 3) is None
    assert native.reply_end(data[:10], 1) is None
    assert native.reply_end(data, 1, 17) == len(data)
    with pytest.raises(ValueError, match="does not start a RESP2 reply"):
        native.reply_end(b"hello\r\n", 1)


def test_the_local_cache_is_bounded_by_its_budget(native: ModuleType) -> None:
    clock = FakeClock()
    engine = adapter(native, clock, local_cache_bytes=4096)
    for i in range(200):
        key = ("k", f"user-{i}")
        engine.decide("test-domain", [desc(key, limit=(0, Unit.HOUR))])
    info = engine.engine.local_cache_info()
    assert info is not None
    entries, used, _, misses, evictions = info
    assert 0 < used <= 4096 and entries < 200 and evictions == 200 - entries
    assert misses == 200
    assert NativeEngineAdapter(native).engine.local_cache_info() is None


def test_the_memory_store_sweeps_expired_keys(native: ModuleType) -> None:
    clock = FakeClock()
    engine = adapter(native, clock)
    for i in range(1000):
        engine.decide("test-domain", [desc(("key1", "value1"), ("subkey1", f"u{i}"))])
    assert len(engine.engine) == 1000
    clock.advance(2)  # past their one-second windows
    engine.decide("test-domain", [desc(("key2", "a"))])
    assert len(engine.engine) == 1


def test_jitter_needs_values(native: ModuleType) -> None:
    with pytest.raises(ValueError, match="jitter: give at least one value"):
        native.NativeEngine(jitter=[])
    with pytest.raises(ValueError, match="failure_policy 'maybe' is not a failure policy"):
        native.NativeEngine(failure_policy="maybe")
    engine = native.NativeEngine()
    with pytest.raises(RuntimeError, match="needs the engine made with script_sha"):
        engine.redis_batch([])


def test_override_limits_come_back_with_their_stats_key(native: ModuleType) -> None:
    engine = adapter(native)
    decision = engine.decide("test-domain", [desc(("ip", "1.2.3.4"), limit=(3, Unit.DAY))])
    limit = decision.statuses[0].limit
    assert limit is not None
    assert (limit.requests_per_unit, limit.unit, limit.stats_key) == (
        3, Unit.DAY, "test-domain.ip_1_2_3_4")
