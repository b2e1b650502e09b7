"""Counters in Redis, laid out exactly as envoyproxy/ratelimit lays them out.

Fixed windows are ``INCRBY key hits`` + ``EXPIRE key ttl`` for every counter of a request, in one
pipelined round trip (no MULTI), so this service and the reference can share one Redis while a
fleet migrates. The other algorithms are one EVALSHA per descriptor (one for the whole request in
an atomic domain), and so is each lease operation (one script per operation, on one key).
Concurrent requests share pipelines (batching.py); where the commands go —
standalone, Sentinel, Cluster — and how a failing Redis is kept from stalling anyone is
topology.py's job. Every redis-py exception becomes StorageError there or here, nowhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sidecar.errors import StorageError
from sidecar.storage.algorithms import Check, Verdict
from sidecar.storage.base import Increment
from sidecar.storage.leases import LeaseOp, LeaseState
from sidecar.storage.redis.batching import Batcher
from sidecar.storage.redis.breaker import Breaker, BreakerListener
from sidecar.storage.redis.options import RedisOptions
from sidecar.storage.redis.scripts import (
    all_scripts,
    lease_command,
    parse_lease_reply,
    parse_reply,
    script_args,
    script_sha,
)
from sidecar.storage.redis.topology import Command, Topology, connect


class RedisStore:
    """Counters in one Redis deployment (standalone, Sentinel or Cluster)."""

    name = "redis"

    def __init__(self, opts: RedisOptions, client: Any = None,
                 listener: BreakerListener | None = None) -> None:
        self.opts = opts
        self.timeout = opts.timeout
        scripts = all_scripts()
        self.topology = connect(opts, scripts, listener) if client is None else \
            Topology(client, opts.label, opts, scripts, listener)
        self.batcher = Batcher(self.topology.execute, opts.pipeline_window,
                               opts.pipeline_limit) if opts.batching else None
        self._send = self.batcher.submit if self.batcher is not None else \
            self.topology.execute

    @property
    def client(self) -> Any:
        """The redis-py client (a Cluster's is replaced until its first slot map is known)."""
        return self.topology.client

    async def run(self, increments: Sequence[Increment], checks: Sequence[Check], now_ms: int,
                  atomic: bool) -> tuple[list[int], list[Verdict]]:
        """INCRBY + EXPIRE per plain increment and EVALSHA per check (one for all checks when
        ``atomic``), sent in one round trip (shared with concurrent requests)."""
        commands = _commands(increments, checks, now_ms, atomic)
        if not commands:
            return [], []
        replies = await self._send(commands)
        for reply in replies:
            if isinstance(reply, Exception):
                raise _error(reply)
        plain = 2 * len(increments)
        try:
            counts = [int(v) for v in replies[:plain:2]]
            verdicts: list[Verdict] = []
            for reply in replies[plain:]:
                verdicts.extend(parse_reply(reply))
        except (TypeError, ValueError, IndexError) as exc:
            raise StorageError(f"redis: unexpected reply: {exc}", transient=False) from exc
        return counts, verdicts

    async def lease(self, ops: Sequence[LeaseOp], now_ms: int) -> list[LeaseState]:
        """One EVALSHA per operation, in one round trip (shared with concurrent requests);
        the scripts read Redis' own clock, so ``now_ms`` is not used."""
        if not ops:
            return []
        replies = await self._send([lease_command(op) for op in ops])
        for reply in replies:
            if isinstance(reply, Exception):
                raise _error(reply)
        try:
            return [parse_lease_reply(reply) for reply in replies]
        except (TypeError, ValueError) as exc:
            raise StorageError(f"redis: unexpected reply: {exc}", transient=False) from exc

    async def get(self, keys: Sequence[str], now: float) -> list[int]:
        if not keys:
            return []
        replies = await self.topology.mget(keys)
        return [int(v) if v is not None else 0 for v in replies]

    async def ping(self) -> None:
        await self.topology.ping()

    def breakers(self) -> list[Breaker]:
        """The circuit breakers of the endpoints used so far (one per Cluster master)."""
        return self.topology.breakers()

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
        await self.topology.close()


def _commands(increments: Sequence[Increment], checks: Sequence[Check], now_ms: int,
              atomic: bool) -> list[Command]:
    commands: list[Command] = []
    for inc in increments:
        commands.append(("INCRBY", inc.key, inc.hits))
        commands.append(("EXPIRE", inc.key, inc.ttl))
    if checks:
        sha = script_sha()
        for group in ([list(checks)] if atomic else [[c] for c in checks]):
            keys, argv = script_args(group, now_ms, atomic)
            commands.append(("EVALSHA", sha, len(keys), *keys, *argv))
    return commands


def _error(reply: Exception) -> StorageError:
    """A failed reply as the request's error: its endpoint's StorageError as it is, a Redis
    error for this command as a non-transient one (retrying will not help)."""
    if isinstance(reply, StorageError):
        return reply
    return StorageError(f"redis error: {reply}", transient=False)
