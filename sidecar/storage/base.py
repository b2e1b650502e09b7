"""The one interface the engine sees storage through."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from sidecar.storage.algorithms import Check, Verdict
from sidecar.storage.leases import LeaseOp, LeaseState


class Increment(NamedTuple):
    """Add ``hits`` to counter ``key`` and (re)set its time to live to ``ttl`` seconds.

    ``window`` is the rule's window in seconds (0: not known): with REDIS_PERSECOND, counters
    of one-second windows live in their own Redis.
    """

    key: str
    hits: int
    ttl: int
    window: int = 0


class Store(Protocol):
    """A counter store. Every method raises only StorageError on failure."""

    name: str

    async def run(self, increments: Sequence[Increment], checks: Sequence[Check], now_ms: int,
                  atomic: bool) -> tuple[list[int], list[Verdict]]:
        """Plain increments (the reference's fixed windows) and algorithm checks (all of them
        charged or none when ``atomic``), together in one round trip."""
        ...

    async def lease(self, ops: Sequence[LeaseOp], now_ms: int) -> list[LeaseState]:
        """Lease operations (storage/leases.py), each on its own key, in one round trip. A
        store with a clock of its own (Redis: TIME) measures leases on it, so that every
        sidecar sharing it agrees when a lease expires; the others use ``now_ms``."""
        ...

    async def get(self, keys: Sequence[str], now: float) -> list[int]:
        """Current values (0 when absent) of ``keys`` in one round trip."""
        ...

    async def ping(self) -> None:
        """Raise StorageError unless the store answers."""
        ...

    async def close(self) -> None:
        """Release connections and background work."""
        ...
