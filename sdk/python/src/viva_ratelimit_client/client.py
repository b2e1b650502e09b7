"""The REST client: ``Client`` (blocking) and ``AsyncClient`` (asyncio), over httpx2: checks
and reports, leases of concurrency limits (lease.py), and full mode's key verification
(verification.py).

httpx2 keeps connections alive in a pool (one TCP handshake for many checks), has the same API
for blocking and asyncio code, and explicit timeouts for connect, read, write and pool waits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
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
    check_ttl,
    give_up,
    give_up_verify,
    invalid,
    lease_body,
    lease_path,
    unauthorized,
    verify_body,
)
from viva_ratelimit_client.errors import SidecarUnavailable
from viva_ratelimit_client.lease import AsyncLease, Lease, LeaseResult, ReleaseResult
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
                   features: Sequence[str] | None = None,
                   client_address: str | None = None) -> KeyVerification:
        """Full mode: authenticate ``key`` and charge ``cost`` to its plan's limits (0 charges
        nothing), or only to the ``limits`` named; ``features`` the plan must include. The
        verdict is in ``.code``; truthy when valid.

        ``client_address`` is whoever presented the key to this application (its address, or
        any stable id of that client): the sidecar budgets failed verifications per root key
        and client address, so one client guessing keys cannot get every other client of this
        application answered RATE_LIMITED. Without it, all of them share one budget."""
        body = verify_body(key, cost, limits, features, client_address)
        headers = bearer(self._root_key)
        try:
            return _verification(*self._exchange("POST", VERIFY_PATH, body, headers))
        except Unanswered as exc:
            return give_up_verify(self.verify_failure_mode, str(exc), exc.attempts)

    # -- leases of a concurrency limit (lease.py) ----------------------------------------------

    def lease(self, identifier: str | None, namespace: str, *, ttl: float | None = None,
              descriptors: Sequence[Descriptor] | None = None,
              renew_every: float | None = None,
              on_lost: Callable[[Lease], Any] | None = None) -> Lease:
        """``with limiter.lease("user_1", "ws"):`` holds a slot for the block (LeaseRefused
        when every one is held), renewed in the background, released on exit. ``ttl``
        (seconds; default: the rule's lease_ttl) is how long a dead holder keeps it."""
        return Lease(self, identifier, namespace, ttl=ttl, descriptors=descriptors,
                     renew_every=renew_every, on_lost=on_lost)

    def acquire_lease(self, identifier: str | None, namespace: str, *,
                      ttl: float | None = None,
                      descriptors: Sequence[Descriptor] | None = None) -> LeaseResult:
        """Take a slot (``result.lease_id``) or learn that none is free (``allowed`` False)."""
        body = lease_body(identifier, namespace, ttl, descriptors)
        try:
            return _lease_result(*self._exchange("POST", "/v1/leases", body))
        except Unanswered as exc:
            return _lease_failure(self.failure_mode, exc)

    def renew_lease(self, lease_id: str, *, ttl: float | None = None) -> LeaseResult:
        """Hold the lease ``ttl`` seconds more (default: as long as at its acquire);
        ``allowed`` False when it is gone (expired or released)."""
        body = {} if ttl is None else {"ttl": check_ttl(ttl)}
        try:
            return _lease_result(*self._exchange("POST", lease_path(lease_id, "/renew"), body))
        except Unanswered as exc:
            return _lease_failure(self.failure_mode, exc)

    def release_lease(self, lease_id: str) -> ReleaseResult:
        """Free the lease's slots; ``released`` False when it was gone already."""
        try:
            return _release_result(*self._exchange("DELETE", lease_path(lease_id), None))
        except Unanswered as exc:
            return _release_failure(self.failure_mode, exc)

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
                         features: Sequence[str] | None = None,
                         client_address: str | None = None) -> KeyVerification:
        body = verify_body(key, cost, limits, features, client_address)
        headers = bearer(self._root_key)
        try:
            return _verification(*await self._exchange("POST", VERIFY_PATH, body, headers))
        except Unanswered as exc:
            return give_up_verify(self.verify_failure_mode, str(exc), exc.attempts)

    def lease(self, identifier: str | None, namespace: str, *, ttl: float | None = None,
              descriptors: Sequence[Descriptor] | None = None,
              renew_every: float | None = None,
              on_lost: Callable[[AsyncLease], Any] | None = None) -> AsyncLease:
        """``async with limiter.lease("user_1", "ws"):``: as Client.lease, renewed by a task
        of the running event loop (``on_lost`` may be a coroutine function)."""
        return AsyncLease(self, identifier, namespace, ttl=ttl, descriptors=descriptors,
                          renew_every=renew_every, on_lost=on_lost)

    async def acquire_lease(self, identifier: str | None, namespace: str, *,
                            ttl: float | None = None,
                            descriptors: Sequence[Descriptor] | None = None) -> LeaseResult:
        body = lease_body(identifier, namespace, ttl, descriptors)
        try:
            return _lease_result(*await self._exchange("POST", "/v1/leases", body))
        except Unanswered as exc:
            return _lease_failure(self.failure_mode, exc)

    async def renew_lease(self, lease_id: str, *, ttl: float | None = None) -> LeaseResult:
        body = {} if ttl is None else {"ttl": check_ttl(ttl)}
        path = lease_path(lease_id, "/renew")
        try:
            return _lease_result(*await self._exchange("POST", path, body))
        except Unanswered as exc:
            return _lease_failure(self.failure_mode, exc)

    async def release_lease(self, lease_id: str) -> ReleaseResult:
        try:
            return _release_result(*await self._exchange("DELETE", lease_path(lease_id), None))
        except Unanswered as exc:
            return _release_failure(self.failure_mode, exc)

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


def _lease_result(response: httpx2.Response, attempt: int) -> LeaseResult:
    if response.status_code == 404:  # the lease is gone: it holds nothing
        return LeaseResult(allowed=False)
    doc = _answer(response, attempt)
    try:
        return LeaseResult.from_json(doc)
    except (ValueError, KeyError, TypeError) as exc:
        raise Unanswered(f"the sidecar's answer is not a lease: {exc}", attempt) from None


def _release_result(response: httpx2.Response, attempt: int) -> ReleaseResult:
    if response.status_code == 404:
        return ReleaseResult(released=False)
    doc = _answer(response, attempt)
    if not isinstance(doc.get("released"), bool):
        raise Unanswered("the sidecar's answer is not a release", attempt)
    return ReleaseResult(released=doc["released"], active=doc.get("active"),
                         limit=doc.get("limit"))


def _answer(response: httpx2.Response, attempt: int) -> Any:
    """A 200's JSON; InvalidRequest for a 400/413; Unanswered for anything else."""
    status = response.status_code
    if status in (400, 413):
        raise invalid(_json_or_none(response), status)
    doc = _json_or_none(response)
    if status == 200 and isinstance(doc, dict):
        return doc
    text = doc["error"] if isinstance(doc, dict) and "error" in doc else response.text
    raise Unanswered(f"HTTP {status} from the sidecar: {str(text)[:200]}", attempt)


def _lease_failure(mode: FailureMode, exc: Unanswered) -> LeaseResult:
    if mode == "raise":
        raise SidecarUnavailable(str(exc), exc.attempts)
    return LeaseResult.failure(mode, str(exc), exc.attempts)


def _release_failure(mode: FailureMode, exc: Unanswered) -> ReleaseResult:
    if mode == "raise":
        raise SidecarUnavailable(str(exc), exc.attempts)
    return ReleaseResult(released=False, error=str(exc), attempts=exc.attempts)


def _json_or_none(response: httpx2.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
