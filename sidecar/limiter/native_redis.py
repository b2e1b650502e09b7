"""The native engine on a standalone Redis: the calls of one event-loop turn in one batch.

Calls come from two places: ``NativeEngineAdapter.should_rate_limit`` (every transport through
the service) submits Python requests; the fast transport's connections hold the calls their
engine could not answer inside ``feed`` in the ``FastService``'s queue and say so
(``schedule``). At the end of the turn one ``NativeEngine.redis_batch`` plans them all (one
crossing into Rust), and the batch runs as a task of its own: its pipelines go over one
``RespConnection`` (pipelined with the batches still in flight), the replies go back in one
crossing each, then each Python caller gets its result and the held calls are answered on
their connections inside Rust (``deliver``), so a call pays no Python of its own.

As on the redis-py path: a batch's round trips are bounded by one REDIS_TIMEOUT, the endpoint
has a circuit breaker (open: the batch fails at once, without touching the network), a failed round
trip lets the domains' failure policies answer (in the engine), a lost connection is made again
for the next batch, and a script Redis has forgotten (NOSCRIPT) is loaded again inside the
batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from sidecar.errors import StorageError
from sidecar.limiter.native import NativeRules
from sidecar.storage.redis.breaker import Breaker
from sidecar.storage.redis.resp import RespConnection

log = logging.getLogger("sidecar.native")

# (decision tuple or exception, the rules the request was planned under)
Result = tuple[Any, NativeRules | None]
LOG_INTERVAL = 10.0  # seconds between two lines about failing batches


class NativeRedis:
    """Batches of the native engine's Redis calls over one connection."""

    def __init__(self, engine: Any, connection: RespConnection, breaker: Breaker,
                 rules: Callable[[], NativeRules | None],
                 observe: Callable[[float, str | None], None] | None = None) -> None:
        """``engine``: the ``_native.NativeEngine``; ``rules``: the compiled rules now (the
        limit ids of a batch's decisions are theirs); ``observe``: told each round trip's
        time and how it failed (None: it did not). ``fast``: the ``FastService`` whose held
        calls join every batch, once the fast transport has one."""
        self.engine = engine
        self.connection = connection
        self.breaker = breaker
        self.fast: Any = None
        self._observe = observe
        self._rules = rules
        self._requests: list[tuple[Any, ...]] = []
        self._futures: list[asyncio.Future[Result]] = []
        self._scheduled = False
        self._running: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._logged_at = -LOG_INTERVAL
        self._failed_since_log = 0
        self.batches = 0  # batches sent (for tests and the benchmark)

    def submit(self, request: tuple[Any, ...]) -> asyncio.Future[Result]:
        """``(domain, descriptors, hits_addend, now_ms, charge_always, options)``: its result
        once the batch it joins is done."""
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._requests.append(request)
        self._futures.append(future)
        self.schedule()
        return future

    def schedule(self) -> None:
        """Calls are waiting: plan them at the end of this event-loop turn."""
        if not self._scheduled:
            self._scheduled = True
            self._loop = loop = self._loop or asyncio.get_running_loop()
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        requests, self._requests = self._requests, []
        futures, self._futures = self._futures, []
        if not requests and (self.fast is None or not self.fast.queued):
            return
        rules = self._rules()
        try:
            batch = self.engine.redis_batch(requests, self.fast)
        except Exception as exc:  # a bug: every caller of the turn gets it, nothing hangs
            log.exception("planning a Redis batch failed")
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            return
        self.batches += 1
        assert self._loop is not None
        task = self._loop.create_task(self._run(batch, futures, rules))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, batch: Any, futures: list[asyncio.Future[Result]],
                   rules: NativeRules | None) -> None:
        try:
            await self._round_trips(batch)
        finally:
            # Whatever happened (even a cancellation at shutdown), every call gets an answer.
            for future, result in zip(futures, batch.results(), strict=True):
                if not future.done():
                    future.set_result((result, rules))
            if batch.held:
                assert self._loop is not None
                for connection in batch.deliver(self._loop.time()):
                    connection.delivered()

    async def _round_trips(self, batch: Any) -> None:
        """The batch's round trips (up to three: stop-increment's reads, the charge, the
        script Redis forgot) within one REDIS_TIMEOUT, as the redis-py path bounds them."""
        try:
            self.breaker.check()
        except StorageError as exc:
            self._fail(batch, exc)
            return
        timeout = self.connection.timeout
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                while (commands := batch.commands) is not None:
                    replies = await self.connection.round_trip(commands, batch.expected)
                    batch.feed(replies)
        except TimeoutError:
            failure = StorageError(f"redis {self.connection.label} did not answer within "
                                   f"{timeout * 1000:g} ms")
        except StorageError as caught:
            failure = caught
        except BaseException as caught:  # cancelled (shutdown): the policies still answer
            batch.fail(f"redis {self.connection.label}: {caught!r}", True)
            raise
        else:
            self._observed(started, None)
            if batch.endpoint_failed:
                self.breaker.failure()
            else:
                self.breaker.success()
            return
        self._observed(started, "timeout" if "did not answer" in str(failure) else "StorageError")
        if failure.transient:
            self.breaker.failure()
        self._fail(batch, failure)

    def _observed(self, started: float, error: str | None) -> None:
        if self._observe is not None:
            self._observe(time.perf_counter() - started, error)

    def _fail(self, batch: Any, exc: StorageError) -> None:
        """The failure policies answer for the batch's requests; logged now and then."""
        batch.fail(str(exc), exc.transient)
        self._failed_since_log += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_INTERVAL:
            log.warning("Redis round trips failing (%d since the last such line), answering "
                        "by failure policy: %s", self._failed_since_log, exc)
            self._logged_at, self._failed_since_log = now, 0

    async def ping(self) -> None:
        """StorageError unless Redis answers (through the breaker, so a probe may close it)."""
        self.breaker.check()
        try:
            await self.connection.ping()
        except StorageError as exc:
            if exc.transient:
                self.breaker.failure()
            raise
        self.breaker.success()

    async def close(self) -> None:
        """Let the batches in flight finish, then close the connection."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        await self.connection.close()
