"""The fast transport: the RLS service and gRPC health as routes of the h2 library's server.

The two unary methods are ``bytes -> bytes`` coroutines. ShouldRateLimit keeps the request it
parsed from each (small) message, since Envoy sends the same descriptors again and again, and
decides through the service as the grpcio servicer does, so both transports answer the same
way.

With the native extension (``sidecar._native``) the connections' wire side runs in Rust: the
same two methods then take the requests the wire decoded (``NativeRateLimitMethod``,
``NativeHealthMethod``) for every call the wire's handler leaves to Python.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

from envoy.service.ratelimit.v3 import rls_pb2
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2

from sidecar.errors import RequestError
from sidecar.h2 import (
    GrpcError,
    H2Options,
    H2Server,
    Malformed,
    NativeMethods,
    NativeWire,
    Router,
    Status,
)
from sidecar.h2.native_connection import NativeRequest, NativeResponse, NativeStatus
from sidecar.h2.request import Handler
from sidecar.model import Decision, Descriptor, DescriptorStatus, RateLimit
from sidecar.observability.health import Health
from sidecar.service import Method, RateLimitService, ServiceError
from sidecar.transports.rls_proto import ResponseBuilder, descriptors_from_proto, make_descriptor

RATE_LIMIT_PATH = b"/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
HEALTH_CHECK_PATH = b"/grpc.health.v1.Health/Check"
_CACHE_ENTRIES = 4096  # parsed requests kept; Envoy repeats descriptors (same clients, paths)
_CACHE_MAX_BYTES = 1024  # only small requests are worth keeping: bounds the cache to ~4 MiB
_LIMITS_CACHED = 10000  # as ResponseBuilder: overrides can be unbounded
SERVING, NOT_SERVING = 1, 2  # grpc.health.v1.HealthCheckResponse.ServingStatus

ParsedRequest = tuple[str, Sequence[Descriptor], int]


class RateLimitMethod:
    """envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit over the service."""

    def __init__(self, method: Method) -> None:
        self.method = method
        self.builder = ResponseBuilder()
        # message bytes -> parsed request, or the message of the RequestError it raised (not
        # the exception: re-raising one object would grow its traceback on every call).
        self._parsed: dict[bytes, ParsedRequest | str] = {}

    async def __call__(self, message: bytes) -> bytes:
        try:
            domain, descriptors, hits = self._parse(message)
            decision = await self.method.decide(domain, descriptors, hits)
        except ServiceError as exc:
            raise GrpcError(Status(exc.failure.grpc_status), exc.failure.message) from None
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
            raise self.method.reject(RequestError(cached))
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


class NativeRateLimitMethod:
    """ShouldRateLimit over a request the native wire decoded: the same service call, errors,
    statuses and metrics as RateLimitMethod, the protobuf work done in Rust instead."""

    def __init__(self, method: Method) -> None:
        self.method = method
        # id(RateLimit) -> (the limit, its wire tuple), as ResponseBuilder keeps its messages.
        self._limits: dict[int, tuple[RateLimit, tuple[str, int, int]]] = {}

    async def __call__(self, request: NativeRequest | Malformed) -> NativeResponse:
        try:
            domain, descriptors, hits = self._parse(request)
            decision = await self.method.decide(domain, descriptors, hits)
        except ServiceError as exc:
            raise GrpcError(Status(exc.failure.grpc_status), exc.failure.message) from None
        return self._encode(decision)

    def _parse(self, request: NativeRequest | Malformed) -> ParsedRequest:
        """The service's arguments; refused with the words RateLimitMethod uses for the same
        request bytes."""
        if isinstance(request, Malformed):
            raise self.method.reject(RequestError(f"malformed RateLimitRequest: "
                                                  f"{request.message}"))
        domain, descriptors, hits = request
        try:
            return domain, [make_descriptor(domain, i, *d)
                            for i, d in enumerate(descriptors)], hits
        except RequestError as exc:
            raise self.method.reject(exc) from None

    def _encode(self, decision: Decision) -> NativeResponse:
        statuses = [self._status(s) for s in decision.statuses]
        return int(decision.overall), statuses, decision.headers

    def _status(self, status: DescriptorStatus) -> NativeStatus:
        limit = status.limit
        if limit is None:
            return int(status.code), None, status.remaining, 0
        reset_ms = status.reset_ms if status.reset_ms is not None else status.reset_seconds * 1000
        return int(status.code), self._limit(limit), status.remaining, reset_ms

    def _limit(self, limit: RateLimit) -> tuple[str, int, int]:
        # Keyed by identity; the entry keeps its RateLimit alive, so an id is never reused
        # while cached.
        entry = self._limits.get(id(limit))
        if entry is None or entry[0] is not limit:
            if len(self._limits) > _LIMITS_CACHED:
                self._limits.clear()
            entry = self._limits[id(limit)] = (
                limit, (limit.name, limit.requests_per_unit, int(limit.unit)))
        return entry[1]


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


class NativeHealthMethod:
    """grpc.health.v1.Health/Check over the service name the native wire decoded."""

    def __init__(self, method: HealthMethod) -> None:
        self.method = method

    async def __call__(self, request: str | Malformed) -> int:
        if isinstance(request, Malformed):
            raise GrpcError(Status.INVALID_ARGUMENT,
                            f"malformed HealthCheckRequest: {request.message}")
        return SERVING if self.method.serving(request) else NOT_SERVING


def rls_server(service: RateLimitService, health: HealthSource,
               options: H2Options | None = None,
               health_services: tuple[str, ...] = ("", "ratelimit"),
               routes: Mapping[bytes, Handler] | None = None,
               native: ModuleType | None = None, native_service: Any = None,
               on_held: Callable[[], None] | None = None) -> H2Server:
    """An H2Server answering ShouldRateLimit and grpc.health.v1.Health/Check, and the unary
    methods of ``routes`` (full mode: ext_authz's Authorization/Check).

    With ``native`` (the ``sidecar._native`` module) its connections' wire side runs in Rust;
    the native wire knows only the two methods of its own, so ``routes`` keep the Python
    connection. ``native_service`` (a ``_native.FastService``) then answers the calls inside
    Rust, with the native engine; the calls it holds for Redis are answered by whoever
    ``on_held`` tells (``limiter/native_redis.py``). Its request metrics are counted in Rust:
    ``export_native_counts`` adds them to this method's."""
    method = service.method("ShouldRateLimit", "fast")
    health_check = HealthMethod(health, health_services)
    router = Router({RATE_LIMIT_PATH: RateLimitMethod(method),
                     HEALTH_CHECK_PATH: health_check, **(routes or {})})
    wire = None
    if native is not None and not routes:
        methods = NativeMethods(NativeRateLimitMethod(method), NativeHealthMethod(health_check))
        wire = NativeWire(native, methods, native_service, on_held)
    return H2Server(router, options, wire)


def export_native_counts(native: ModuleType, native_service: Any,
                         service: RateLimitService) -> Callable[[], None]:
    """A metrics source (``Metrics.add_source``): the request metrics of the calls
    ``native_service`` answered, as ShouldRateLimit over the fast transport."""
    method = service.method("ShouldRateLimit", "fast")
    kinds = tuple(native.ERROR_KINDS)

    def export() -> None:
        requests, errors, buckets, latency_sum, in_flight = native_service.take_metrics()
        method.add_counts(requests, dict(zip(kinds, errors, strict=True)), buckets,
                          latency_sum, in_flight)

    return export
