"""Optional OpenTelemetry tracing, configured by the standard OTEL_* variables.

Off unless the ``otel`` extra is installed and a traces exporter is configured
(``OTEL_TRACES_EXPORTER`` = otlp | console, or any ``OTEL_EXPORTER_OTLP_*ENDPOINT``), and never
when ``OTEL_SDK_DISABLED=true``. The SDK and the OTLP exporter read the rest of the standard
variables themselves (service name, resource attributes, sampler, endpoint, headers, protocol).
Spans: ``ShouldRateLimit`` for each call (continuing the caller's trace from its
``traceparent`` metadata) and ``store`` around each counter-store round trip (ObservedStore,
which also times and counts those round trips for the metrics).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

log = logging.getLogger("sidecar.observability.tracing")

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


class Tracing:
    """A tracer, or nothing: every method is a cheap no-op when tracing is off."""

    def __init__(self, tracer: Any = None, provider: Any = None) -> None:
        self.tracer = tracer
        self.provider = provider

    @property
    def enabled(self) -> bool:
        return self.tracer is not None

    @contextlib.contextmanager
    def span(self, name: str, metadata: Sequence[tuple[str, Any]] | None = None,
             **attributes: Any) -> Iterator[Any]:
        if self.tracer is None:
            yield None
            return
        from opentelemetry import propagate

        context = propagate.extract(dict(metadata)) if metadata else None
        with self.tracer.start_as_current_span(name, context=context) as span:
            for key, value in attributes.items():
                span.set_attribute(key, value)
            yield span

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()


def configure_tracing(env: Mapping[str, str]) -> Tracing:
    """Tracing as the OTEL_* variables ask, or off (with one log line saying why)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return Tracing()
    exporter_name = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not exporter_name and any(env.get(k) for k in _ENDPOINTS):
        exporter_name = "otlp"
    if exporter_name in ("", "none"):
        return Tracing()
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("OTEL_* tracing is configured but the otel extra is not installed "
                    "(pip install 'viva-ratelimit[otel]'); tracing is off")
        return Tracing()
    exporter = _exporter(exporter_name, env)
    if exporter is None:
        return Tracing()
    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", "viva-ratelimit")})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    log.info("OpenTelemetry tracing on, exporter %s", exporter_name)
    return Tracing(provider.get_tracer("viva-ratelimit"), provider)


def _exporter(name: str, env: Mapping[str, str]) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        log.warning("OTEL_TRACES_EXPORTER=%s is not supported (otlp, console, none); tracing "
                    "is off", name)
        return None
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                       env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")).strip().lower()
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[no-redef, unused-ignore]
                OTLPSpanExporter,
            )
    except ImportError:
        log.warning("no OTLP exporter for protocol %s is installed; tracing is off", protocol)
        return None
    return OTLPSpanExporter()


class ObservedStore:
    """A Store whose round trips are timed (``viva_ratelimit_store_latency_seconds``), whose
    failures are counted (``viva_ratelimit_store_errors_total``) and, with tracing on, traced
    as ``store`` spans. Everything else passes through to the wrapped store."""

    def __init__(self, store: Any, tracing: Tracing, metrics: Any) -> None:
        self._store = store
        self._tracing = tracing
        self.name = store.name
        self._latency = {op: metrics.store_latency.labels(store.name, op)
                         for op in ("run", "get", "lease")}
        self._errors = metrics.store_errors
        for kind in ("timeout", "StorageError"):  # exposed at 0, so alerts see the series
            self._errors.labels(store.name, kind)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def run(self, increments: Any, checks: Any, now_ms: int, atomic: bool) -> Any:
        return await self._observe("run", len(increments) + len(checks),
                                   self._store.run(increments, checks, now_ms, atomic))

    async def get(self, keys: Any, now: float) -> Any:
        return await self._observe("get", len(keys), self._store.get(keys, now))

    async def lease(self, ops: Any, now_ms: int) -> Any:
        return await self._observe("lease", len(ops), self._store.lease(ops, now_ms))

    async def _observe(self, op: str, counters: int, call: Any) -> Any:
        started = time.perf_counter()
        try:
            if not self._tracing.enabled:
                return await call
            with self._tracing.span("store", **{"db.system": self.name,
                                               "viva.counters": counters}):
                return await call
        except Exception as exc:
            kind = "timeout" if "did not answer" in str(exc) else type(exc).__name__
            self._errors.labels(self.name, kind).inc()
            raise
        finally:
            self._latency[op].observe(time.perf_counter() - started)
