"""envoy.service.ratelimit.v3.RateLimitService over grpc.aio: protobuf ⇄ Engine, nothing else."""

from __future__ import annotations

import logging
import time
from typing import Any

import grpc
from envoy.service.ratelimit.v3 import rls_pb2_grpc

from sidecar.errors import NoRulesError, RequestError, StorageError
from sidecar.limiter.engine import Engine
from sidecar.observability.metrics import Metrics
from sidecar.observability.tracing import Tracing
from sidecar.transports.rls_proto import ResponseBuilder, descriptors_from_proto

log = logging.getLogger("sidecar.grpc")

_METHOD = "ShouldRateLimit"


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
