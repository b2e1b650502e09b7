"""The counts of the hot path, written to the ledger in batches.

Every VIVA_USAGE_FLUSH_INTERVAL (10 s by default) and once more when the sidecar stops
cleanly (SIGTERM: after the transports have let their last calls finish), the flusher takes
what UsageCounter holds and adds it to the ledger in one transaction. A batch that fails
(the database away) is kept and written again, under the same batch id, before anything
newer; the hot path never waits for it. What a crash (SIGKILL, the power) can lose is what
was counted since the last successful flush: at most one interval of decisions.

Prometheus: ``viva_usage_flush_lag_seconds`` (how old the oldest decision not yet in the
ledger is; 0 when there is none), ``viva_usage_pending_decisions``,
``viva_usage_ledger_rows_written_total`` and ``viva_usage_flushes_total{result}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sidecar.management.usage.counter import UsageCounter
from sidecar.management.usage.ledger import Batch, write_batch

log = logging.getLogger("sidecar.usage")

TICK_SECONDS = 1.0  # how often the lag gauge is refreshed
HOUSEKEEPING_SECONDS = 3600.0
Housekeeping = Callable[[datetime], Awaitable[None]]
FlushedHook = Callable[[frozenset[str]], None]


class UsageFlusher:
    def __init__(self, counter: UsageCounter, sessions: async_sessionmaker[AsyncSession],
                 interval: float, registry: CollectorRegistry,
                 clock: Callable[[], float] = time.time,
                 housekeeping: Sequence[Housekeeping] = ()) -> None:
        self.counter = counter
        self.sessions = sessions
        self.interval = interval
        self.clock = clock
        self.housekeeping = list(housekeeping)
        # Called after each batch is in the ledger with the customers it counted for: where
        # usage alerts learn which customers to look at again (limits.py reads the usage).
        self.flushed: list[FlushedHook] = []
        self.retained: Batch | None = None  # a batch whose write failed, written first
        self.failures = 0
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.lag = Gauge("viva_usage_flush_lag_seconds", "Age of the oldest decision not yet "
                         "written to the usage ledger (0: none pending)", registry=registry,
                         multiprocess_mode="livemax")
        self.pending = Gauge("viva_usage_pending_decisions", "Decisions counted in memory, "
                             "not yet written to the usage ledger", registry=registry,
                             multiprocess_mode="livesum")
        self.rows = Counter("viva_usage_ledger_rows_written", "Rows added to the usage "
                            "ledger", registry=registry)
        self.flushes = Counter("viva_usage_flushes", "Usage ledger writes by result",
                               ("result",), registry=registry)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def oldest_age(self) -> float:
        """Seconds since the oldest decision not yet in the ledger was made (0: none)."""
        oldest = [t for t in (self.counter.oldest,
                              self.retained.oldest if self.retained else None) if t is not None]
        return max(0.0, self.clock() - min(oldest)) if oldest else 0.0

    async def flush(self) -> int:
        """Write a retained batch, then everything counted so far; returns the decisions
        written. Raises what the database raised (the batch is kept for the next call)."""
        async with self._lock:
            written = 0
            if self.retained is not None:
                written += await self._write(self.retained)
            batch = self.counter.take()
            if batch is not None:
                written += await self._write(batch)
            return written

    async def _write(self, batch: Batch) -> int:
        self.retained = batch
        now = datetime.fromtimestamp(self.clock(), UTC)
        try:
            async with self.sessions.begin() as session:
                new = await write_batch(session, batch, now)
        except BaseException:
            self.flushes.labels("error").inc()
            raise
        self.retained = None
        self.flushes.labels("ok").inc()
        if not new:
            log.warning("usage batch %s was already in the ledger; not added twice", batch.id)
            return 0
        self.rows.inc(len(batch.counts))
        for hook in self.flushed:
            try:
                hook(batch.customers)
            except Exception:  # a listener's bug must not stop the ledger
                log.exception("a usage-flushed listener failed")
        return batch.decisions

    async def stop(self, grace: float) -> None:
        """Stop the loop, then write everything counted, retrying for up to ``grace``
        seconds; what still cannot be written is logged as lost."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        deadline = time.monotonic() + grace
        while True:
            try:
                await self.flush()
                return
            except Exception as exc:
                if time.monotonic() >= deadline:
                    lost = self.counter.decisions + (self.retained.decisions
                                                     if self.retained else 0)
                    log.error("could not write %d decisions to the usage ledger before "
                              "stopping (%s); they are not counted", lost, type(exc).__name__)
                    return
                await asyncio.sleep(0.2)

    async def _run(self) -> None:
        next_flush = time.monotonic() + self.interval
        next_housekeeping = time.monotonic()
        while True:
            await asyncio.sleep(min(TICK_SECONDS, self.interval))
            self.lag.set(self.oldest_age())
            self.pending.set(self.counter.decisions)
            if time.monotonic() >= next_flush:
                next_flush = time.monotonic() + self.interval
                await self._flush_logged()
            if self.housekeeping and time.monotonic() >= next_housekeeping:
                next_housekeeping = time.monotonic() + HOUSEKEEPING_SECONDS
                await self._housekeep()

    async def _flush_logged(self) -> None:
        try:
            await self.flush()
        except Exception as exc:  # the database away: keep counting, retry next time
            self.failures += 1
            if self.failures == 1:
                log.warning("cannot write the usage ledger (%s: %s); retrying every %.1fs",
                            type(exc).__name__, str(exc).strip().split("\n")[0][:200],
                            self.interval)
            return
        if self.failures:
            log.warning("usage ledger written again after %d failed attempts", self.failures)
        self.failures = 0

    async def _housekeep(self) -> None:
        now = datetime.fromtimestamp(self.clock(), UTC)
        for task in self.housekeeping:
            try:
                await task(now)
            except Exception as exc:
                log.warning("usage housekeeping failed (%s); trying again in an hour",
                            type(exc).__name__)
