"""envoy.service.ratelimit.v3.RateLimitService over grpc.aio: protobuf ⇄ Engine, nothing else."""

from __future__ import annotations

import logging
import time
from typing import Any

import grpc
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from google.protobuf.duration_pb2 import Duration

from sidecar.errors import NoRulesError, RequestError, StorageError
from sidecar.limiter.engine import Decision, Descriptor, DescriptorStatus, Engine
from sidecar.rules.model import RateLimit, Unit
from sidecar.server.metrics import Metrics
from sidecar.tracing import Tracing

log = logging.getLogger("sidecar.grpc")

Response = rls_pb2.RateLimitResponse
_METHOD = "ShouldRateLimit"


def descriptors_from_proto(request: Any) -> list[Descriptor]:
    """RateLimitRequest.descriptors → engine descriptors; RequestError names a bad field."""
    out = []
    for i, d in enumerate(request.descriptors):
        entries = tuple((e.key, e.value) for e in d.entries)
        hits = d.hits_addend.value if d.HasField("hits_addend") else None
        if hits is not None and hits > 2**32 - 1:
            raise RequestError(f"descriptors[{i}].hits_addend: {hits} is too large; expected at "
                               "most 4294967295")
        limit = None
        if d.HasField("limit"):
            try:
                limit = (d.limit.requests_per_unit, Unit(d.limit.unit))
            except ValueError:
                raise RequestError(f"descriptors[{i}].limit.unit: {d.limit.unit} is not a unit; "
                                   "expected SECOND..YEAR") from None
        out.append(Descriptor(entries, hits, limit))
    return out


class ResponseBuilder:
    """Decision → RateLimitResponse, reusing one RateLimit message per configured limit."""

    def __init__(self) -> None:
        self._limits: dict[int, tuple[RateLimit, Any]] = {}

    def build(self, decision: Decision) -> Any:
        response = Response(overall_code=int(decision.overall))
        for status in decision.statuses:
            s = response.statuses.add(code=int(status.code), limit_remaining=status.remaining)
            if status.limit is not None:
                s.current_limit.CopyFrom(self._limit(status.limit))
                s.duration_until_reset.CopyFrom(_duration(status))
        for key, value in decision.headers:
            response.response_headers_to_add.add(key=key, value=value)
        return response

    def _limit(self, limit: RateLimit) -> Any:
        # Keyed by identity (hashing a RateLimit's fields costs more than building the answer);
        # the entry keeps its RateLimit alive, so an id is never reused while cached.
        entry = self._limits.get(id(limit))
        if entry is None or entry[0] is not limit:
            if len(self._limits) > 10000:  # overrides can be unbounded: keep the cache bounded
                self._limits.clear()
            proto = Response.RateLimit(requests_per_unit=limit.requests_per_unit,
                                       unit=int(limit.unit), name=limit.name)
            entry = self._limits[id(limit)] = (limit, proto)
        return entry[1]


class RateLimitServicer(rls_pb2_grpc.RateLimitServiceServicer):  # type: ignore[misc]
    def __init__(self, engine: Engine, metrics: Metrics, tracing: Tracing | None = None) -> None:
        self.engine = engine
        self.metrics = metrics
        self.tracing = tracing or Tracing()
        self.builder = ResponseBuilder()
        self._requests = metrics.requests.labels(_METHOD)
        self._latency = metrics.response_time.labels(_METHOD)
        self._in_flight = metrics.in_flight.labels("grpcio")

    async def ShouldRateLimit(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        started = time.perf_counter()
        self._requests.inc()
        self._in_flight.inc()
        try:
            if self.tracing.enabled:
                return await self._traced(request, context)
            decision = await self.engine.should_rate_limit(
                request.domain, descriptors_from_proto(request), request.hits_addend)
            return self.builder.build(decision)
        except RequestError as exc:
            self.metrics.errors.labels("service_error").inc()
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except (StorageError, NoRulesError) as exc:
            # UNAVAILABLE rather than an answer: Envoy's failure_mode_deny then decides
            # whether traffic passes while we cannot count. Not logged per call: the store
            # probe logs outages once, and the error counter shows the rate.
            kind = "redis_error" if isinstance(exc, StorageError) else "no_config"
            self.metrics.errors.labels(kind).inc()
            log.debug("answering UNAVAILABLE: %s", exc)
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        except Exception:
            log.exception("unexpected error answering ShouldRateLimit")
            self.metrics.errors.labels("internal").inc()
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the sidecar log")
        finally:
            self._in_flight.dec()
            self._latency.observe(time.perf_counter() - started)
        raise AssertionError("unreachable")  # context.abort always raises

    async def _traced(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await _traced_call(self, request, context)


async def _traced_call(servicer: RateLimitServicer, request: Any,
                       context: grpc.aio.ServicerContext) -> Any:
    with servicer.tracing.span("ShouldRateLimit", context.invocation_metadata(),
                               **{"ratelimit.domain": request.domain,
                                  "ratelimit.descriptors": len(request.descriptors)}) as span:
        decision = await servicer.engine.should_rate_limit(
            request.domain, descriptors_from_proto(request), request.hits_addend)
        span.set_attribute("ratelimit.overall_code", decision.overall.name)
        return servicer.builder.build(decision)


def _duration(status: DescriptorStatus) -> Any:
    if status.reset_ms is None:
        return Duration(seconds=status.reset_seconds)
    return Duration(seconds=status.reset_ms // 1000, nanos=(status.reset_ms % 1000) * 1_000_000)
