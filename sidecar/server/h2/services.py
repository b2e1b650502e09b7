"""The two unary methods the fast transport serves, as ``bytes -> bytes`` coroutines.

ShouldRateLimit reuses rls_proto's request conversion and ResponseBuilder, and maps errors and
metrics exactly as RateLimitServicer does, so both transports answer the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from envoy.service.ratelimit.v3 import rls_pb2
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2

from sidecar.errors import NoRulesError, RequestError, StorageError
from sidecar.limiter.engine import Decision, Descriptor, Engine
from sidecar.server.h2.grpc_wire import GrpcError, Status
from sidecar.server.health import Health
from sidecar.server.metrics import Metrics
from sidecar.server.rls_proto import ResponseBuilder, descriptors_from_proto
from sidecar.tracing import Tracing

log = logging.getLogger("sidecar.h2")

RATE_LIMIT_PATH = b"/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
HEALTH_CHECK_PATH = b"/grpc.health.v1.Health/Check"
_METHOD = "ShouldRateLimit"
_CACHE_ENTRIES = 4096  # parsed requests kept; Envoy repeats descriptors (same clients, paths)
_CACHE_MAX_BYTES = 1024  # only small requests are worth keeping: bounds the cache to ~4 MiB

ParsedRequest = tuple[str, Sequence[Descriptor], int]
R = TypeVar("R")  # a request as a transport delivers it
A = TypeVar("A")  # an answer as a transport sends it


class RateLimitMethod:
    """envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit over the Engine."""

    def __init__(self, engine: Engine, metrics: Metrics, tracing: Tracing | None = None) -> None:
        self.engine = engine
        self.builder = ResponseBuilder()
        self.tracing = tracing or Tracing()
        self._in_flight = metrics.in_flight.labels("fast")
        self._requests = metrics.requests.labels(_METHOD)
        self._latency = metrics.response_time.labels(_METHOD)
        self._errors = {kind: metrics.errors.labels(kind)
                        for kind in ("service_error", "redis_error", "no_config", "internal")}
        # message bytes -> parsed request, or the message of the RequestError it raised (not
        # the exception: re-raising one object would grow its traceback on every call).
        self._parsed: dict[bytes, ParsedRequest | str] = {}

    async def __call__(self, message: bytes) -> bytes:
        return await self.answer(self._parse, message, self._serialize)

    async def answer(self, parse: Callable[[R], ParsedRequest], request: R,
                     encode: Callable[[Decision], A]) -> A:
        """One call: ``parse(request)`` (RequestError: INVALID_ARGUMENT), the engine's
        decision, ``encode(decision)``; errors and metrics as RateLimitServicer maps them. The
        native wire calls this with its decoded request and its own encoding."""
        started = time.perf_counter()
        self._requests.inc()
        self._in_flight.inc()
        try:
            domain, descriptors, hits = parse(request)
            if self.tracing.enabled:
                attributes: dict[str, Any] = {"ratelimit.domain": domain,
                                              "ratelimit.descriptors": len(descriptors)}
                with self.tracing.span("ShouldRateLimit", None, **attributes):
                    decision = await self.engine.should_rate_limit(domain, descriptors, hits)
            else:
                decision = await self.engine.should_rate_limit(domain, descriptors, hits)
            return encode(decision)
        except RequestError as exc:
            self._errors["service_error"].inc()
            raise GrpcError(Status.INVALID_ARGUMENT, str(exc)) from None
        except (StorageError, NoRulesError) as exc:
            # UNAVAILABLE rather than an answer: Envoy's failure_mode_deny then decides whether
            # traffic passes while we cannot count (as RateLimitServicer does).
            self._errors["redis_error" if isinstance(exc, StorageError) else "no_config"].inc()
            log.debug("answering UNAVAILABLE: %s", exc)
            raise GrpcError(Status.UNAVAILABLE, str(exc)) from None
        except Exception:
            log.exception("unexpected error answering ShouldRateLimit")
            self._errors["internal"].inc()
            raise GrpcError(Status.INTERNAL, "internal error; see the sidecar log") from None
        finally:
            self._in_flight.dec()
            self._latency.observe(time.perf_counter() - started)

    def _serialize(self, decision: Decision) -> bytes:
        return self.builder.build(decision).SerializeToString()  # type: ignore[no-any-return]

    def _parse(self, message: bytes) -> ParsedRequest:
        cached = self._parsed.get(message)
        if cached is None:
            cached = self._convert(message)
            if len(message) <= _CACHE_MAX_BYTES:
                if len(self._parsed) >= _CACHE_ENTRIES:
                    self._parsed.clear()
                self._parsed[message] = cached
        if isinstance(cached, str):
            raise RequestError(cached)
        return cached

    @staticmethod
    def _convert(message: bytes) -> ParsedRequest | str:
        try:
            request: Any = rls_pb2.RateLimitRequest.FromString(message)
        except DecodeError as exc:
            return f"malformed RateLimitRequest: {exc}"
        try:
            descriptors = tuple(descriptors_from_proto(request))
        except RequestError as exc:
            return str(exc)
        return request.domain, descriptors, request.hits_addend


HealthSource = Health | Callable[[], bool]


class HealthMethod:
    """grpc.health.v1.Health/Check for the overall service ("") and the named ones."""

    def __init__(self, health: HealthSource, services: tuple[str, ...] = ("", "ratelimit")
                 ) -> None:
        self._ok: Callable[[], bool] = (lambda: health.ok) if isinstance(health, Health) \
            else health
        self.services = frozenset(services)
        response = health_pb2.HealthCheckResponse
        self._serving: bytes = response(status=response.SERVING).SerializeToString()
        self._not_serving: bytes = response(status=response.NOT_SERVING).SerializeToString()

    async def __call__(self, message: bytes) -> bytes:
        try:
            service = health_pb2.HealthCheckRequest.FromString(message).service
        except DecodeError as exc:
            raise GrpcError(Status.INVALID_ARGUMENT, f"malformed HealthCheckRequest: {exc}"
                            ) from None
        return self._serving if self.serving(service) else self._not_serving

    def serving(self, service: str) -> bool:
        """Whether ``service`` is serving; NOT_FOUND for services we do not know."""
        if service not in self.services:
            raise GrpcError(Status.NOT_FOUND, f"unknown service {service!r}")
        return self._ok()
