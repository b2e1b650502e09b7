"""Random rule sets and request streams for the parity properties, and the two engines side by
side: the Python engine on its memory store and the native engine, one fake clock, one fixed
jitter sequence.

Rule sets are YAML documents built from a small vocabulary and loaded by the real loader, so
every extension is exercised as validated: wildcards (shared or not), value_to_metric,
detailed_metric, shadow and quota mode, replaces, unlimited, the five algorithms with bursts,
count_rejected, unit multipliers, windows and calendar windows in time zones, atomic domains.
Requests draw their values from the same vocabulary plus arbitrary text.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import yaml
from hypothesis import strategies as st

from sidecar.limiter.engine import Engine
from sidecar.limiter.local_cache import LocalCache
from sidecar.limiter.native import NativeEngineAdapter
from sidecar.limiter.options import EngineOptions
from sidecar.model import RATE_ALGORITHMS, Algorithm, Descriptor, RateLimit, Unit
from sidecar.rules.loader import RuleFile, build_rules
from sidecar.rules.model import RuleSet
from sidecar.storage.algorithms import Check, Rate
from sidecar.storage.memory import MemoryStore
from sidecar.transports.rls_proto import envoy_override
from tests.conftest import FakeClock
from tests.limiter.kit import RecordingStats

ALGORITHMS = tuple(str(a) for a in RATE_ALGORITHMS)  # concurrency is not native
DOMAIN = "d"
KEYS = ("a", "b", "a_b")
VALUES = ("x", "xy", "yx", "1.2.3.4", "é:|")
PATTERNS = ("x*", "*y", "*", "x*y")
NAMES = ("A", "B", "C")
UNITS = ("second", "minute", "hour", "day", "week", "month", "year")
CALENDAR_UNITS = ("day", "week", "month", "year")
ZONES = ("UTC", "America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kathmandu",
         "America/Santiago", "Pacific/Chatham")
T0_MS = 1_800_000_000_000  # 2027-01-15


def drive(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends (the memory store) without an event loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the coroutine suspended")


class FixedRandom(random.Random):
    """randrange(n) gives the fixed values in turn (modulo n), as the native jitter does."""

    def __init__(self, values: list[int]) -> None:
        super().__init__(0)
        self.values = values
        self.next = 0

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        assert stop is None and step == 1 and start > 0
        value = self.values[self.next % len(self.values)] % start
        self.next += 1
        return value


# -- rule sets -------------------------------------------------------------------------------


@st.composite
def rate_limits(draw: st.DrawFn, calendar_ok: bool, short_ok: bool) -> dict[str, Any]:
    name = draw(st.sampled_from(("", *NAMES)))
    out: dict[str, Any] = {"name": name} if name else {}
    others = [n for n in NAMES if n != name]
    replaces = draw(st.lists(st.sampled_from(others), max_size=2, unique=True))
    if replaces:
        out["replaces"] = [{"name": n} for n in replaces]
    if draw(st.integers(0, 9)) == 0:
        return {**out, "unlimited": True}
    algorithm = draw(st.sampled_from(ALGORITHMS))
    out.update(algorithm=algorithm, requests_per_unit=draw(st.integers(0, 6)))
    shape = draw(st.sampled_from(("unit", "multiplier", "window", "calendar")))
    if shape == "calendar" and calendar_ok and algorithm == "fixed_window":
        out.update(unit=draw(st.sampled_from(CALENDAR_UNITS)), calendar=True)
    elif shape == "window":
        windows = ("1s", "90s", "2m", "1h30m", "2d") if short_ok else ("90s", "2m", "1h30m")
        out["window"] = draw(st.sampled_from(windows))
    else:
        out["unit"] = draw(st.sampled_from(UNITS if short_ok else UNITS[1:]))
        if shape == "multiplier":
            out["unit_multiplier"] = draw(st.integers(1, 3))
    if algorithm in ("token_bucket", "leaky_bucket") and draw(st.booleans()):
        out["burst"] = draw(st.integers(1, 6))
    if algorithm in ("fixed_window", "sliding_window") and draw(st.booleans()):
        out["count_rejected"] = draw(st.booleans())
    return out


@st.composite
def descriptor_trees(draw: st.DrawFn, depth: int, calendar_ok: bool,
                     short_ok: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _ in range(draw(st.integers(1 if depth == 0 else 0, 4 if depth == 0 else 2))):
        key = draw(st.sampled_from(KEYS))
        value = draw(st.sampled_from(("", "", *VALUES, *PATTERNS)))
        final = f"{key}_{value}" if value else key
        if final in seen:
            continue
        seen.add(final)
        node: dict[str, Any] = {"key": key}
        if value:
            node["value"] = value
        for flag in ("shadow_mode", "quota_mode", "detailed_metric", "value_to_metric"):
            if draw(st.integers(0, 5)) == 0:
                node[flag] = True
        if "*" in value and draw(st.booleans()):
            node["share_threshold"] = True
        if draw(st.integers(0, 3)) > 0:
            node["rate_limit"] = draw(rate_limits(calendar_ok, short_ok))
        if depth < 2 and draw(st.booleans()):
            children = draw(descriptor_trees(depth + 1, calendar_ok, short_ok))
            if children:
                node["descriptors"] = children
        out.append(node)
    return out


@st.composite
def rule_docs(draw: st.DrawFn, calendar_ok: bool = True, short_ok: bool = True) -> dict[str, Any]:
    doc: dict[str, Any] = {"domain": DOMAIN,
                           "descriptors": draw(descriptor_trees(0, calendar_ok, short_ok))}
    if draw(st.booleans()):
        doc["atomic"] = draw(st.booleans())
    if draw(st.integers(0, 3)) == 0:
        doc["count_rejected"] = draw(st.booleans())
    doc["time_zone"] = draw(st.sampled_from(ZONES))
    return doc


def build(doc: dict[str, Any]) -> RuleSet:
    return build_rules([RuleFile("rules.yaml", yaml.safe_dump(doc, allow_unicode=True))])


# -- requests --------------------------------------------------------------------------------


@st.composite
def value_for(draw: st.DrawFn, pattern: str) -> str:
    """A request value for a rule value: itself, a match of its wildcard, or anything."""
    if "*" in pattern and draw(st.booleans()):
        parts = pattern.split("*")
        fills = [draw(st.sampled_from(("", "x", "zz", "é"))) for _ in parts[1:]]
        return parts[0] + "".join(f + p for f, p in zip(fills, parts[1:], strict=True))
    if pattern and draw(st.integers(0, 4)):
        return pattern
    return draw(st.sampled_from(("", *VALUES)) | st.text(max_size=3))


@st.composite
def rule_paths(draw: st.DrawFn, doc: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """Entries that walk down the rules (most of the time) or anywhere."""
    entries: list[tuple[str, str]] = []
    level: list[dict[str, Any]] = doc["descriptors"]
    while level:
        node = draw(st.sampled_from(level))
        key = node["key"] if draw(st.integers(0, 9)) else draw(st.sampled_from(KEYS))
        entries.append((key, draw(value_for(node.get("value", "")))))
        level = node.get("descriptors", [])
        if not level or draw(st.integers(0, 2)) == 0:
            break
    return tuple(entries)


@st.composite
def descriptors(draw: st.DrawFn, doc: dict[str, Any]) -> Descriptor:
    if draw(st.integers(0, 5)):
        entries = draw(rule_paths(doc))
    else:
        n = draw(st.integers(0, 3))
        entries = tuple((draw(st.sampled_from(KEYS)),
                         draw(st.sampled_from(("", *VALUES)) | st.text(max_size=3)))
                        for _ in range(n))
    hits = draw(st.none() | st.none() | st.integers(0, 4))
    limit = None
    if draw(st.integers(0, 8)) == 0:  # Envoy's override, as the RLS adapter makes it
        unit = draw(st.integers(0, 7) if draw(st.integers(0, 9)) == 0 else st.integers(1, 7))
        limit = envoy_override(DOMAIN, entries, draw(st.integers(0, 5)), Unit(unit))
    elif draw(st.integers(0, 8)) == 0:  # a limit the caller computed itself
        limit = draw(explicit_limits())
    return Descriptor(entries, hits, limit)


@st.composite
def explicit_limits(draw: st.DrawFn) -> RateLimit:
    algorithm = Algorithm(draw(st.sampled_from(ALGORITHMS)))
    calendar = algorithm == Algorithm.FIXED_WINDOW and draw(st.booleans())
    unit = Unit[draw(st.sampled_from(CALENDAR_UNITS if calendar else UNITS)).upper()]
    counting = algorithm in (Algorithm.FIXED_WINDOW, Algorithm.SLIDING_WINDOW)
    return RateLimit(
        requests_per_unit=draw(st.integers(0, 6)), unit=unit,
        stats_key=draw(st.sampled_from(("d.explicit", "d.a"))),
        name=draw(st.sampled_from(("", *NAMES))), unlimited=draw(st.integers(0, 9)) == 0,
        shadow_mode=draw(st.booleans()), quota_mode=draw(st.booleans()),
        replaces=tuple(draw(st.lists(st.sampled_from(NAMES), max_size=1))),
        algorithm=algorithm,
        window_ms=0 if calendar else draw(st.sampled_from((0, 0, 90_000, 2_000))),
        burst=draw(st.integers(0, 5)) if algorithm in (Algorithm.TOKEN_BUCKET,
                                                       Algorithm.LEAKY_BUCKET) else 0,
        count_rejected=counting and draw(st.booleans()), calendar=calendar)


@dataclass(frozen=True)
class Call:
    step_ms: int
    domain: str
    descriptors: tuple[Descriptor, ...]
    hits_addend: int
    charge_always: bool


STEPS_MS = (0, 0, 0, 1, 7, 250, 999, 1000, 1001, 30_000, 60_000, 3_600_000, 86_400_000,
            2_678_400_000)


@st.composite
def calls(draw: st.DrawFn, pool: list[Descriptor], whole_seconds: bool,
          max_step_ms: int | None = None) -> Call:
    step = draw(st.sampled_from([s for s in STEPS_MS
                                 if max_step_ms is None or s <= max_step_ms]))
    step -= step % (1000 if whole_seconds else 1)
    domain = DOMAIN if draw(st.integers(0, 14)) else draw(st.sampled_from(("other", "")))
    descs = tuple(draw(st.lists(st.sampled_from(pool), min_size=0 if domain == "" else 1,
                                max_size=3)))
    return Call(step, domain, descs, draw(st.integers(0, 3)), draw(st.integers(0, 6)) == 0)


@dataclass(frozen=True)
class Scenario:
    rules: RuleSet
    stream: list[Call]


@st.composite
def scenarios(draw: st.DrawFn, whole_seconds: bool, short_ok: bool = True,
              max_step_ms: int | None = None, max_calls: int = 30) -> Scenario:
    """A rule set and a stream of calls repeating a few descriptors of it (so limits are
    reached, cached, replaced, shadowed ...)."""
    doc = draw(rule_docs(short_ok=short_ok))
    pool = draw(st.lists(descriptors(doc), min_size=1, max_size=6))
    stream = draw(st.lists(calls(pool, whole_seconds, max_step_ms),
                           min_size=min(4, max_calls), max_size=max_calls))
    return Scenario(build(doc), stream)


@st.composite
def engine_options(draw: st.DrawFn) -> EngineOptions:
    return EngineOptions(
        cache_key_prefix=draw(st.sampled_from(("", "p_"))),
        near_limit_ratio=draw(st.sampled_from((0.8, 0.5, 0.29))),
        shadow_mode=draw(st.integers(0, 5)) == 0,
        quota_mode=draw(st.integers(0, 5)) == 0,
        stop_increment_when_over_limit=draw(st.booleans()),
        expiration_jitter_max_seconds=draw(st.sampled_from((0, 300))),
        response_headers=draw(st.booleans()),
    )


# -- the two engines -------------------------------------------------------------------------


@dataclass
class Sides:
    """The Python engine (memory store) and the native one over the same rules and clock."""

    python: Engine
    native: NativeEngineAdapter
    clock: FakeClock
    stats: RecordingStats
    cache_hits: Counter[tuple[str, str]] = field(default_factory=Counter)

    @classmethod
    def make(cls, native_module: Any, rules: RuleSet, options: EngineOptions, jitter: list[int],
             local_cache: bool, start_ms: int) -> Sides:
        clock = FakeClock(start_ms / 1000)
        stats = RecordingStats()
        sides = cls(Engine(MemoryStore(), options, stats, clock, FixedRandom(jitter)),
                    NativeEngineAdapter(native_module, options, clock, jitter=jitter,
                                        local_cache_bytes=1 << 24 if local_cache else 0),
                    clock, stats)
        if local_cache:
            sides.python.local_cache = LocalCache(1 << 24, sides._cache_hit)
        sides.python.set_rules(rules)
        sides.native.set_rules(rules)
        return sides

    def _cache_hit(self, domain: str, stats_key: str, hits: int) -> None:
        self.cache_hits[(domain, stats_key)] += hits

    def both(self, call: Call) -> tuple[Any, Any]:
        """Each engine's decision, or the type and text of the error it raised."""
        args = (call.domain, list(call.descriptors), call.hits_addend)
        try:
            py: Any = drive(self.python.should_rate_limit(*args, charge_always=call.charge_always))
        except Exception as exc:
            py = (type(exc), str(exc))
        try:
            nat: Any = self.native.decide(*args, charge_always=call.charge_always)
        except Exception as exc:
            nat = (type(exc), str(exc))
        return py, nat

    def stats_match(self) -> None:
        """Every per-rule counter, not-found and shadow count, and cache hit, equal."""
        snapshot = self.native.engine.take_stats()
        rules, not_found, global_shadow, cache_total = (snapshot[0], snapshot[1], snapshot[2],
                                                        snapshot[3])
        native_rules = {(d, k): {"total": t, "over": o, "near": n, "within": w, "shadow": s}
                        for d, k, t, o, n, w, s, _ in rules}
        python_rules = {(self.stats.domains[k], k): self.stats.of(k) for k in self.stats.rules}
        assert native_rules == {k: v for k, v in python_rules.items() if any(v.values())}
        assert dict(not_found) == dict(self.stats.not_found)
        assert global_shadow == self.stats.global_shadow_count
        native_cache = {(d, k): c for d, k, *_, c in rules if c}
        assert native_cache == {k: hits for k, hits in self.cache_hits.items() if hits}
        if self.python.local_cache is not None:
            assert cache_total == self.python.local_cache.hits


def python_store_expires_states_in_ms() -> bool:
    """Whether the Python memory store keeps algorithm states to the millisecond (the native
    store does). Before that fix its states lived in whole seconds, and the parity streams step
    the clock in whole seconds, where both agree."""
    store = MemoryStore()
    check = Check("k", Algorithm.TOKEN_BUCKET, Rate(1, 10_000.0, 1, False), 1, 1500.0, 0.0)
    store.run_now((), [check], 1_999, False)
    return not store.run_now((), [check], 3_200, False)[1][0].allowed
