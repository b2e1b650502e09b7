"""The gRPC client: Envoy's RateLimitService (envoy.service.ratelimit.v3) spoken directly to the
sidecar's gRPC port, with the API of ``Client``. Needs the ``grpc`` extra.

One HTTP/2 connection carries every call, protobuf instead of JSON: the lowest latency per
check. The namespace is the RLS domain; the identifier is the entry ``identifier``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import grpc
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from viva_ratelimit_client._transport import (
    RetryPolicy,
    check_body,
    check_failure_mode,
    entries_of,
    give_up,
)
from viva_ratelimit_client.errors import InvalidRequest
from viva_ratelimit_client.result import CheckResult, Descriptor, FailureMode, combine

DEFAULT_TARGET = "127.0.0.1:8081"
_OVER_LIMIT = rls_pb2.RateLimitResponse.OVER_LIMIT
# RateLimitResponse.RateLimit.Unit → seconds (month 30 days and year 365, as the sidecar).
_UNIT_SECONDS = {1: 1, 2: 60, 3: 3600, 4: 86400, 5: 2592000, 6: 31536000, 7: 604800}
Entries = list[tuple[str, str]]


class _GrpcBase:
    def __init__(self, timeout: float, retry: RetryPolicy | None,
                 failure_mode: FailureMode) -> None:
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.failure_mode = check_failure_mode(failure_mode)

    def _attempt_failed(self, error: Any) -> tuple[bool, str]:
        """(retry?, message) for an RpcError; InvalidRequest for INVALID_ARGUMENT."""
        code = error.code()
        details = f"{code.name}: {error.details()}"
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            raise InvalidRequest(str(error.details()))
        # UNAVAILABLE: not connected, or the sidecar's store is down; the hits were not
        # charged. DEADLINE_EXCEEDED may have been charged: no retry.
        return code == grpc.StatusCode.UNAVAILABLE, details


def build_request(body: dict[str, Any]) -> Any:
    """A RateLimitRequest from a REST check body; per-descriptor hits (0 peeks)."""
    request = rls_pb2.RateLimitRequest(domain=body["namespace"], hits_addend=body["hits"])
    for entries in entries_of(body):
        descriptor = request.descriptors.add()
        for key, value in entries:
            descriptor.entries.append(ratelimit_pb2.RateLimitDescriptor.Entry(key=key,
                                                                               value=value))
        descriptor.hits_addend.SetInParent()  # present even when 0: a peek, not "default"
        descriptor.hits_addend.value = body["hits"]
    return request


def result_from_response(response: Any, body: dict[str, Any], now: float) -> CheckResult:
    """The CheckResult the REST API would give for the same decision."""
    descriptors = entries_of(body)
    results = _number_policies([_status_result(s, e, now) for s, e in
                                zip(response.statuses, descriptors, strict=True)])
    overall = combine(results, response.overall_code != _OVER_LIMIT)
    if "descriptors" not in body:
        return replace(overall, results=())
    return overall


def _status_result(status: Any, entries: Entries, now: float) -> CheckResult:
    allowed = status.code != _OVER_LIMIT
    if not status.HasField("current_limit"):
        return CheckResult(allowed)
    limit = status.current_limit
    duration = status.duration_until_reset
    reset_after = math.ceil(duration.seconds + duration.nanos / 1e9)
    return CheckResult(
        allowed=allowed, limit=limit.requests_per_unit, remaining=status.limit_remaining,
        reset_at=datetime.fromtimestamp(math.floor(now) + reset_after, UTC),
        reset_after_seconds=reset_after,
        retry_after_seconds=None if allowed else max(1, reset_after),
        window_seconds=_UNIT_SECONDS.get(limit.unit),
        policy=limit.name or ".".join(k for k, _ in entries))


def _number_policies(results: list[CheckResult]) -> list[CheckResult]:
    seen: dict[str, int] = {}
    out = []
    for r in results:
        if r.policy is not None:
            n = seen[r.policy] = seen.get(r.policy, 0) + 1
            if n > 1:
                r = replace(r, policy=f"{r.policy}.{n}")
        out.append(r)
    return out


class GrpcClient(_GrpcBase):
    """Blocking RLS client; thread-safe, reuse one per process."""

    def __init__(self, target: str = DEFAULT_TARGET, *, timeout: float = 0.5,
                 retry: RetryPolicy | None = None, failure_mode: FailureMode = "open",
                 channel: Any = None) -> None:
        super().__init__(timeout, retry, failure_mode)
        self._channel = channel or grpc.insecure_channel(target)
        self._stub = rls_pb2_grpc.RateLimitServiceStub(self._channel)

    def allow(self, identifier: str, namespace: str, hits: int = 1) -> bool:
        return self.check(identifier, namespace, hits).allowed

    def check(self, identifier: str | None, namespace: str, hits: int = 1, *,
              descriptors: Sequence[Descriptor] | None = None) -> CheckResult:
        return self._call(check_body(identifier, namespace, hits, descriptors))

    def report(self, identifier: str | None, namespace: str, hits: int, *,
               descriptors: Sequence[Descriptor] | None = None) -> CheckResult:
        """Charge after the fact; the answer is informational (``allowed`` says whether the
        budget still holds), as /v1/report."""
        return self._call(check_body(identifier, namespace, hits, descriptors))

    def peek(self, identifier: str | None, namespace: str, *,
             descriptors: Sequence[Descriptor] | None = None) -> CheckResult:
        return self.report(identifier, namespace, 0, descriptors=descriptors)

    def _call(self, body: dict[str, Any]) -> CheckResult:
        request = build_request(body)
        error = "no attempt made"
        for attempt, delay in enumerate([*self.retry.delays(), None], start=1):
            try:
                response = self._stub.ShouldRateLimit(request, timeout=self.timeout)
            except grpc.RpcError as exc:
                again, error = self._attempt_failed(exc)
                if not again:
                    return give_up(self.failure_mode, error, attempt)
            else:
                return result_from_response(response, body, time.time())
            if delay is not None:
                time.sleep(delay)
        return give_up(self.failure_mode, error, attempt)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncGrpcClient(_GrpcBase):
    """The asyncio twin of ``GrpcClient`` (grpc.aio); create it inside the running loop."""

    def __init__(self, target: str = DEFAULT_TARGET, *, timeout: float = 0.5,
                 retry: RetryPolicy | None = None, failure_mode: FailureMode = "open",
                 channel: Any = None) -> None:
        super().__init__(timeout, retry, failure_mode)
        self._channel = channel or grpc.aio.insecure_channel(target)
        self._stub = rls_pb2_grpc.RateLimitServiceStub(self._channel)

    async def allow(self, identifier: str, namespace: str, hits: int = 1) -> bool:
        return (await self.check(identifier, namespace, hits)).allowed

    async def check(self, identifier: str | None, namespace: str, hits: int = 1, *,
                    descriptors: Sequence[Descriptor] | None = None) -> CheckResult:
        return await self._call(check_body(identifier, namespace, hits, descriptors))

    async def report(self, identifier: str | None, namespace: str, hits: int, *,
                     descriptors: Sequence[Descriptor] | None = None) -> CheckResult:
        return await self._call(check_body(identifier, namespace, hits, descriptors))

    async def peek(self, identifier: str | None, namespace: str, *,
                   descriptors: Sequence[Descriptor] | None = None) -> CheckResult:
        return await self.report(identifier, namespace, 0, descriptors=descriptors)

    async def _call(self, body: dict[str, Any]) -> CheckResult:
        request = build_request(body)
        error = "no attempt made"
        for attempt, delay in enumerate([*self.retry.delays(), None], start=1):
            try:
                response = await self._stub.ShouldRateLimit(request, timeout=self.timeout)
            except grpc.RpcError as exc:
                again, error = self._attempt_failed(exc)
                if not again:
                    return give_up(self.failure_mode, error, attempt)
            else:
                return result_from_response(response, body, time.time())
            if delay is not None:
                await asyncio.sleep(delay)
        return give_up(self.failure_mode, error, attempt)

    async def aclose(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
