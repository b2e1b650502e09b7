"""The check endpoints on the fast HTTP/1.1 path (transports/http1.py).

With the native engine the parser's ``Http1Service`` answers the calls itself, and counts
them in Rust; ``export_native_counts`` adds those counts to the service's metrics of the same
endpoints. On the Python engine, an ``Http1Call`` (a request the native parser decoded:
domain, descriptors, hits) is decided through the same service methods as on the general
path (so the same metrics, traces and errors), and its answer written by the parser from the
decision. An ``Http1Referral`` (a body or a header only the general path's code can judge,
or full mode's key endpoints) is answered by that code itself, from its parts, on either
engine. Both come back framed, ready to send.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from types import ModuleType
from typing import Any

from aiohttp import http as aiohttp_http

from sidecar.model import Decision, Descriptor, RateLimit
from sidecar.service import Method, RateLimitService, ServiceError
from sidecar.transports.reply import Reply, RequestParts
from sidecar.transports.rest.handlers import RestApi, rest_failure

# Full mode's key endpoints (key_verify, key_forward_auth), answered from a request's parts.
KeyEndpoint = Callable[[RequestParts], Awaitable[Reply]]
JsonEndpoint = Callable[[bytes], Awaitable[Reply]]
JsonFailure = Callable[[ServiceError], Reply]


class FastRest:
    """The endpoints of the fast path: REST, /json and, in full mode, the key endpoints."""

    def __init__(self, native: ModuleType, rest: RestApi, json_method: Method,
                 json_reply: JsonEndpoint, json_failure: JsonFailure,
                 json_max_body: int, keys: Mapping[str, KeyEndpoint] | None = None) -> None:
        self.rest = rest
        self.clock = rest.clock
        self._json_method = json_method
        self._json_reply = json_reply
        self._json_failure = json_failure
        self._keys = dict(keys or {})
        self.config = native_config(native, rest, json_max_body, full=bool(self._keys))

    async def call(self, call: Any) -> bytes:
        kind: str = call.kind
        json = kind == "json"
        method = self._json_method if json else self.rest.method(kind)
        if json:  # the request's hits_addend, as the RateLimitRequest says
            descriptors = [Descriptor(entries) for entries in call.descriptors]
            hits = call.hits
        else:  # each descriptor's own hits (0: look without charging)
            descriptors = [Descriptor(entries, call.hits) for entries in call.descriptors]
            hits = 0
        try:
            decision = await method.decide(call.domain, descriptors, hits,
                                           charge_always=kind == "report")
        except ServiceError as exc:
            reply = self._json_failure(exc) if json else rest_failure(exc)
            return call.frame(reply.status, reply.headers, reply.body)  # type: ignore[no-any-return]
        return call.answer(int(decision.overall), statuses(decision),  # type: ignore[no-any-return]
                           decision.headers, self.clock())

    async def refer(self, referral: Any, remote: str) -> bytes:
        route: str = referral.route
        reply: Reply
        if route in ("check", "report"):
            reply = await self.rest.decide_body(referral.body, route == "report")
        elif route == "json":
            reply = await self._json_reply(referral.body)
        else:
            parts = RequestParts.of(referral.method, referral.target, referral.headers,
                                    referral.body, remote)
            if route == "forward_auth":
                reply = await self.rest.forward_auth_reply(parts.headers, parts.query)
            else:
                reply = await self._keys[route](parts)
        return referral.frame(reply.status, reply.headers, reply.body)  # type: ignore[no-any-return]


def native_config(native: ModuleType, rest: RestApi, json_max_body: int, full: bool) -> Any:
    """The parser's settings: RestOptions, and how aiohttp words what every answer says."""
    o = rest.options
    return native.Http1Config(
        full=full, max_body_bytes=o.max_body_bytes, json_max_body_bytes=json_max_body,
        max_descriptors=o.max_descriptors, max_entries=o.max_entries, max_hits=o.max_hits,
        identifier_header=o.identifier_header, xff_index=o.xff_index,
        namespace_header=o.namespace_header, default_namespace=o.default_namespace,
        hash_identifier=o.hash_identifier, deny_status=o.deny_status,
        headers=sorted(o.headers), server=aiohttp_http.SERVER_SOFTWARE,
        reasons=[(int(s), s.phrase) for s in HTTPStatus])


def statuses(decision: Decision) -> list[tuple[Any, ...]]:
    """The decision's statuses as the parser's answer takes them."""
    return [(int(s.code), None if s.limit is None else _limit(s.limit), s.remaining,
             s.reset_seconds, s.reset_ms) for s in decision.statuses]


def _limit(limit: RateLimit) -> tuple[str, int, int, int]:
    return limit.name, limit.requests_per_unit, int(limit.unit), limit.window_length_ms


def export_native_counts(native: ModuleType, http1_service: Any,
                         service: RateLimitService) -> Callable[[], None]:
    """A metrics source (``Metrics.add_source``): the request metrics of the calls
    ``http1_service`` (an ``Http1Service``) answered, under each endpoint's method, as the
    general path counts them (transport ``http``)."""
    methods = [service.method(name, "http") for name in native.HTTP1_METHODS]
    kinds = tuple(native.ERROR_KINDS)

    def export() -> None:
        for method, counts in zip(methods, http1_service.take_metrics(), strict=True):
            requests, errors, buckets, latency_sum, in_flight = counts
            method.add_counts(requests, dict(zip(kinds, errors, strict=True)), buckets,
                              latency_sum, in_flight)

    return export
