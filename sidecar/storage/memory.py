"""In-process counters: the embedded default for a laptop or a single instance."""

from __future__ import annotations

from collections.abc import Sequence

from sidecar.storage.base import Increment


class MemoryStore:
    """Counters in a dict, each with an expiry; expired ones are swept as time passes.

    Single-threaded by design: every call happens on the event loop, so no lock is needed.
    """

    name = "memory"

    def __init__(self) -> None:
        # key -> [value, expires_at, registered_at]; a list so the hot path mutates in place.
        self._counters: dict[str, list[int]] = {}
        # second -> keys registered to be looked at then. Each live key has exactly one
        # registration (at ``registered_at``): extending a TTL does not add another, the sweep
        # moves the registration instead, so a hot key costs O(1) memory however often it is hit.
        self._expiries: dict[int, list[str]] = {}
        self._swept_until = 0

    def __len__(self) -> int:
        return len(self._counters)

    async def increment(self, increments: Sequence[Increment], now: float) -> list[int]:
        return self.increment_now(increments, int(now))

    def increment_now(self, increments: Sequence[Increment], now: int) -> list[int]:
        """Synchronous form of ``increment`` for in-process callers."""
        if now > self._swept_until:
            self._sweep(now)
        counters, out = self._counters, []
        for key, hits, ttl in increments:
            entry = counters.get(key)
            expires = now + ttl
            if entry is None:
                # Never register in the past (a clock that stepped back) or the sweep misses it.
                due = max(expires, self._swept_until + 1)
                counters[key] = entry = [0, expires, due]
                self._expiries.setdefault(due, []).append(key)
            elif entry[1] <= now:  # expired, not swept yet: start over, keep its registration
                entry[0] = 0
                entry[1] = expires
            else:  # as Redis EXPIRE: every hit sets the time to live again
                entry[1] = expires
            entry[0] += hits
            out.append(entry[0])
        return out

    async def get(self, keys: Sequence[str], now: float) -> list[int]:
        counters, t = self._counters, int(now)
        out = []
        for key in keys:
            entry = counters.get(key)
            out.append(entry[0] if entry is not None and entry[1] > t else 0)
        return out

    def ttl(self, key: str, now: float) -> int | None:
        """Seconds left for ``key`` (None when absent); for tests and /rlconfig-like views."""
        entry = self._counters.get(key)
        if entry is None or entry[1] <= now:
            return None
        return int(entry[1] - now)

    def _sweep(self, now: int) -> None:
        start = self._swept_until
        self._swept_until = now
        expiries = self._expiries
        if now - start > len(expiries):
            due = [s for s in expiries if s <= now]
        else:
            due = [s for s in range(start, now + 1) if s in expiries]
        counters = self._counters
        for second in due:
            for key in expiries.pop(second):
                entry = counters.get(key)
                if entry is None or entry[2] != second:
                    continue
                if entry[1] <= now:
                    del counters[key]
                else:  # extended since it was registered: look again when it is due
                    entry[2] = entry[1]
                    expiries.setdefault(entry[1], []).append(key)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._counters.clear()
        self._expiries.clear()
