"""The delivery loop: one per instance, claiming due deliveries from the outbox, sending them
(at most VIVA_WEBHOOKS_CONCURRENCY at once) and recording every attempt.

A failed attempt is retried after an exponential backoff with jitter — the n-th retry waits
between half and all of min(VIVA_WEBHOOKS_BACKOFF * 2^(n-1), VIVA_WEBHOOKS_BACKOFF_MAX) — for
up to VIVA_WEBHOOKS_RETRY_FOR (24 h) after the event; then the delivery is marked failed.
The loop wakes when this instance commits an event and otherwise polls every POLL_SECONDS
(events made by other instances). On SIGTERM it stops claiming, lets attempts under way finish
within the shutdown grace, and hands back what it still holds so another instance (or this
one, restarted) sends it without waiting for the lease to run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sidecar.management.alerts.metrics import AlertMetrics
from sidecar.management.alerts.outbox import DELIVERED, FAILED, Claimed, Outbox
from sidecar.management.alerts.sealing import Sealer, SealError
from sidecar.management.alerts.sender import AttemptResult, Sender
from sidecar.management.alerts.signing import signed_headers, signing_key
from sidecar.management.keys import new_id

log = logging.getLogger("sidecar.webhooks")

POLL_SECONDS = 1.0
DEPTH_SECONDS = 5.0  # how often the outbox gauges are refreshed
EXPIRE_SECONDS = 60.0  # how often deliveries nobody can claim (webhook disabled) give up
PRUNE_SECONDS = 3600.0
LEASE_SLACK = 10.0  # a lease outlasts an attempt's timeout by this much (recording it)


@dataclass(frozen=True)
class DispatchOptions:
    timeout: float = 10.0
    backoff: float = 5.0
    backoff_max: float = 3600.0
    concurrency: int = 8
    poll: float = POLL_SECONDS


def backoff(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds before retry number ``attempt`` (1, 2, …): "equal jitter", so retries of
    many deliveries spread out but never come back at once."""
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 40))
    return ceiling / 2 + rng.uniform(0.0, ceiling / 2)


class Dispatcher:
    def __init__(self, outbox: Outbox, sender: Sender, sealer: Callable[[], Sealer | None],
                 options: DispatchOptions, metrics: AlertMetrics,
                 rng: random.Random | None = None) -> None:
        self.outbox = outbox
        self.sender = sender
        self.sealer = sealer
        self.options = options
        self.metrics = metrics
        self.rng = rng or random.Random()
        self.owner = new_id("inst")  # this process, as lease holder
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._sending: dict[asyncio.Task[None], str] = {}  # attempt → delivery id
        self._failures = 0

    @property
    def lease(self) -> float:
        return self.options.timeout + LEASE_SLACK

    def wake(self, *_: object) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, grace: float) -> None:
        """Stop claiming; attempts under way get ``grace`` seconds, the rest is handed back."""
        self._stopping = True
        self._wake.set()
        deadline = time.monotonic() + grace
        if self._task is not None:  # (it may be waiting on the database)
            await asyncio.wait([self._task], timeout=grace)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sending:
            await asyncio.wait(list(self._sending), timeout=max(0.0, deadline - time.monotonic()))
        unfinished = [self._sending[t] for t in self._sending if not t.done()]
        for task in list(self._sending):
            task.cancel()
        try:
            await asyncio.wait_for(self.outbox.release(self.owner, unfinished),
                                   max(1.0, deadline - time.monotonic()))
        except Exception as exc:  # the database away: the leases run out instead
            log.warning("could not hand back %d deliveries (%s); they are sent again once "
                        "their lease ends", len(unfinished), type(exc).__name__)
        await self.sender.close()

    async def _run(self) -> None:
        next_depth = next_expiry = next_prune = 0.0
        while not self._stopping:
            self._wake.clear()
            claimed = await self._claim()
            for item in claimed:
                task = asyncio.get_running_loop().create_task(self._deliver(item))
                self._sending[task] = item.delivery_id
                task.add_done_callback(self._finished)
            now = time.monotonic()
            if now >= next_depth:
                next_depth = now + DEPTH_SECONDS
                await self._measure()
            if now >= next_expiry:
                next_expiry = now + EXPIRE_SECONDS
                await self._quietly(self._expire())
            if now >= next_prune:
                next_prune = now + PRUNE_SECONDS
                await self._quietly(self.outbox.prune())
            if not claimed or len(self._sending) >= self.options.concurrency:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.options.poll)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._sending.pop(task, None)
        self._wake.set()  # a slot is free

    async def _claim(self) -> list[Claimed]:
        room = self.options.concurrency - len(self._sending)
        if room <= 0:
            return []
        try:
            claimed = await self.outbox.claim(self.owner, room, self.lease)
        except Exception as exc:  # the database away: keep polling, log once per outage
            self._failures += 1
            if self._failures == 1:
                log.warning("cannot read the webhook outbox (%s); retrying every %.1fs",
                            type(exc).__name__, self.options.poll)
            return []
        if self._failures:
            log.warning("the webhook outbox is readable again")
            self._failures = 0
        return claimed

    async def _deliver(self, item: Claimed) -> None:
        result = await self._attempt(item)
        self.metrics.attempted(result)
        retry_in = backoff(item.attempts + 1, self.options.backoff, self.options.backoff_max,
                           self.rng)
        try:
            status = await self.outbox.record(item, self.owner, result, retry_in)
        except Exception as exc:  # not recorded: the lease runs out and it is sent again
            log.warning("delivery %s: cannot record the attempt (%s)", item.delivery_id,
                        type(exc).__name__)
            return
        if status == FAILED:
            self.metrics.failed.inc()
            log.warning("delivery %s of %s to webhook %s failed for good: %s",
                        item.delivery_id, item.event_id, item.endpoint_id, result.error)
        elif status != DELIVERED:
            log.info("delivery %s to webhook %s: %s; next attempt in %.1fs",
                     item.delivery_id, item.endpoint_id, result.error, retry_in)

    async def _attempt(self, item: Claimed) -> AttemptResult:
        sealer = self.sealer()
        try:
            if sealer is None:
                raise SealError("VIVA_SECRET_KEY is not set")
            key = signing_key(sealer.open(item.sealed_secret, item.endpoint_id))
        except (SealError, ValueError) as exc:
            return AttemptResult("refused", None, f"cannot sign: {exc}", 0.0)
        headers = signed_headers(key, item.event_id, int(self.outbox.clock()), item.body)
        return await self.sender.send(item.url, headers, item.body)

    async def _measure(self) -> None:
        try:
            depth, oldest = await self.outbox.depth()
        except Exception:  # reported by _claim already
            return
        self.metrics.depth.set(depth)
        self.metrics.oldest.set(oldest)

    async def _expire(self) -> None:
        given_up = await self.outbox.expire()
        if given_up:
            self.metrics.failed.inc(given_up)

    async def _quietly(self, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception as exc:
            log.warning("webhook outbox housekeeping failed: %s", type(exc).__name__)
