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
    bearer,
    check_body,
    check_failure_mode,
    check_root_key,
    give_up,
    give_up_verify,
    invalid,
    unauthorized,
    verify_body,
)
from viva_ratelimit_client.result import CheckResult, Descriptor, FailureMode
from viva_ratelimit_client.verification import KeyVerification

DEFAULT_URL = "http://127.0.0.1:8080"
VERIFY_PATH = "/v1/keys/verify"
DEFAULT_TIMEOUT = 0.5  # seconds; a rate-limit check must never hold a request for long
_LIMITS = httpx2.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=30)
# Failures of the connect phase: the sidecar never saw the request, so retrying cannot
# double-charge. Read/write timeouts, broken responses and any answer are not retried.
_RETRY_ERRORS = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout)


class _Base:
    def __init__(self, url: str, timeout: float, retry: RetryPolicy | None,
                 failure_mode: FailureMode, root_key: str | None,
                 verify_failure_mode: FailureMode) -> None:
        # "host:port", as the sidecar's address is usually written, or a URL
        self.url = (url if "://" in url else f"http://{url}").rstrip("/")
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.failure_mode = check_failure_mode(failure_mode)
        self.verify_failure_mode = check_failure_mode(verify_failure_mode,
                                                      "verify_failure_mode")
        self._root_key = check_root_key(root_key)  # sent by verify_key only, never shown

    def __repr__(self) -> str:
        root = ", root_key=<set>" if self._root_key is not None else ""
        return (f"{type(self).__name__}({self.url!r}, timeout={self.timeout}, "
                f"failure_mode={self.failure_mode!r}, "
                f"verify_failure_mode={self.verify_failure_mode!r}{root})")


class Client(_Base):
    """Blocking client of the sidecar's REST API; thread-safe, reuse one per process.

    ``failure_mode`` says what an unreachable sidecar means: "open" allows (the default: rate
    limiting is protection, not a gate), "closed" refuses, "raise" raises SidecarUnavailable.
    ``root_key`` (full mode, scope ``keys:verify``) is needed by ``verify_key`` only, whose
    ``verify_failure_mode`` is "closed" by default: an unverifiable key is not a valid one.
    """

    def __init__(self, url: str = DEFAULT_URL, *, timeout: float = DEFAULT_TIMEOUT,
                 retry: RetryPolicy | None = None, failure_mode: FailureMode = "open",
                 headers: Mapping[str, str] | None = None,
                 http: httpx2.Client | None = None, root_key: str | None = None,
                 verify_failure_mode: FailureMode = "closed") -> None:
        super().__init__(url, timeout, retry, failure_mode, root_key, verify_failure_mode)
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

    def verify_key(self, key: str, *, cost: int = 1, limits: Sequence[str] | None = None,
                   features: Sequence[str] | None = None) -> KeyVerification:
        """Full mode: authenticate ``key`` and charge ``cost`` to its plan's limits (0 charges
        nothing), or only to the ``limits`` named; ``features`` the plan must include. The
        verdict is in ``.code``; truthy when valid."""
        body = verify_body(key, cost, limits, features)
        headers = bearer(self._root_key)
        try:
            return _verification(*self._exchange("POST", VERIFY_PATH, body, headers))
        except Unanswered as exc:
            return give_up_verify(self.verify_failure_mode, str(exc), exc.attempts)

    def _post(self, path: str, body: dict[str, Any]) -> CheckResult:
        try:
            response, attempt = self._exchange("POST", path, body)
            try:
                return _interpret(response)
            except Unanswered as exc:
                raise Unanswered(str(exc), attempt) from None
        except Unanswered as exc:
            return give_up(self.failure_mode, str(exc), exc.attempts)

    def _exchange(self, method: str, path: str, body: dict[str, Any] | None,
                  headers: Mapping[str, str] | None = None) -> tuple[httpx2.Response, int]:
        """The sidecar's answer and the attempt that got it; Unanswered when none came.
        Only what the sidecar cannot have seen is tried again (see _RETRY_ERRORS)."""
        error = "no attempt made"
        for attempt, delay in enumerate([*self.retry.delays(), None], start=1):
            try:
                return self._http.request(method, path, json=body, headers=headers), attempt
            except _RETRY_ERRORS as exc:
                error = _describe(exc)
            except httpx2.HTTPError as exc:
                raise Unanswered(_describe(exc), attempt) from None
            if delay is not None:
                time.sleep(delay)
        raise Unanswered(error, attempt)

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
                 http: httpx2.AsyncClient | None = None, root_key: str | None = None,
                 verify_failure_mode: FailureMode = "closed") -> None:
        super().__init__(url, timeout, retry, failure_mode, root_key, verify_failure_mode)
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

    async def verify_key(self, key: str, *, cost: int = 1, limits: Sequence[str] | None = None,
                         features: Sequence[str] | None = None) -> KeyVerification:
        body = verify_body(key, cost, limits, features)
        headers = bearer(self._root_key)
        try:
            return _verification(*await self._exchange("POST", VERIFY_PATH, body, headers))
        except Unanswered as exc:
            return give_up_verify(self.verify_failure_mode, str(exc), exc.attempts)

    async def _post(self, path: str, body: dict[str, Any]) -> CheckResult:
        try:
            response, attempt = await self._exchange("POST", path, body)
            try:
                return _interpret(response)
            except Unanswered as exc:
                raise Unanswered(str(exc), attempt) from None
        except Unanswered as exc:
            return give_up(self.failure_mode, str(exc), exc.attempts)

    async def _exchange(self, method: str, path: str, body: dict[str, Any] | None,
                        headers: Mapping[str, str] | None = None
                        ) -> tuple[httpx2.Response, int]:
        error = "no attempt made"
        for attempt, delay in enumerate([*self.retry.delays(), None], start=1):
            try:
                return (await self._http.request(method, path, json=body, headers=headers),
                        attempt)
            except _RETRY_ERRORS as exc:
                error = _describe(exc)
            except httpx2.HTTPError as exc:
                raise Unanswered(_describe(exc), attempt) from None
            if delay is not None:
                await asyncio.sleep(delay)
        raise Unanswered(error, attempt)

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


def _verification(response: httpx2.Response, attempts: int) -> KeyVerification:
    status = response.status_code
    if status == 200:
        try:
            return KeyVerification.from_json(response.json())
        except (ValueError, KeyError, TypeError) as exc:
            raise Unanswered(f"the sidecar's answer is not a verification: "
                             f"{type(exc).__name__}", attempts) from None
    doc = _json_or_none(response)
    if status in (401, 403):
        raise unauthorized(doc, status)
    if status in (400, 413):
        raise invalid(doc, status)
    # Only the sidecar's own error text, never a body it did not write: something else
    # answering on its port might echo the request, and the request holds the key.
    error = doc.get("error") if isinstance(doc, dict) else None
    detail = f": {error[:200]}" if isinstance(error, str) else ""
    raise Unanswered(f"HTTP {status} from the sidecar{detail}", attempts)


def _json_or_none(response: httpx2.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
