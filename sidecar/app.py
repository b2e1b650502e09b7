"""Composition root: settings → store → engine → rules → servers; the only place that wires."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sidecar.errors import RuleSetError, StorageError
from sidecar.h2 import H2Options, H2Server
from sidecar.limiter.engine import Engine, Limiter
from sidecar.limiter.leases import Leases
from sidecar.limiter.local_cache import LocalCache
from sidecar.limiter.native import load as load_native
from sidecar.limiter.options import EngineOptions
from sidecar.limiter.policy import FailureHandler
from sidecar.model import FailurePolicy
from sidecar.native_path import (
    NativePath,
    native_rules_check,
    peek_rules,
    python_engine_reason,
)
from sidecar.observability.health import Health
from sidecar.observability.metrics import Metrics
from sidecar.observability.tracing import ObservedStore, configure_tracing
from sidecar.rules.model import RuleSet
from sidecar.rules.watcher import RulesManager
from sidecar.service import RateLimitService
from sidecar.settings import Settings
from sidecar.storage.base import Store
from sidecar.storage.memory import MemoryStore
from sidecar.transports.fast import rls_server
from sidecar.transports.http import HttpApi
from sidecar.transports.http1 import NativeEngineSide, serve_http

if TYPE_CHECKING:
    import grpc
    from grpc_health.v1 import health as grpc_health

    from sidecar.management.service import FullMode
    from sidecar.storage.redis.breaker import BreakerListener
    from sidecar.storage.redis.options import RedisOptions

# grpcio (the grpcio transport) and redis-py (the Redis store) are imported only when the
# settings ask for them: each costs 8-15 MB of resident memory (bench/memory.py).

log = logging.getLogger("sidecar.app")

HEALTH_SERVICE = "ratelimit"
STORE_PROBE_SECONDS = 1.0
NATIVE_EXPORT_SECONDS = 1.0


def make_store(settings: Settings, listener: BreakerListener | None = None) -> Store:
    """The counter store the settings name; with REDIS_PERSECOND, two Redis behind one
    SplitStore. ``listener`` hears every circuit-breaker transition."""
    if settings.backend == "memory":
        return MemoryStore()
    from sidecar.storage.redis.split import SplitStore
    from sidecar.storage.redis.store import RedisStore

    main = RedisStore(redis_options(settings), listener=listener)
    if not settings.redis_persecond:
        return main
    return SplitStore(main, RedisStore(redis_options(settings, per_second=True),
                                       listener=listener))


def redis_options(settings: Settings, per_second: bool = False) -> RedisOptions:
    """REDIS_* (or REDIS_PERSECOND_*) settings as RedisOptions. The two sets have the same
    names after their prefix; TLS files, the DB index, batching and the breaker are shared."""
    from sidecar.storage.redis.options import RedisOptions

    s = settings

    def own(name: str) -> Any:
        return getattr(s, ("redis_persecond_" if per_second else "redis_") + name)

    url: str = own("url")
    return RedisOptions(
        url=url, type=own("type"),
        socket_type=own("socket_type") or ("unix" if url.startswith("/") else "tcp"),
        auth=own("auth"), sentinel_auth=own("sentinel_auth"), tls=own("tls"),
        tls_ca=s.redis_tls_cacert, tls_cert=s.redis_tls_client_cert,
        tls_key=s.redis_tls_client_key, tls_skip_verify=s.redis_tls_skip_verify,
        pool_size=own("pool_size"), timeout=own("timeout"), db=s.redis_db,
        pipeline_window=own("pipeline_window"), pipeline_limit=own("pipeline_limit"),
        batching=s.redis_batching, breaker_failures=s.breaker_failures,
        breaker_cooldown=s.breaker_cooldown)


def engine_options(settings: Settings) -> EngineOptions:
    return EngineOptions(
        cache_key_prefix=settings.cache_key_prefix, near_limit_ratio=settings.near_limit_ratio,
        shadow_mode=settings.shadow_mode, quota_mode=settings.quota_mode,
        stop_increment_when_over_limit=settings.stop_increment_when_over_limit,
        expiration_jitter_max_seconds=settings.expiration_jitter_max_seconds,
        response_headers=settings.response_headers, limit_header=settings.limit_header,
        remaining_header=settings.remaining_header, reset_header=settings.reset_header)


class Sidecar:
    """One running sidecar: its engine, rules watcher and servers."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.tracing = configure_tracing(os.environ)
        self.extension = load_native(settings.native)
        self.native: NativePath | None = None
        self.engine: Limiter
        reason = python_engine_reason(settings, self.tracing.enabled, peek_rules(settings))
        if self.extension.module is not None and reason is None:
            self.native = NativePath(
                self.extension.module, settings, self.metrics, engine_options(settings),
                redis_options(settings) if settings.backend == "redis" else None, clock)
            self.store: Any = self.native.store
            self.engine = self.native.engine
            # Leases need the Python engine's matching and planning; the native path runs
            # only rules without concurrency limits, so this one never holds a slot and
            # answers "no concurrency limit applies".
            lease_engine = self._python_engine(MemoryStore(), clock)
        else:
            self.store = make_store(settings, self.metrics.breaker_changed)
            self.engine = lease_engine = self._python_engine(self.store, clock)
        self.python_engine_reason = reason
        self.leases = Leases(lease_engine, self.metrics)
        self.service = RateLimitService(self.engine, self.metrics, self.tracing, self.leases)
        self.health = Health(require_config=settings.healthy_with_config)
        apply = self.engine.set_rules
        if lease_engine is not self.engine:
            def apply(rules: RuleSet) -> None:
                self.engine.set_rules(rules)
                lease_engine.set_rules(rules)
        self.rules = RulesManager(
            settings.rules_path, apply, settings.merge_domain_config,
            include_dotfiles=not settings.ignore_dotfiles,
            poll_interval=settings.reload_poll_interval, on_result=self._rules_loaded,
            check=native_rules_check if self.native is not None else None)
        # Full mode (customers, keys, plans, admin API): imported only when asked for, so a
        # standalone sidecar never loads SQLAlchemy and the catalog.
        self.full: FullMode | None = None
        if settings.mode == "full":
            from sidecar.management.service import FullMode

            self.full = FullMode(settings, self.engine, self.metrics, clock)
            self.full.observe_decisions(self.service)
        self.grpc_server: grpc.aio.Server | None = None
        self.h2_server: H2Server | None = None
        self.http_runner: web.AppRunner | None = None
        self.debug_runner: web.AppRunner | None = None
        self.grpc_health: grpc_health.aio.HealthServicer | None = None  # grpcio transport
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._store_reachable: bool | None = None  # None: not probed yet
        self._stopped = False

    def _python_engine(self, store: Store, clock: Callable[[], float]) -> Engine:
        settings = self.settings
        return Engine(ObservedStore(store, self.tracing, self.metrics),
                      engine_options(settings), self.metrics, clock,
                      policy=FailureHandler(settings.failure_policy, MemoryStore(),
                                            self.metrics.policy_decision),
                      local_cache=LocalCache(settings.local_cache_size,
                                             self.metrics.local_cache_hit)
                      if settings.local_cache_size > 0 else None)

    def _rules_loaded(self, ok: bool, rules: RuleSet | None) -> None:
        self.metrics.rules_loaded(ok, rules.version if rules else "",
                                  rules.loaded_at if rules else 0.0)
        if ok and rules is not None:
            self.health.set("config", bool(rules.domains))

    async def start(self) -> None:
        """Load the rules, open every port, then probe the store once. RuleSetError when the
        rules are invalid, OSError when a port cannot be opened; nothing is left running
        either way.

        The ports open before the store is reached: a store that is not there yet (a Redis
        Cluster still forming) must not keep them closed. Until a probe reaches it, calls get
        the failure policy's answer and health counts the store as unreachable; the store
        connects in the background and the probe runs every STORE_PROBE_SECONDS."""
        if not self.rules.load():
            if not self.settings.force_start_without_initial_config:
                await self.store.close()
                raise self.rules.last_exception or RuleSetError([])
            log.warning("starting without valid rules (FORCE_START_WITHOUT_INITIAL_CONFIG); "
                        "every call fails until a valid version is loaded")
        self._set_store_health(False)
        try:
            if self.full is not None:
                await self.full.start()
            if self.settings.transport == "fast":
                await self._start_fast()
            else:
                await self._start_grpc()
            await self._start_http()
            await self._probe_store()  # bounded by the store's timeout
        except BaseException:
            await self.stop()
            raise
        loop = asyncio.get_running_loop()
        self.rules.start(loop)
        if self.full is not None:
            self.full.watch(loop)
        self._spawn(self._watch_store())
        if self.native is not None:
            self._spawn(self._export_native())
        s = self.settings
        log.info("hot path: %s", self._hot_path())
        log.info("serving rules from %s on %s store: grpc %s:%d, http %s:%d, debug %s:%d",
                 s.rules_path, s.backend, s.grpc_host, s.grpc_port, s.host, s.port,
                 s.debug_host, s.debug_port)

    def _hot_path(self) -> str:
        """Which path runs, for the start-up log line."""
        extension = self.extension
        if extension.module is None:
            return f"pure Python ({extension.reason})"
        if self.native is not None:
            return f"native ({extension.reason}): {self.native.describe(self.settings.transport)}"
        wire = "HTTP/2 wire in Rust" if self.settings.transport == "fast" else \
            "grpcio transport (Python)"
        if self.settings.rest.fast:
            wire += ", HTTP/1.1 reader in Rust"
        return f"native ({extension.reason}): {wire}, engine in Python " \
            f"({self.python_engine_reason})"

    async def _export_native(self) -> None:
        """Counts kept in Rust reach the metrics on scrape, and every second (so other
        workers' scrapes see them too)."""
        while True:
            await asyncio.sleep(NATIVE_EXPORT_SECONDS)
            self.metrics.export_sources()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in the background, holding a reference until it is done."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start_grpc(self) -> None:
        import grpc
        from envoy.service.ratelimit.v3 import rls_pb2_grpc
        from grpc_health.v1 import health as grpc_health
        from grpc_health.v1 import health_pb2_grpc

        from sidecar.transports.grpcio import RateLimitServicer

        reuse = 1 if self.settings.workers > 1 else 0
        server = grpc.aio.server(options=[("grpc.so_reuseport", reuse)])
        rls_pb2_grpc.add_RateLimitServiceServicer_to_server(
            RateLimitServicer(self.service), server)
        self.grpc_health = grpc_health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.grpc_health, server)
        if self.full is not None:
            self.full.add_to_grpcio(server)
        address = f"{_host(self.settings.grpc_host)}:{self.settings.grpc_port}"
        self.grpc_server = server
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as exc:  # grpcio raises here when the port is taken
            raise OSError(f"cannot listen for gRPC on {address}: {exc}") from None
        if bound == 0:
            raise OSError(f"cannot listen for gRPC on {address}")
        await server.start()
        self.health.subscribe(self._publish_health)

    async def _start_fast(self) -> None:
        """The purpose-built HTTP/2 transport (transports/fast.py over sidecar/h2); it reads
        Health on every Check, so it needs no health publishing."""
        options = H2Options(reuse_port=self.settings.workers > 1,
                            eager_start=self.settings.backend == "memory")
        fast_service, on_held = None, None
        if self.native is not None and self.full is None:
            # Calls answered inside Rust (full mode's routes need the Python connection).
            fast_service = self.native.serve_fast(self.service, self.health,
                                                  ("", HEALTH_SERVICE))
            on_held = self.native.on_held()
        self.h2_server = rls_server(self.service, self.health, options,
                                    routes=self.full.grpc_routes() if self.full else None,
                                    native=self.extension.module,
                                    native_service=fast_service, on_held=on_held)
        await self.h2_server.start(self.settings.grpc_host, self.settings.grpc_port)

    def _publish_health(self, ok: bool) -> None:
        from grpc_health.v1 import health_pb2

        assert self.grpc_health is not None
        status = health_pb2.HealthCheckResponse.SERVING if ok else \
            health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", HEALTH_SERVICE):
            self._spawn(self.grpc_health.set(service, status))

    async def _start_http(self) -> None:
        api = HttpApi(self.service, self.health, self.rules, self.settings.rest)
        s = self.settings
        grace = s.shutdown_grace
        reuse = s.workers > 1
        app = api.main_app()
        keys = None
        if self.full is not None:
            self.full.register_http(app)
            keys = self.full.fast_endpoints()
        native = self.extension.module if s.rest.fast else None
        endpoints = api.fast_endpoints(native, keys) if native is not None else None
        engine = None
        # Full mode counts /v1/check, /v1/report and forward-auth decisions in namespaces
        # customers own, through the service's decision observer: those endpoints then go
        # through Python (the native parser, the native engine), where the observer runs.
        counted = self.full is not None and s.usage
        if endpoints is not None and self.native is not None and not counted:
            # The check endpoints answered inside Rust (full mode's key endpoints stay
            # referrals to its Python code).
            engine = NativeEngineSide(self.native.serve_http1(self.service),
                                      self.native.on_held())
        self.http_runner = await serve_http(app, s.host, s.port, grace=grace, reuse_port=reuse,
                                            endpoints=endpoints, native=native, engine=engine)
        if s.debug_port != s.port:
            self.debug_runner = await serve_http(api.debug_app(), s.debug_host, s.debug_port,
                                                 grace=grace, reuse_port=reuse)

    async def _probe_store(self) -> None:
        """Ping the store (through its breakers, so a probe also lets a half-open breaker
        close). Unreachable makes the sidecar unhealthy only when it cannot answer anyway:
        with VIVA_FAILURE_POLICY allow, deny or local it still answers every call."""
        try:
            await self.store.ping()
            reachable = True
        except StorageError as exc:
            reachable = False
            if self._store_reachable is not False:
                log.warning("counter store is unreachable: %s", exc)
        else:
            if self._store_reachable is False:
                log.warning("counter store is reachable again")
        self._store_reachable = reachable
        self._set_store_health(reachable)

    def _set_store_health(self, reachable: bool) -> None:
        self.health.set("store", reachable
                        or self.settings.failure_policy != FailurePolicy.UNAVAILABLE)

    async def _watch_store(self) -> None:
        while True:
            await asyncio.sleep(STORE_PROBE_SECONDS)
            await self._probe_store()
            self.leases.prune()  # so the active-leases gauge drops expired leases too

    async def stop(self) -> None:
        """Fail health, keep answering for VIVA_SHUTDOWN_DELAY (so load balancers and probes
        notice), then stop taking calls, let running ones finish, release everything."""
        if self._stopped:
            return
        self._stopped = True
        self.health.set("sigterm", False)
        if self.grpc_health is not None:
            await self.grpc_health.enter_graceful_shutdown()
        serving = self.grpc_server is not None or self.h2_server is not None
        if serving and self.settings.shutdown_delay > 0:
            await asyncio.sleep(self.settings.shutdown_delay)
        for task in list(self._tasks):
            task.cancel()
        await self.rules.stop()
        if self.grpc_server is not None:
            await self.grpc_server.stop(self.settings.shutdown_grace)
        if self.h2_server is not None:
            await self.h2_server.stop(self.settings.shutdown_grace)
        for runner in (self.http_runner, self.debug_runner):
            if runner is not None:
                await runner.cleanup()
        if self.full is not None:
            await self.full.stop()
        await self.store.close()
        self.tracing.shutdown()  # flushes spans still queued for export

    async def run(self) -> None:
        """Start, serve until SIGTERM or SIGINT, then stop gracefully."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        await self.start()
        await self._stopping.wait()
        log.info("shutting down: draining in-flight calls (up to %.1fs)",
                 self.settings.shutdown_grace)
        await self.stop()


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop when it is installed (optional), else asyncio's; for asyncio.Runner."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return asyncio.new_event_loop
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_sidecar(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT (--workers > 1 goes through sidecar.workers.run first)."""
    with contextlib.suppress(KeyboardInterrupt), \
            asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        runner.run(Sidecar(settings).run())
    return 0
