"""The two methods over requests the native wire decoded (native_connection.NativeMethods),
answered by the same RateLimitMethod and HealthMethod as the Python wire: the same engine
call, errors, statuses and metrics, with the protobuf work done in Rust instead."""

from __future__ import annotations

from sidecar.errors import RequestError
from sidecar.limiter.engine import Decision, DescriptorStatus
from sidecar.rules.model import RateLimit
from sidecar.server.h2.grpc_wire import GrpcError, Status
from sidecar.server.h2.native_connection import (
    Malformed,
    NativeMethods,
    NativeRequest,
    NativeResponse,
    NativeStatus,
)
from sidecar.server.h2.services import HealthMethod, ParsedRequest, RateLimitMethod
from sidecar.server.rls_proto import make_descriptor

SERVING, NOT_SERVING = 1, 2  # grpc.health.v1.HealthCheckResponse.ServingStatus
_LIMITS_CACHED = 10000


def native_methods(rate_limit: RateLimitMethod, health: HealthMethod) -> NativeMethods:
    return NativeMethods(NativeRateLimitMethod(rate_limit), NativeHealthMethod(health))


class NativeRateLimitMethod:
    """ShouldRateLimit: a decoded RateLimitRequest in, a RateLimitResponse as tuples out."""

    def __init__(self, method: RateLimitMethod) -> None:
        self.method = method
        # id(RateLimit) -> (the limit, its wire tuple), as ResponseBuilder keeps its messages.
        self._limits: dict[int, tuple[RateLimit, tuple[str, int, int]]] = {}

    async def __call__(self, request: NativeRequest | Malformed) -> NativeResponse:
        return await self.method.answer(parse_request, request, self._encode)

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
            if len(self._limits) > _LIMITS_CACHED:  # overrides can be unbounded
                self._limits.clear()
            entry = self._limits[id(limit)] = (
                limit, (limit.name, limit.requests_per_unit, int(limit.unit)))
        return entry[1]


def parse_request(request: NativeRequest | Malformed) -> ParsedRequest:
    """The engine's arguments from a decoded request; RequestError as RateLimitMethod raises
    for the same request bytes."""
    if isinstance(request, Malformed):
        raise RequestError(f"malformed RateLimitRequest: {request.message}")
    domain, descriptors, hits = request
    return domain, [make_descriptor(i, *d) for i, d in enumerate(descriptors)], hits


class NativeHealthMethod:
    """grpc.health.v1.Health/Check: a service name in, a ServingStatus number out."""

    def __init__(self, method: HealthMethod) -> None:
        self.method = method

    async def __call__(self, request: str | Malformed) -> int:
        if isinstance(request, Malformed):
            raise GrpcError(Status.INVALID_ARGUMENT,
                            f"malformed HealthCheckRequest: {request.message}")
        return SERVING if self.method.serving(request) else NOT_SERVING

