"""The REST client: ``Client`` (blocking) and ``AsyncClient`` (asyncio), over httpx2.

httpx2 keeps connections alive in a pool (one TCP handshake for many checks), has the same API
for blocking and asyncio code, and explicit timeouts for connect, read, write and pool waits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import httpx2

from viva_ratelimit_client._transport import (
    RetryPolicy,
    Unanswered,
    check_body,
    check_failure_mode,
    give_up,
    invalid,
)
from viva_ratelimit_client.result import CheckResult, Descriptor, FailureMode

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = 0.5  # seconds; a rate-limit check must never hold a request for long
_LIMITS = httpx2.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=30)
# Failures of the connect phase: the sidecar never saw the request, so retrying cannot
# double-charge. Read/write timeouts, broken responses and any answer are not retried.
_RETRY_ERRORS = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout)


class _Base:
    def __init__(self, url: str, timeout: float, retry: RetryPolicy | None,
                 failure_mode: FailureMode) -> None:
        # "host:port", as the sidecar's address is usually written, or a URL
        self.url = (url if "://" in url else f"http://{url}").rstrip("/")
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.failure_mode = check_failure_mode(failure_mode)


class Client(_Base):
    """Blocking client of the sidecar's REST API; thread-safe, reuse one per process.

    ``failure_mode`` says what an unreachable sidecar means: "open" allows (the default: rate
    limiting is protection, not a gate), "closed" refuses, "raise" raises SidecarUnavailable.
    """

    def __init__(self, url: str = DEFAULT_URL, *, timeout: float = DEFAULT_TIMEOUT,
                 retry: RetryPolicy | None = None, failure_mode: FailureMode = "open",
                 headers: Mapping[str, str] | None = None,
                 http: httpx2.Client | None = None) -> None:
        super().__init__(url, timeout, retry, failure_mode)
        self._http = http or httpx2.Client(base_url=self.url, timeout=timeout, limits=_LIMITS,
                                          headers=headers)

    def allow(self, identifier: str, namespace: str, hits: int = 1) -> bool:
        """Charge ``hits`` to ``identifier`` in ``namespace``; True when allowed."""
        return self.check(identifier, namespace, hits).allowed

    def check(self, identifier: str | None, namespace: str, hits: int = 1, *,
              descriptors: Sequence[Descriptor] | None = None) -> CheckResult:
        """Charge and decide (``hits=0`` peeks). With ``descriptors`` (identifier None), one
        result per descriptor is in ``.results``."""
        return self._post("/v1/check", check_body(identifier, namespace, hits, descriptors))

    def report(self, identifier: str | None, namespace: str, hits: int, *,
               descriptors: Sequence[Descriptor] | None = None) -> CheckResult:
        """Charge ``hits`` known after the fact (tokens, bytes); never refused."""
        return self._post("/v1/report", check_body(identifier, namespace, hits, descriptors))

    def peek(self, identifier: str | None, namespace: str, *,
             descriptors: Sequence[Descriptor] | None = None) -> CheckResult:
        """Where the budget stands, without charging."""
        return self.report(identifier, namespace, 0, descriptors=descriptors)

    def _post(self, path: str, body: dict[str, Any]) -> CheckResult:
        error = "no attempt made"
        for attempt, delay in enumerate([*self.retry.delays(), None], start=1):
            try:
                return _interpret(self._http.post(path, json=body))
            except _RETRY_ERRORS as exc:
                error = _describe(exc)
            except Unanswered as exc:
                return give_up(self.failure_mode, str(exc), attempt)
            except httpx2.HTTPError as exc:
                return give_up(self.failure_mode, _describe(exc), attempt)
            if delay is not None:
                time.sleep(delay)
        return give_up(self.failure_mode, error, attempt)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncClient(_Base):
    """The asyncio twin of ``Client``; use one per event loop."""

    def __init__(self, url: str = DEFAULT_URL, *, timeout: float = DEFAULT_TIMEOUT,
                 retry: RetryPolicy | None = None, failure_mode: FailureMode = "open",
                 headers: Mapping[str, str] | None = None,
                 http: httpx2.AsyncClient | None = None) -> None:
        super().__init__(url, timeout, retry, failure_mode)
        self._http = http or httpx2.AsyncClient(base_url=self.url, timeout=timeout,
                                               limits=_LIMITS, headers=headers)

    async def allow(self, identifier: str, namespace: str, hits: int = 1) -> bool:
        return (await self.check(identifier, namespace, hits)).allowed

    async def check(self, identifier: str | None, namespace: str, hits: int = 1, *,
                    descriptors: Sequence[Descriptor] | None = None) -> CheckResult:
        return await self._post("/v1/check",
                                check_body(identifier, namespace, hits, descriptors))

    async def report(self, identifier: str | None, namespace: str, hits: int, *,
                     descriptors: Sequence[Descriptor] | None = None) -> CheckResult:
        return await self._post("/v1/report",
                                check_body(identifier, namespace, hits, descriptors))

    async def peek(self, identifier: str | None, namespace: str, *,
                   descriptors: Sequence[Descriptor] | None = None) -> CheckResult:
        return await self.report(identifier, namespace, 0, descriptors=descriptors)

    async def _post(self, path: str, body: dict[str, Any]) -> CheckResult:
        error = "no attempt made"
        for attempt, delay in enumerate([*self.retry.delays(), None], start=1):
            try:
                return _interpret(await self._http.post(path, json=body))
            except _RETRY_ERRORS as exc:
                error = _describe(exc)
            except Unanswered as exc:
                return give_up(self.failure_mode, str(exc), attempt)
            except httpx2.HTTPError as exc:
                return give_up(self.failure_mode, _describe(exc), attempt)
            if delay is not None:
                await asyncio.sleep(delay)
        return give_up(self.failure_mode, error, attempt)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()


def _interpret(response: httpx2.Response) -> CheckResult:
    status = response.status_code
    if status == 200:
        try:
            return CheckResult.from_json(response.json())
        except (ValueError, KeyError, TypeError) as exc:
            raise Unanswered(f"the sidecar's answer is not a check result: {exc}") from None
    if status in (400, 413):
        raise invalid(_json_or_none(response), status)
    detail = _json_or_none(response)
    text = detail["error"] if isinstance(detail, dict) and "error" in detail else response.text
    # An answer, 503 included (its store is down): never retried, the failure mode decides.
    raise Unanswered(f"HTTP {status} from the sidecar: {str(text)[:200]}")


def _json_or_none(response: httpx2.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
