"""The native hot path, put together for the composition root: the native engine (on its
memory store or on a standalone Redis), its Redis link, the services of the fast gRPC
transport and of the fast HTTP/1.1 path that answer calls inside Rust, and the metrics they
count in Rust.

The native engine runs the memory store and a standalone Redis. Sentinel, Cluster and the
per-second split store (REDIS_PERSECOND) keep the Python engine, and so does a sidecar with
OpenTelemetry tracing on (its spans are made on the Python path); the fast transport's wire and
the HTTP/1.1 reader are native there too, and their calls go to the Python engine through the
service.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from sidecar.errors import RuleError, RuleSetError
from sidecar.limiter.native import NativeEngineAdapter
from sidecar.limiter.native_redis import NativeRedis
from sidecar.model import Algorithm
from sidecar.observability.health import Health
from sidecar.observability.metrics import Metrics
from sidecar.rules.loader import load_rules
from sidecar.rules.model import RuleSet
from sidecar.service import RateLimitService
from sidecar.settings import Settings
from sidecar.storage.memory import MemoryStore
from sidecar.storage.redis.breaker import Breaker
from sidecar.storage.redis.options import RedisOptions
from sidecar.storage.redis.resp import RespConnection
from sidecar.storage.redis.scripts import script_sha, script_source
from sidecar.transports.fast import export_native_counts
from sidecar.transports.rest import fast as rest_fast


def python_engine_reason(settings: Settings, tracing: bool,
                         rules: RuleSet | None = None) -> str | None:
    """Why the Python engine runs even with the extension built (None: the native one can).
    ``rules``: the rules as they stand at start-up (None: unreadable now; start-up reports
    why)."""
    if rules is not None and concurrency_limits(rules):
        return "the rules have concurrency limits (leases), which are not native yet"
    if tracing:
        # Spans for each call and store round trip are made on the Python path only.
        return "OpenTelemetry tracing is on"
    if settings.backend == "memory":
        return None
    if settings.redis_type != "single":
        return f"REDIS_TYPE={settings.redis_type} is not native yet"
    if settings.redis_persecond:
        return "REDIS_PERSECOND is not native yet"
    return None


def concurrency_limits(rules: RuleSet) -> list[str]:
    """The full keys of every concurrency limit in ``rules``."""
    return [key for key, limit in rules.iter_limits()
            if limit.algorithm == Algorithm.CONCURRENCY]


def peek_rules(settings: Settings) -> RuleSet | None:
    """The rules as the files say now, read once to choose the engine (the watcher reads them
    again to apply them); None when they do not load (start-up then says why)."""
    try:
        return load_rules(settings.rules_path, settings.merge_domain_config,
                          include_dotfiles=not settings.ignore_dotfiles)
    except (RuleSetError, OSError):
        return None


def native_rules_check(rules: RuleSet) -> None:
    """A reload the native engine cannot run is refused like invalid rules (the good ones stay
    in force): concurrency limits need the Python engine, chosen at start-up."""
    keys = concurrency_limits(rules)
    if keys:
        raise RuleSetError([RuleError(
            ", ".join(rules.files) or "rules", key,
            "algorithm concurrency runs on the Python engine, and this sidecar started on the "
            "native one (its rules had no concurrency limit then): restart it to load these "
            "rules, or set VIVA_NATIVE=0") for key in keys])


def store_series(metrics: Metrics, store: str) -> None:
    """The store metrics' series, exposed at 0 from the start as ObservedStore exposes them on
    the Python path (dashboards and alerts find them). On the memory store they stay at 0: it
    is part of the native engine, with no round trips to time."""
    for op in ("run", "get"):
        metrics.store_latency.labels(store, op)
    for kind in ("timeout", "StorageError"):
        metrics.store_errors.labels(store, kind)


def store_observer(metrics: Metrics) -> Callable[[float, str | None], None]:
    """Redis round trips into the store metrics ObservedStore keeps on the Python path."""
    latency = metrics.store_latency.labels("redis", "run")
    errors = {kind: metrics.store_errors.labels("redis", kind)
              for kind in ("timeout", "StorageError")}

    def observe(seconds: float, error: str | None) -> None:
        latency.observe(seconds)
        if error is not None:
            errors[error].inc()

    return observe


class NativePath:
    """The native engine and what serves it; ``engine`` takes the Python Engine's place."""

    def __init__(self, module: ModuleType, settings: Settings, metrics: Metrics,
                 engine_options: Any, redis: RedisOptions | None,
                 clock: Callable[[], float] = time.time) -> None:
        self.module = module
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.engine = NativeEngineAdapter(
            module, engine_options, clock, failure_policy=str(settings.failure_policy),
            local_cache_bytes=settings.local_cache_size, script_sha=script_sha(),
            script_source=script_source())
        self.redis: NativeRedis | None = None
        self.fast_service: Any = None
        self.http1_service: Any = None
        store_series(metrics, "memory" if redis is None else "redis")
        if redis is not None:
            connection = RespConnection(redis, module.reply_end)
            breaker = Breaker(redis.label, redis.breaker_failures, redis.breaker_cooldown,
                              metrics.breaker_changed)
            self.redis = NativeRedis(self.engine.engine, connection, breaker,
                                     lambda: self.engine.compiled, store_observer(metrics))
            self.engine.attach_redis(self.redis)
        metrics.add_source(lambda: self.engine.export_stats(metrics))

    @property
    def store(self) -> Any:
        """What the composition root probes and closes: the Redis link, or a memory store
        (always reachable) when the engine counts in its own memory."""
        return self.redis if self.redis is not None else MemoryStore()

    def serve_fast(self, service: RateLimitService, health: Health,
                   services: tuple[str, ...]) -> Any:
        """The fast transport's ``_native.FastService``: its calls answered inside Rust, health
        checks of ``services`` from ``health``, request metrics exported into ``service``'s."""
        # Rust reads the system clock itself unless the sidecar was given another one.
        clock = None if self.clock is time.time else self.clock
        fast = self.module.FastService(self.engine.engine, redis=self.redis is not None,
                                       services=list(services), clock=clock)
        health.subscribe(lambda ok: setattr(fast, "serving", ok))
        self.metrics.add_source(export_native_counts(self.module, fast, service))
        if self.redis is not None:
            self.redis.fast = fast
        self.fast_service = fast
        return fast

    def serve_http1(self, service: RateLimitService) -> Any:
        """The fast HTTP/1.1 path's ``_native.Http1Service``: the check endpoints' calls
        answered inside Rust, their request metrics exported into ``service``'s."""
        clock = None if self.clock is time.time else self.clock
        http1 = self.module.Http1Service(self.engine.engine, redis=self.redis is not None,
                                         clock=clock)
        self.metrics.add_source(rest_fast.export_native_counts(self.module, http1, service))
        if self.redis is not None:
            self.redis.http1 = http1
        self.http1_service = http1
        return http1

    def on_held(self) -> Callable[[], None] | None:
        """What a fast connection calls when its read left calls for the next Redis batch."""
        return self.redis.schedule if self.redis is not None else None

    def describe(self, transport: str) -> str:
        """The start-up log line's words for this path."""
        wire = "HTTP/2 wire in Rust" if transport == "fast" else "grpcio transport (Python)"
        answered = [name for name, side in (("gRPC", self.fast_service),
                                            ("REST", self.http1_service)) if side is not None]
        store = "its memory store" if self.redis is None else "Redis (single)"
        calls = f", {' and '.join(answered)} calls answered in Rust" if answered else ""
        return f"{wire}, engine in Rust on {store}{calls}"
