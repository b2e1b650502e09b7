"""In-process counters: the embedded default for a laptop or a single instance."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sidecar.model import Algorithm
from sidecar.storage.algorithms import Check, Verdict, run_checks
from sidecar.storage.base import Increment
from sidecar.storage.leases import LeaseOp, LeaseState, run_lease

_FIXED_WINDOW = Algorithm.FIXED_WINDOW  # an Enum attribute lookup costs ~0.3 µs on 3.11


class MemoryStore:
    """Counters in a dict, each with an expiry; expired ones are swept as time passes.

    Single-threaded by design: every call happens on the event loop, so no lock is needed.
    """

    name = "memory"

    def __init__(self) -> None:
        # key -> [value, expires_at_ms, registered_at]; a list so the hot path mutates in
        # place. The value is an int counter, an algorithm's state (a list of floats) or a
        # lease table (a dict: token -> expiry ms), which expires with its last lease.
        # Expiry is in milliseconds, as Redis keeps it: an algorithm's state lives exactly its
        # TTL in ms (PEXPIRE; a sliding log written at 10.6 s must outlive 11 s), a plain
        # counter whole seconds from the second of the call (the reference's EXPIRE on keys
        # that name their window, so a finer expiry could not change an answer).
        self._counters: dict[str, list[Any]] = {}
        # second -> keys registered to be looked at then (the first whole second at or after
        # their expiry). Each live key has exactly one registration (at ``registered_at``):
        # extending a TTL does not add another, the sweep moves the registration instead, so
        # a hot key costs O(1) memory however often it is hit.
        self._expiries: dict[int, list[str]] = {}
        self._swept_until = 0

    def __len__(self) -> int:
        return len(self._counters)

    def increment_now(self, increments: Sequence[Increment], now: int) -> list[int]:
        """Add each increment's hits to its counter (as INCRBY + EXPIRE); the values after."""
        if now > self._swept_until:
            self._sweep(now)
        out = []
        for key, hits, ttl, _ in increments:
            entry = self._touch(key, now * 1000, (now + ttl) * 1000)
            entry[0] += hits
            out.append(entry[0])
        return out

    def _touch(self, key: str, now_ms: int, expires: int) -> list[Any]:
        """The live entry for ``key``, to expire at ``expires`` (ms since the epoch)."""
        entry = self._counters.get(key)
        if entry is None:
            # Never register in the past (a clock that stepped back) or the sweep misses it.
            due = max(-(-expires // 1000), self._swept_until + 1)
            self._counters[key] = entry = [0, expires, due]
            self._expiries.setdefault(due, []).append(key)
        elif entry[1] <= now_ms:  # expired, not swept yet: start over, keep its registration
            entry[0] = 0
            entry[1] = expires
        else:
            entry[1] = expires
        return entry

    async def run(self, increments: Sequence[Increment], checks: Sequence[Check], now_ms: int,
                  atomic: bool) -> tuple[list[int], list[Verdict]]:
        return self.run_now(increments, checks, now_ms, atomic)

    def run_now(self, increments: Sequence[Increment], checks: Sequence[Check], now_ms: int,
                atomic: bool) -> tuple[list[int], list[Verdict]]:
        """Synchronous form of ``run``: the same algorithms the Lua scripts run in Redis."""
        counts = self.increment_now(increments, now_ms // 1000) if increments else []
        if not checks:
            return counts, []
        states = [self._state(c, now_ms) for c in checks]
        new, verdicts = run_checks(states, list(checks), float(now_ms), atomic)
        for check, state in zip(checks, new, strict=True):
            if state is not None:
                self._put_state(check, state, now_ms)
        return counts, verdicts

    def _state(self, check: Check, now_ms: int) -> list[float] | None:
        entry = self._counters.get(check.key)
        if entry is None or entry[1] <= now_ms:
            return None
        value = entry[0]
        if isinstance(value, dict):  # a lease table, read by a concurrency check
            return [float(expiry) for expiry in value.values()]
        return [float(value)] if isinstance(value, int) else list(value)

    def _put_state(self, check: Check, state: list[float], now_ms: int) -> None:
        value: Any = int(state[0]) if check.algorithm == _FIXED_WINDOW else state
        now = now_ms // 1000
        if now > self._swept_until:
            self._sweep(now)
        # the TTL the Lua driver gives PEXPIRE / SET PX
        self._touch(check.key, now_ms, now_ms + max(1, int(check.ttl_ms)))[0] = value

    async def lease(self, ops: Sequence[LeaseOp], now_ms: int) -> list[LeaseState]:
        return self.lease_now(ops, now_ms)

    def lease_now(self, ops: Sequence[LeaseOp], now_ms: int) -> list[LeaseState]:
        """Synchronous form of ``lease``: what the lease scripts do in Redis, on ``now_ms``."""
        if now_ms // 1000 > self._swept_until:
            self._sweep(now_ms // 1000)
        out = []
        for op in ops:
            entry = self._counters.get(op.key)
            live = entry is not None and entry[1] > now_ms and isinstance(entry[0], dict)
            table: dict[str, int] = entry[0] if live and entry is not None else {}
            out.append(run_lease(table, op, now_ms))
            if table:  # the table lives as long as its longest lease
                self._touch(op.key, now_ms, max(table.values()))[0] = table
            elif entry is not None:  # its registration stays; the sweep skips a gone key
                del self._counters[op.key]
        return out

    async def get(self, keys: Sequence[str], now: float) -> list[int]:
        counters, t = self._counters, int(now * 1000)
        out = []
        for key in keys:
            entry = counters.get(key)
            out.append(entry[0] if entry is not None and entry[1] > t else 0)
        return out

    def ttl(self, key: str, now: float) -> int | None:
        """Seconds left for ``key`` (None when absent). Only the store conformance suite asks,
        to hold the memory store's expiries against Redis' TTL."""
        entry = self._counters.get(key)
        if entry is None or entry[1] <= now * 1000:
            return None
        return int((entry[1] - now * 1000) / 1000)

    def _sweep(self, now: int) -> None:
        start = self._swept_until
        self._swept_until = now
        expiries = self._expiries
        if now - start > len(expiries):
            due = [s for s in expiries if s <= now]
        else:
            due = [s for s in range(start, now + 1) if s in expiries]
        counters, now_ms = self._counters, now * 1000
        for second in due:
            for key in expiries.pop(second):
                entry = counters.get(key)
                if entry is None or entry[2] != second:
                    continue
                if entry[1] <= now_ms:
                    del counters[key]
                else:  # extended since it was registered: look again when it is due
                    entry[2] = -(-entry[1] // 1000)
                    expiries.setdefault(entry[2], []).append(key)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._counters.clear()
        self._expiries.clear()
