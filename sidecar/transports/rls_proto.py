"""RateLimitRequest ⇄ engine types, shared by every transport (grpc.aio, the fast HTTP/2
transport and /json); protobuf only, so serving without grpcio never imports it."""

from __future__ import annotations

from typing import Any

from envoy.service.ratelimit.v3 import rls_pb2
from google.protobuf.duration_pb2 import Duration

from sidecar.errors import RequestError
from sidecar.model import Decision, Descriptor, DescriptorStatus, Entries, RateLimit, Unit
from sidecar.rules.matcher import override_stats_key

Response = rls_pb2.RateLimitResponse


def descriptors_from_proto(request: Any) -> list[Descriptor]:
    """RateLimitRequest.descriptors → engine descriptors; RequestError names a bad field."""
    out = []
    domain = request.domain
    for i, d in enumerate(request.descriptors):
        entries = tuple((e.key, e.value) for e in d.entries)
        hits = d.hits_addend.value if d.HasField("hits_addend") else None
        limit = (d.limit.requests_per_unit, d.limit.unit) if d.HasField("limit") else None
        out.append(make_descriptor(domain, i, entries, hits, limit))
    return out


def make_descriptor(domain: str, index: int, entries: Entries, hits: int | None,
                    limit: tuple[int, int] | None) -> Descriptor:
    """Descriptor ``index`` of a request from its decoded fields (the wire's numbers, checked
    here, so every decoder refuses the same requests with the same words)."""
    if hits is not None and hits > 2**32 - 1:
        raise RequestError(f"descriptors[{index}].hits_addend: {hits} is too large; expected at "
                           "most 4294967295")
    if limit is None:
        return Descriptor(entries, hits, None)
    requests_per_unit, number = limit
    try:
        unit = Unit(number)
    except ValueError:
        raise RequestError(f"descriptors[{index}].limit.unit: {number} is not a unit; "
                           "expected SECOND..YEAR") from None
    return Descriptor(entries, hits, envoy_override(domain, entries, requests_per_unit, unit))


def envoy_override(domain: str, entries: Entries, requests_per_unit: int,
                   unit: Unit) -> RateLimit:
    """The limit Envoy sends with a descriptor, as the reference applies it: a fixed window,
    never shadowed, counted under a stats key made of the request's values."""
    return RateLimit(requests_per_unit=requests_per_unit, unit=unit,
                     stats_key=override_stats_key(domain, entries))


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


def _duration(status: DescriptorStatus) -> Any:
    if status.reset_ms is None:
        return Duration(seconds=status.reset_seconds)
    return Duration(seconds=status.reset_ms // 1000, nanos=(status.reset_ms % 1000) * 1_000_000)
