"""The fast transport: the RLS service and gRPC health as routes of the h2 library's server.

The two unary methods are ``bytes -> bytes`` coroutines. ShouldRateLimit keeps the request it
parsed from each (small) message, since Envoy sends the same descriptors again and again, and
decides through the service as the grpcio servicer does, so both transports answer the same
way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from envoy.service.ratelimit.v3 import rls_pb2
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2

from sidecar.errors import RequestError
from sidecar.h2 import GrpcError, H2Options, H2Server, Router, Status
from sidecar.model import Descriptor
from sidecar.observability.health import Health
from sidecar.service import RateLimitService, ServiceError
from sidecar.transports.rls_proto import ResponseBuilder, descriptors_from_proto

RATE_LIMIT_PATH = b"/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
HEALTH_CHECK_PATH = b"/grpc.health.v1.Health/Check"
_CACHE_ENTRIES = 4096  # parsed requests kept; Envoy repeats descriptors (same clients, paths)
_CACHE_MAX_BYTES = 1024  # only small requests are worth keeping: bounds the cache to ~4 MiB

ParsedRequest = tuple[str, Sequence[Descriptor], int]


class RateLimitMethod:
    """envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit over the service."""

    def __init__(self, service: RateLimitService) -> None:
        self.method = service.method("ShouldRateLimit", "fast")
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
        if service not in self.services:
            raise GrpcError(Status.NOT_FOUND, f"unknown service {service!r}")
        return self._serving if self._ok() else self._not_serving


def rls_server(service: RateLimitService, health: HealthSource,
               options: H2Options | None = None,
               health_services: tuple[str, ...] = ("", "ratelimit")) -> H2Server:
    """An H2Server answering ShouldRateLimit and grpc.health.v1.Health/Check."""
    return H2Server(Router({
        RATE_LIMIT_PATH: RateLimitMethod(service),
        HEALTH_CHECK_PATH: HealthMethod(health, health_services),
    }), options)
