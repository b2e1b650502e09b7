"""The native engine (``sidecar._native``, built from ``native/`` when cargo is on the PATH at
install time) with this package's vocabulary; the one module that knows both the Python model
and the native engine's plain data.

- ``load()`` returns the extension module when it is built and allowed (``VIVA_NATIVE=false``
  forces the pure-Python path), else why not.
- ``compile_rules`` walks a validated ``RuleSet`` (descriptor trees, limits, domain options,
  the TZif data of each domain's time zone) into what ``_native.compile_rules`` takes; called
  on every reload, so the crate never reads YAML.
- ``NativeEngineAdapter`` gives the native engine the engine's shape: ``Descriptor`` in,
  ``Decision`` out (the flat integers it returns are turned back into ``DescriptorStatus``
  objects, rule limits found again by id, a descriptor's own limit given back as it came),
  native errors as ``sidecar.errors``, its per-rule counters replayed into a ``RuleStats``
  sink on demand, and Redis calls as batches (``redis_batch`` / ``decisions``).
"""

from __future__ import annotations

import importlib
import os
import time
import zoneinfo
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from sidecar.errors import NoRulesError, RequestError, StorageError
from sidecar.limiter.options import EngineOptions
from sidecar.limiter.statuses import RuleStats
from sidecar.model import Code, Decision, Descriptor, DescriptorStatus, RateLimit
from sidecar.rules.model import DescriptorNode, DomainOptions, RuleSet

if TYPE_CHECKING:
    from sidecar import _native


NO_LIMIT, OWN_LIMIT = -1, -2
STATUS_FIELDS = 7  # integers per descriptor status, as _native.STATUS_FIELDS


@dataclass(frozen=True)
class Extension:
    """The native extension when it runs (``module``), else None and why not (``reason``)."""

    module: ModuleType | None
    reason: str


def load(enabled: bool = True) -> Extension:
    """The native extension, unless ``enabled`` is false (VIVA_NATIVE=false) or it is not
    built (installed without cargo on the PATH). Logs nothing: the composition root says in
    one line which path runs, with ``reason``."""
    if not enabled:
        return Extension(None, "VIVA_NATIVE=false")
    try:
        module = importlib.import_module("sidecar._native")
    except ImportError as exc:
        return Extension(None, f"sidecar._native is not built: {exc}")
    return Extension(module, f"sidecar._native {module.__version__}")


@dataclass(frozen=True)
class NativeRules:
    """Compiled rules and the Python limits they came from (index = the native limit id)."""

    compiled: _native.CompiledRules
    limits: tuple[RateLimit, ...]


def compile_rules(native: Any, rules: RuleSet) -> NativeRules:
    """``rules`` as the native engine's compiled rules; ValueError names what cannot be."""
    walk = _Walk()
    domains = []
    for name, root in rules.domains.items():
        options = rules.options.get(name)
        zone = options.time_zone if options is not None else "UTC"
        policy = options.failure_policy if options is not None else None
        # Every domain gets its zone: a limit a request brings may be a calendar window too.
        domains.append((name, walk.node(root), options is not None and options.atomic,
                        str(policy) if policy is not None else None, zone, zone_data(zone)))
    compiled = native.compile_rules(walk.limit_rows, walk.node_rows, domains)
    return NativeRules(compiled, tuple(walk.limits))


class _Walk:
    """Numbers every node and limit once (a shared object keeps one number)."""

    def __init__(self) -> None:
        self.limits: list[RateLimit] = []
        self.limit_rows: list[tuple[Any, ...]] = []
        self.node_rows: list[tuple[Any, ...]] = []
        self._limit_ids: dict[int, int] = {}
        self._node_ids: dict[int, int] = {}

    def node(self, node: DescriptorNode) -> int:
        found = self._node_ids.get(id(node))
        if found is not None:
            return found
        children = [(key, self.node(child)) for key, child in node.children.items()]
        wildcards = [(parts, self.node(child)) for _, parts, child in node.wildcards]
        limit = self.limit(node.limit) if node.limit is not None else None
        self.node_rows.append((node.key, node.value, limit, children, wildcards,
                               node.value_to_metric, node.share_threshold))
        self._node_ids[id(node)] = len(self.node_rows) - 1
        return len(self.node_rows) - 1

    def limit(self, limit: RateLimit) -> int:
        found = self._limit_ids.get(id(limit))
        if found is not None:
            return found
        self.limits.append(limit)
        self.limit_rows.append((
            limit.requests_per_unit, int(limit.unit), limit.stats_key, limit.name,
            limit.unlimited, limit.shadow_mode, limit.quota_mode, limit.detailed_metric,
            tuple(limit.replaces), str(limit.algorithm), limit.window_ms, limit.burst,
            limit.count_rejected, limit.calendar))
        self._limit_ids[id(limit)] = len(self.limits) - 1
        return len(self.limits) - 1


def zone_data(name: str) -> bytes:
    """The TZif file ``ZoneInfo(name)`` reads: the first on ``zoneinfo.TZPATH``, else the one
    of the ``tzdata`` package (zoneinfo's documented search order)."""
    parts = name.split("/")
    if os.path.isabs(name) or ".." in parts or not name:
        raise ValueError(f"time zone {name!r} is not a zone name")
    for folder in zoneinfo.TZPATH:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with open(path, "rb") as fh:
                return fh.read()
    package = ".".join(["tzdata.zoneinfo", *parts[:-1]])
    try:
        return resources.files(package).joinpath(parts[-1]).read_bytes()
    except (ImportError, FileNotFoundError) as exc:
        raise ValueError(f"time zone {name!r} has no TZif data: {exc}") from exc


def engine_kwargs(options: EngineOptions) -> dict[str, Any]:
    """The native engine's keyword arguments for ``options``."""
    return {
        "cache_key_prefix": options.cache_key_prefix,
        "near_limit_ratio": options.near_limit_ratio,
        "shadow_mode": options.shadow_mode,
        "quota_mode": options.quota_mode,
        "stop_increment_when_over_limit": options.stop_increment_when_over_limit,
        "expiration_jitter_max_seconds": options.expiration_jitter_max_seconds,
        "response_headers": options.response_headers,
        "limit_header": options.limit_header,
        "remaining_header": options.remaining_header,
        "reset_header": options.reset_header,
    }


# (domain, descriptors, hits_addend, charge_always)
Call = tuple[str, Sequence[Descriptor], int, bool]


@dataclass(frozen=True)
class PlannedBatch:
    """A Redis batch with the rules it was planned under (limit ids are theirs)."""

    batch: _native.RedisBatch
    rules: NativeRules | None
    calls: list[Call]


class NativeStatsSink(RuleStats, Protocol):
    """Where the native engine's counters go on export (``observability.metrics.Metrics``)."""

    def over_limit_with_local_cache(self, domain: str, stats_key: str, hits: int) -> None: ...

    def local_cache_hits_counted(self, descriptors: int) -> None: ...

    def policy_decision(self, domain: str, policy: str, count: int = 1) -> None: ...


class Redis(Protocol):
    """How the adapter reaches Redis: ``native_redis.NativeRedis``."""

    def submit(self, request: tuple[Any, ...]) -> Awaitable[tuple[Any, NativeRules | None]]: ...


class NativeEngineAdapter:
    """The native engine with the Python engine's shape: ``should_rate_limit`` (the one seam
    of every transport), ``set_rules``, ``rules``, ``clock``; on its memory store, or on
    Redis through ``redis`` (``attach_redis``). ``decide``, ``redis_batch`` and
    ``decisions`` are the same calls without the event loop."""

    def __init__(self, native: Any, options: EngineOptions | None = None,
                 clock: Callable[[], float] = time.time, **native_options: Any) -> None:
        self.native = native
        self.engine: _native.NativeEngine = native.NativeEngine(
            **engine_kwargs(options or EngineOptions()), **native_options)
        self.clock = clock
        self.rules: RuleSet | None = None
        self.compiled: NativeRules | None = None
        self.redis: Redis | None = None
        self._owned: dict[DomainOptions, Any] = {}

    def attach_redis(self, redis: Redis) -> None:
        """Charge through ``redis`` instead of the memory store (once, before serving)."""
        self.redis = redis

    def set_rules(self, rules: RuleSet) -> None:
        compiled = compile_rules(self.native, rules)
        self.engine.set_rules(compiled.compiled)
        self.compiled = compiled
        self.rules = rules

    async def should_rate_limit(self, domain: str, descriptors: Sequence[Descriptor],
                                hits_addend: int = 0, *, charge_always: bool = False,
                                options: DomainOptions | None = None) -> Decision:
        """As ``Engine.should_rate_limit``."""
        if self.redis is None:
            return self.decide(domain, descriptors, hits_addend, charge_always=charge_always,
                               options=options)
        now_ms = int(self.clock() * 1000)
        owned = self._options(options) if options is not None else None
        answer, compiled = await self.redis.submit(
            (domain, descriptors, hits_addend, now_ms, charge_always, owned))
        if isinstance(answer, Exception):
            raise translate(self.native, answer)
        return to_decision(answer, compiled, domain, descriptors)

    def decide(self, domain: str, descriptors: Sequence[Descriptor], hits_addend: int = 0, *,
               charge_always: bool = False, options: DomainOptions | None = None) -> Decision:
        """One decision on the memory store, now."""
        now_ms = int(self.clock() * 1000)
        owned = self._options(options) if options is not None else None
        try:
            answer = self.engine.decide(domain, descriptors, hits_addend, now_ms, charge_always,
                                        owned)
        except Exception as exc:
            raise translate(self.native, exc) from None
        return to_decision(answer, self.compiled, domain, descriptors)

    def _options(self, options: DomainOptions) -> Any:
        """``options`` compiled once (full mode passes the same few objects every call)."""
        owned = self._owned.get(options)
        if owned is None:
            policy = options.failure_policy
            zone = options.time_zone
            owned = self.native.DomainOptions(
                atomic=options.atomic, failure_policy=str(policy) if policy else None,
                time_zone=zone, tzif=zone_data(zone))
            if len(self._owned) >= 64:  # a bound, should options ever be made per call
                self._owned.clear()
            self._owned[options] = owned
        return owned

    def redis_batch(self, calls: Sequence[Call]) -> PlannedBatch:
        """Plan ``calls`` for Redis now: the batch holds the pipeline to send (see
        ``_native.RedisBatch``); ``decisions`` reads the answers once it is done."""
        now_ms = int(self.clock() * 1000)
        batch = self.engine.redis_batch([(domain, descriptors, hits, now_ms, always)
                                         for domain, descriptors, hits, always in calls])
        return PlannedBatch(batch, self.compiled, list(calls))

    def decisions(self, planned: PlannedBatch) -> list[Decision | Exception]:
        """Per call of a finished batch: its decision, or the sidecar error it ended with."""
        out: list[Decision | Exception] = []
        for result, (domain, descriptors, _, _) in zip(planned.batch.results(), planned.calls,
                                                       strict=True):
            if isinstance(result, Exception):
                out.append(translate(self.native, result))
            else:
                out.append(to_decision(result, planned.rules, domain, descriptors))
        return out

    def replay_stats(self, stats: RuleStats) -> Any:
        """Hand what the engine counted since the last call to ``stats``; return the native
        snapshot (local-cache, failure-policy and overflow counts too)."""
        snapshot = self.engine.take_stats()
        rules, not_found, global_shadow = snapshot[0], snapshot[1], snapshot[2]
        for domain, key, total, over, near, within, shadow, _ in rules:
            stats.record(domain, key, total, over, near, within, shadow)
        for domain, count in not_found:
            for _ in range(count):
                stats.domain_not_found(domain)
        for _ in range(global_shadow):
            stats.global_shadow()
        return snapshot

    def export_stats(self, sink: NativeStatsSink) -> None:
        """Everything the engine counted since the last export, into ``sink`` (the same
        metrics the Python engine records as it goes)."""
        snapshot = self.replay_stats(sink)
        for domain, key, *_, cache_hits in snapshot[0]:
            if cache_hits:
                sink.over_limit_with_local_cache(domain, key, cache_hits)
        if snapshot[3]:
            sink.local_cache_hits_counted(snapshot[3])
        for domain, policy, count in snapshot[4]:
            sink.policy_decision(domain, policy, count)


def translate(native: Any, exc: Exception) -> Exception:
    """A native error as the sidecar's own."""
    if isinstance(exc, native.RequestError):
        return RequestError(str(exc))
    if isinstance(exc, native.NoRulesError):
        return NoRulesError()
    if isinstance(exc, native.StorageError):
        message, transient = exc.args
        return StorageError(message, transient)
    return exc


def to_decision(answer: _native.DecisionTuple, rules: NativeRules | None, domain: str,
                descriptors: Sequence[Descriptor]) -> Decision:
    """The native decision tuple as a ``Decision`` (``domain`` is the request's)."""
    overall, flat, headers = answer
    statuses = []
    for i in range(0, len(flat), STATUS_FIELDS):
        code, limit_id, _, _, remaining, reset_s, reset_ms = flat[i:i + STATUS_FIELDS]
        limit: RateLimit | None = None
        if limit_id >= 0 and rules is not None:
            limit = rules.limits[limit_id]
        elif limit_id == OWN_LIMIT:  # the descriptor's own, given back as it came
            limit = descriptors[i // STATUS_FIELDS].limit
        statuses.append(DescriptorStatus(Code(code), limit, remaining, reset_s,
                                         None if reset_ms < 0 else reset_ms))
    return Decision(Code(overall), statuses, list(headers))
