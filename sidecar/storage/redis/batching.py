"""Cross-request batching: the commands of concurrent requests share one pipeline.

Under load many requests are in flight at once, each with a few commands. Sent one pipeline per
request, Redis sees as many round trips as requests, and the sidecar pays a system call and a
reply parse for each. Here the first request to arrive opens a batch and leads it; requests that
arrive before it is sent add their commands to it. It is sent as one pipeline (per endpoint),
and each request gets its own replies back.

- Default (window 0): the leader yields one event-loop turn, so requests that became ready in
  the same turn (the usual case under load: a burst of frames read from sockets) join it; then
  it is sent. A request alone sends its own commands itself after that one turn: no task, no
  timer, nothing measurable added to its latency (bench/redis_bench.py).
- REDIS_PIPELINE_WINDOW > 0: the leader waits that long (150-500 µs, as the reference's radix
  WriteFlushInterval), trading a little latency for bigger batches.
- REDIS_PIPELINE_LIMIT > 0 caps the commands of one batch: a full batch is closed and sent at
  once, the next request opens a new one (so big batches also run concurrently).

A batch with followers runs as a task of its own, so no caller's cancellation (a gRPC deadline)
can cancel the others' round trip. Replies are routed by position: one request's bad reply (an
error for its command) is in its own slice and fails only it; a failed round trip hands every
request of that endpoint the same StorageError.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sidecar.storage.redis.topology import Command

Execute = Callable[[Sequence[Command]], Awaitable[list[Any]]]


class _Batch:
    __slots__ = ("commands", "ready", "waiters")

    def __init__(self) -> None:
        self.commands: list[Command] = []
        self.ready: asyncio.Future[None] | None = None  # the window's end, when there is one
        # followers: (first command, number of commands, the caller's future)
        self.waiters: list[tuple[int, int, asyncio.Future[list[Any]]]] = []


class Batcher:
    """Coalesces concurrent ``submit`` calls into shared ``execute`` calls."""

    def __init__(self, execute: Execute, window: float = 0.0, limit: int = 0) -> None:
        self._execute = execute
        self.window = window
        self.limit = limit
        self._open: _Batch | None = None
        self._running: set[asyncio.Task[None]] = set()
        self.flushes = 0  # round trips sent (for tests and the benchmark)

    async def submit(self, commands: Sequence[Command]) -> list[Any]:
        """This request's replies, in order, once the batch it joined has run."""
        batch = self._open
        if batch is None:
            return await self._lead(commands)
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        batch.waiters.append((len(batch.commands), len(commands), future))
        batch.commands.extend(commands)
        if self.limit and len(batch.commands) >= self.limit:
            self._close(batch)  # full: later requests open the next one
        return await future

    async def _lead(self, commands: Sequence[Command]) -> list[Any]:
        batch = self._open = _Batch()
        batch.commands.extend(commands)
        try:
            await self._collect(batch)
        except asyncio.CancelledError:
            self._close(batch)
            if batch.waiters:  # the others still get their round trip
                self._dispatch(batch)
            raise
        self._close(batch)
        self.flushes += 1
        if not batch.waiters:  # alone: send it from here, as without batching
            return await self._execute(batch.commands)
        own: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        batch.waiters.append((0, len(commands), own))
        self._dispatch(batch, counted=True)
        return await own

    async def _collect(self, batch: _Batch) -> None:
        """Let the other requests of this turn (or of the window) join."""
        if self.window <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        ready = batch.ready = loop.create_future()
        timer = loop.call_later(self.window, _resolve, ready)
        try:
            await ready
        finally:
            timer.cancel()

    def _close(self, batch: _Batch) -> None:
        """No more joiners; wake a leader waiting out its window."""
        if self._open is batch:
            self._open = None
        if batch.ready is not None:
            _resolve(batch.ready)

    def _dispatch(self, batch: _Batch, counted: bool = False) -> None:
        if not counted:
            self.flushes += 1
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, batch: _Batch) -> None:
        try:
            replies = await self._execute(batch.commands)
        except Exception as exc:  # the topology returns failures in the replies: a bug guard
            for _, _, future in batch.waiters:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # cancelled (shutdown): so are the callers
            for _, _, future in batch.waiters:
                future.cancel()
            raise
        for start, count, future in batch.waiters:
            if not future.done():  # its caller may have been cancelled meanwhile
                future.set_result(replies[start:start + count])

    async def close(self) -> None:
        """Let batches already sent finish (their callers are waiting for them)."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
