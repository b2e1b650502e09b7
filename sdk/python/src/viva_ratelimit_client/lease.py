"""Leases of a concurrency limit (a rule with ``algorithm: concurrency``): what the sidecar
answers (``LeaseResult``, ``ReleaseResult``) and the context managers that hold one
(``Lease`` for ``with``, ``AsyncLease`` for ``async with``).

    with limiter.lease("user_1", "ws"):          # LeaseRefused when every slot is held
        serve_the_websocket()                    # renewed in the background meanwhile
                                                 # released on the way out, whatever happens

While a lease is held it is renewed every third of its time to live (the sidecar says how long
that is), so it outlives any number of them; a holder that dies stops renewing, and its slot
frees when the lease expires. If the sidecar answers that the lease is gone (expired during a
long pause, say), ``lease.lost`` turns true and ``on_lost`` is called; if the sidecar cannot be
reached, renewals keep being tried, and with ``failure_mode`` "closed" (or "raise") the lease
counts as lost once its time to live has passed without one getting through.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

from viva_ratelimit_client.errors import LeaseRefused, RateLimitClientError
from viva_ratelimit_client.result import Descriptor, FailureMode, parse_time

if TYPE_CHECKING:
    from viva_ratelimit_client.client import AsyncClient, Client

log = logging.getLogger("viva_ratelimit_client.lease")
MIN_RENEW_EVERY = 0.05  # seconds: never renew in a tighter loop than this


@dataclass(frozen=True, slots=True)
class LeaseResult:
    """The sidecar's answer to an acquire or a renewal.

    ``allowed``: the lease holds its slots (for a renewal: still holds them; False when the
    lease is gone). ``lease_id`` renews and releases it (None when nothing is held: refused,
    no concurrency limit applies, or the failure mode answered). ``active`` and ``limit``: the
    leases held and the rule's max. ``expires_at`` (the sidecar's clock) and ``ttl_seconds``:
    until when, and for how long, the lease holds unless renewed. ``retry_after_seconds``, when
    refused: the longest wait for a holder's lease to expire (a release comes sooner).
    ``error`` and ``attempts``: the sidecar could not be asked and the failure mode answered.
    """

    allowed: bool
    lease_id: str | None = None
    active: int | None = None
    limit: int | None = None
    expires_at: datetime | None = None
    ttl_seconds: float | None = None
    retry_after_seconds: int | None = None
    policy: str | None = None
    results: tuple[LeaseResult, ...] = ()
    error: str | None = None
    attempts: int | None = None

    def __bool__(self) -> bool:
        return self.allowed

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> LeaseResult:
        expires = doc.get("expires_at")
        return cls(
            allowed=bool(doc["allowed"]), lease_id=doc.get("lease_id"),
            active=doc.get("active"), limit=doc.get("limit"),
            expires_at=parse_time(expires) if isinstance(expires, str) else None,
            ttl_seconds=doc.get("ttl_seconds"),
            retry_after_seconds=doc.get("retry_after_seconds"), policy=doc.get("policy"),
            results=tuple(cls.from_json(r) for r in doc.get("results") or ()))

    @classmethod
    def failure(cls, mode: FailureMode, error: str, attempts: int = 1) -> LeaseResult:
        """The failure mode's answer: "open" allows (holding nothing), "closed" refuses."""
        return cls(allowed=mode == "open", error=error, attempts=attempts)


@dataclass(frozen=True, slots=True)
class ReleaseResult:
    """A release: ``released`` when the sidecar freed the lease's slots (False: it was gone
    already, or, with ``error``, the sidecar could not be asked: the lease then expires with
    its time to live); ``active`` and ``limit`` after it."""

    released: bool
    active: int | None = None
    limit: int | None = None
    error: str | None = None
    attempts: int | None = None

    def __bool__(self) -> bool:
        return self.released


C = TypeVar("C")


class _Holder(Generic[C]):
    """What Lease and AsyncLease share: the request, the held result, and the lost state."""

    def __init__(self, client: C, identifier: str | None, namespace: str, *,
                 ttl: float | None, descriptors: Sequence[Descriptor] | None,
                 renew_every: float | None, on_lost: Callable[[Any], Any] | None,
                 failure_mode: FailureMode) -> None:
        self._client = client
        self._ask = (identifier, namespace, ttl, descriptors)
        self._renew_every = renew_every
        self._on_lost = on_lost
        self._failure_mode = failure_mode
        self.result: LeaseResult | None = None  # the acquire's, then the last renewal's
        self.lost = False  # the lease no longer holds its slots (see the module docstring)
        self._confirmed = 0.0  # time.monotonic() of the last answer that it holds

    @property
    def id(self) -> str | None:
        return self.result.lease_id if self.result is not None else None

    @property
    def held(self) -> bool:
        """Whether a slot is held now (False after release, when lost, or when the failure
        mode allowed without the sidecar)."""
        return self.id is not None and not self.lost

    def _acquired(self, result: LeaseResult) -> None:
        if not result.allowed:
            raise LeaseRefused(result)
        self.result = result
        self._confirmed = time.monotonic()

    def _interval(self) -> float | None:
        """Seconds between renewals; None when nothing is held or its ttl is unknown."""
        ttl = self.result.ttl_seconds if self.result is not None else None
        if self.id is None or not ttl:
            return None
        return max(MIN_RENEW_EVERY, self._renew_every or ttl / 3)

    def _renewed(self, result: LeaseResult) -> bool:
        """Take a renewal's answer in; False once the lease is lost (stop renewing)."""
        if result.allowed and result.error is None:
            self.result = result
            self._confirmed = time.monotonic()
            return True
        ttl = self.result.ttl_seconds if self.result is not None else None
        gone = result.error is None  # the sidecar said so
        unconfirmed = self._failure_mode != "open" and ttl is not None and \
            time.monotonic() - self._confirmed > ttl
        if gone or unconfirmed:
            self.lost = True
            return False
        log.debug("lease renewal not confirmed, trying again: %s", result.error)
        return True

    def _lost_callback(self) -> Any:
        if self._on_lost is None:
            return None
        try:
            return self._on_lost(self)
        except Exception:
            log.exception("on_lost callback failed")
            return None


class Lease(_Holder["Client"]):
    """A slot of a concurrency limit for the ``with`` block: acquired on entry (LeaseRefused
    when refused), renewed by a background thread while held, released on exit."""

    def __init__(self, client: Client, identifier: str | None, namespace: str, *,
                 ttl: float | None = None, descriptors: Sequence[Descriptor] | None = None,
                 renew_every: float | None = None,
                 on_lost: Callable[[Lease], Any] | None = None) -> None:
        super().__init__(client, identifier, namespace, ttl=ttl, descriptors=descriptors,
                         renew_every=renew_every, on_lost=on_lost,
                         failure_mode=client.failure_mode)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> LeaseResult:
        identifier, namespace, ttl, descriptors = self._ask
        self._acquired(self._client.acquire_lease(identifier, namespace, ttl=ttl,
                                                  descriptors=descriptors))
        assert self.result is not None
        if self._interval() is not None:
            self._thread = threading.Thread(target=self._renew_loop, daemon=True,
                                            name=f"viva-lease-{(self.id or '')[:8]}")
            self._thread.start()
        return self.result

    def release(self) -> None:
        """Stop renewing and free the slot (a failure to reach the sidecar is logged: the
        lease then expires with its time to live)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        lease_id, self.result = self.id, None
        if lease_id is None or self.lost:
            return
        try:
            self._client.release_lease(lease_id)
        except RateLimitClientError as exc:
            log.warning("could not release the lease (it expires with its ttl): %s", exc)

    def _renew_loop(self) -> None:
        while (interval := self._interval()) is not None and not self._stop.wait(interval):
            try:
                result = self._client.renew_lease(self.id or "")
            except RateLimitClientError as exc:
                result = LeaseResult(True, error=str(exc))
            if self._stop.is_set():
                return
            if not self._renewed(result):
                self._lost_callback()
                return

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


class AsyncLease(_Holder["AsyncClient"]):
    """The ``async with`` twin of Lease: renewed by a task of the running event loop."""

    def __init__(self, client: AsyncClient, identifier: str | None, namespace: str, *,
                 ttl: float | None = None, descriptors: Sequence[Descriptor] | None = None,
                 renew_every: float | None = None,
                 on_lost: Callable[[AsyncLease], Any] | None = None) -> None:
        super().__init__(client, identifier, namespace, ttl=ttl, descriptors=descriptors,
                         renew_every=renew_every, on_lost=on_lost,
                         failure_mode=client.failure_mode)
        self._task: asyncio.Task[None] | None = None

    async def acquire(self) -> LeaseResult:
        identifier, namespace, ttl, descriptors = self._ask
        self._acquired(await self._client.acquire_lease(identifier, namespace, ttl=ttl,
                                                        descriptors=descriptors))
        assert self.result is not None
        if self._interval() is not None:
            self._task = asyncio.get_running_loop().create_task(self._renew_loop())
        return self.result

    async def release(self) -> None:
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # our own caller is being cancelled, not only the renewals
        lease_id, self.result = self.id, None
        if lease_id is None or self.lost:
            return
        try:
            await self._client.release_lease(lease_id)
        except RateLimitClientError as exc:
            log.warning("could not release the lease (it expires with its ttl): %s", exc)

    async def _renew_loop(self) -> None:
        while (interval := self._interval()) is not None:
            await asyncio.sleep(interval)
            try:
                result = await self._client.renew_lease(self.id or "")
            except RateLimitClientError as exc:
                result = LeaseResult(True, error=str(exc))
            if not self._renewed(result):
                outcome = self._lost_callback()
                if isinstance(outcome, Awaitable):
                    await outcome
                return

    async def __aenter__(self) -> Self:
        await self.acquire()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.release()
