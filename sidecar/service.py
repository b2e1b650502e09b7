"""The one adapter from the wire to the engine: every transport decides through it.

A transport turns its wire format into a domain, descriptors and hits, and asks a ``Method``
(one service method as one transport serves it: ShouldRateLimit over grpcio or the fast
transport, /json, the REST endpoints) for the Decision. The Method keeps the request metrics
(``ratelimit_service_total_requests{grpc_method}``, the latency histogram, the in-flight gauge
per transport), traces the call, and turns every failure into a ``ServiceError`` whose
``Failure`` says, once for all transports, how it is reported:

    RequestError      service_error   gRPC INVALID_ARGUMENT     HTTP 400
    RequestTooLarge   service_error   gRPC RESOURCE_EXHAUSTED   HTTP 413
    LeaseNotFound     not_found       gRPC NOT_FOUND            HTTP 404
    StorageError      redis_error     gRPC UNAVAILABLE          HTTP 503
    NoRulesError      no_config       gRPC UNAVAILABLE          HTTP 503
    anything else     internal        gRPC INTERNAL             HTTP 500 (and logged)

UNAVAILABLE rather than an answer when the store or the rules are missing: Envoy's
``failure_mode_deny`` then decides whether traffic passes while we cannot count (the
reference answers UNKNOWN; both are a failed call to Envoy). Each failure is counted once in
``ratelimit_service_should_rate_limit_error_total{err_type}``, whatever the transport.

A method may have an observer (``RateLimitService.observe``): a function called with the
domain, the descriptors and the Decision after each decision the method makes, before the
transport answers. Full mode counts the decisions of namespaces its customers own with one; a
standalone sidecar has none, and a method without one pays a single ``is None`` test per call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

from sidecar.errors import (
    LeaseNotFound,
    NoRulesError,
    RequestError,
    RequestTooLarge,
    StorageError,
)
from sidecar.limiter.engine import Engine, Limiter
from sidecar.limiter.leases import Leases
from sidecar.model import Decision, Descriptor
from sidecar.observability.metrics import Metrics, add_observations
from sidecar.observability.tracing import Tracing

log = logging.getLogger("sidecar.service")

INTERNAL_MESSAGE = "internal error; see the sidecar log"
T = TypeVar("T")
# (domain, descriptors, decision) after each decision; it must not block: it runs on the
# request's path, between the decision and the answer.
DecisionObserver = Callable[[str, Sequence[Descriptor], Decision], None]


class Failure(NamedTuple):
    """How every wire reports one failed request."""

    kind: str  # the err_type label of ratelimit_service_should_rate_limit_error_total
    grpc_status: int  # a grpc.StatusCode number
    http_status: int
    message: str


class ServiceError(Exception):
    """A request the service could not answer; ``cause`` is the error behind ``failure``."""

    def __init__(self, failure: Failure, cause: BaseException) -> None:
        self.failure = failure
        self.cause = cause
        super().__init__(failure.message)


def failure_of(exc: BaseException) -> Failure:
    """The table of the module docstring."""
    if isinstance(exc, RequestTooLarge):
        return Failure("service_error", 8, 413, str(exc))
    if isinstance(exc, RequestError):
        return Failure("service_error", 3, 400, str(exc))
    if isinstance(exc, LeaseNotFound):
        return Failure("not_found", 5, 404, str(exc))
    if isinstance(exc, StorageError):
        return Failure("redis_error", 14, 503, str(exc))
    if isinstance(exc, NoRulesError):
        return Failure("no_config", 14, 503, str(exc))
    return Failure("internal", 13, 500, INTERNAL_MESSAGE)


class RateLimitService:
    """The engine behind every transport (and its leases, limiter/leases.py), with the metrics
    and traces of their calls."""

    def __init__(self, engine: Limiter, metrics: Metrics, tracing: Tracing | None = None,
                 leases: Leases | None = None) -> None:
        self.engine = engine
        self.metrics = metrics
        self.tracing = tracing or Tracing()
        # Leases match and plan on the Python engine: over another engine (the native one)
        # the composition root brings them, or there are none (no lease routes are served).
        if leases is None and isinstance(engine, Engine):
            leases = Leases(engine, metrics)
        self.leases = leases
        self._errors = {kind: metrics.errors.labels(kind)
                        for kind in ("service_error", "redis_error", "no_config", "internal",
                                     "not_found")}
        self.observers: dict[str, DecisionObserver] = {}
        self._methods: list[Method] = []

    def method(self, name: str, transport: str) -> Method:
        """``name`` (the ``grpc_method`` label) as ``transport`` serves it."""
        method = Method(self, name, transport)
        self._methods.append(method)
        return method

    def observe(self, observer: DecisionObserver | None, names: Iterable[str]) -> None:
        """Call ``observer`` after every decision of the methods ``names`` (None: stop), on
        every transport, those made already and those made later."""
        for name in names:
            if observer is None:
                self.observers.pop(name, None)
            else:
                self.observers[name] = observer
        for method in self._methods:
            method.observer = self.observers.get(method.name)

    def count_errors(self, kind: str, count: int) -> None:
        """``count`` failures of ``kind`` (an err_type of the table) counted elsewhere."""
        self._errors[kind].inc(count)

    def failed(self, exc: BaseException) -> ServiceError:
        """Count ``exc`` once under its kind; log it when nobody expected it."""
        failure = failure_of(exc)
        self._errors[failure.kind].inc()
        if failure.kind == "internal":
            log.error("unexpected error answering a rate-limit request", exc_info=exc)
        else:
            # Not logged per call: the store probe logs outages once, and the error counter
            # shows the rate.
            log.debug("answering %s: %s", failure.kind, exc)
        return ServiceError(failure, exc)


class Method:
    """One method of the service as one transport serves it; its metric children are bound
    once, so a call costs two counter increments, a gauge up and down and one observation
    (and the observer's call, when the method has one)."""

    __slots__ = ("_counted_in_flight", "_engine", "_in_flight", "_latency", "_requests",
                 "_service", "_tracing", "name", "observer", "observer_failures")

    def __init__(self, service: RateLimitService, name: str, transport: str) -> None:
        metrics = service.metrics
        self.name = name
        self._service = service
        self._engine = service.engine
        self._tracing = service.tracing
        self._requests = metrics.requests.labels(name)
        self._latency = metrics.response_time.labels(name)
        self._in_flight = metrics.in_flight.labels(transport)
        self._counted_in_flight = 0  # of the calls counted elsewhere (add_counts)
        self.observer: DecisionObserver | None = service.observers.get(name)
        self.observer_failures = 0

    async def decide(self, domain: str, descriptors: Sequence[Descriptor], hits: int = 0, *,
                     charge_always: bool = False,
                     metadata: Sequence[tuple[str, Any]] | None = None) -> Decision:
        """The engine's decision, or ServiceError. ``metadata`` (gRPC invocation metadata)
        carries the caller's trace context when tracing is on."""
        started = time.perf_counter()
        self._requests.inc()
        self._in_flight.inc()
        try:
            if self._tracing.enabled:
                decision = await self._traced(domain, descriptors, hits, charge_always,
                                              metadata)
            else:
                decision = await self._engine.should_rate_limit(domain, descriptors, hits,
                                                                charge_always=charge_always)
        except Exception as exc:
            raise self._service.failed(exc) from None
        finally:
            self._in_flight.dec()
            self._latency.observe(time.perf_counter() - started)
        observer = self.observer
        if observer is not None:
            try:
                observer(domain, descriptors, decision)
            except Exception:  # the decision stands: the caller still gets its answer
                self._observer_failed()
        return decision

    def _observer_failed(self) -> None:
        """Logged with its traceback the first time, then at debug level: a broken observer
        must not flood the log at the request rate."""
        self.observer_failures += 1
        if self.observer_failures == 1:
            log.exception("the decision observer of %s failed; its further failures are "
                          "logged at debug level", self.name)
        else:
            log.debug("the decision observer of %s failed", self.name, exc_info=True)

    def add_counts(self, requests: int, errors: Mapping[str, int], latency: Sequence[int],
                   latency_sum: float, in_flight: int) -> None:
        """Calls of this method answered outside Python (the native wire's engine), counted
        there and added here in bulk: the same metrics as ``decide`` keeps. ``latency`` per
        bucket of the histogram (not cumulative), ``in_flight`` of those calls now."""
        if requests:
            self._requests.inc(requests)
        add_observations(self._latency, latency, latency_sum)
        for kind, count in errors.items():
            if count:
                self._service.count_errors(kind, count)
        if in_flight != self._counted_in_flight:
            self._in_flight.inc(in_flight - self._counted_in_flight)
            self._counted_in_flight = in_flight

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """Any other call of the engine (the lease operations), counted, traced and with its
        failures mapped as ``decide``'s are."""
        started = time.perf_counter()
        self._requests.inc()
        self._in_flight.inc()
        try:
            with self._tracing.span(self.name):
                return await work()
        except Exception as exc:
            raise self._service.failed(exc) from None
        finally:
            self._in_flight.dec()
            self._latency.observe(time.perf_counter() - started)

    def reject(self, exc: BaseException) -> ServiceError:
        """A request refused before it reached the engine (a malformed message or body):
        counted as a request, answered at once, and counted under its error."""
        self._requests.inc()
        self._latency.observe(0.0)
        return self._service.failed(exc)

    async def _traced(self, domain: str, descriptors: Sequence[Descriptor], hits: int,
                      charge_always: bool,
                      metadata: Sequence[tuple[str, Any]] | None) -> Decision:
        attributes = {"ratelimit.domain": domain, "ratelimit.descriptors": len(descriptors)}
        with self._tracing.span(self.name, metadata, **attributes) as span:
            decision = await self._engine.should_rate_limit(domain, descriptors, hits,
                                                            charge_always=charge_always)
            span.set_attribute("ratelimit.overall_code", decision.overall.name)
            return decision
