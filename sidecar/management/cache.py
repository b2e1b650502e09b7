"""Verified keys in memory, by key hash, so verification runs no SQL after a key's first use.

KeyCache holds what verification needs of a key (its customer, plan, overrides, state) in a
bounded LRU, plus short-lived negative entries for hashes with no key. ChangeFeed keeps every
instance's cache true to the catalog: each mutation writes a ``changes`` row in its own
transaction, and every instance reads the rows after the last one it saw every 250 ms and
drops the entries they name, so a revocation, a plan change or a key change made on any
instance sharing the database applies everywhere within a second. A new key needs nothing: its
hash was never cached (a negative entry for it, were there one, is dropped too).

PostgreSQL hands out ids before commit, so a transaction may commit an id below one already
seen. The feed therefore reads from the lowest id it has not seen yet (a gap) and gives a gap
up only after GAP_SECONDS (a rolled-back transaction leaves one for ever).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sidecar.management.db.models import Change
from sidecar.model import RateLimit

log = logging.getLogger("sidecar.keys")

POLL_SECONDS = 0.25
GAP_SECONDS = 5.0
NEGATIVE_SECONDS = 10.0
KEEP_CHANGES = timedelta(hours=1)


@dataclass(slots=True)
class CachedKey:
    """One key as verification sees it."""

    key_id: str
    customer_id: str
    plan: str
    enabled: bool
    expires_at: float | None  # epoch seconds
    revoked: bool
    customer_limits: list[dict[str, Any]] | None
    key_limits: list[dict[str, Any]] | None
    # Resolved limits for one plans version: (version, limits); see verify.py.
    resolved: tuple[str, tuple[RateLimit, ...]] | None = None
    entries: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)


class KeyCache:
    """A bounded LRU of CachedKey (and negative entries) by key hash."""

    def __init__(self, size: int, clock: Callable[[], float] = time.time) -> None:
        self.size = max(1, size)
        self.clock = clock
        self._entries: OrderedDict[str, CachedKey | float] = OrderedDict()
        self._by_key: dict[str, str] = {}  # key id -> hash
        self._by_customer: dict[str, set[str]] = {}  # customer id -> hashes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key_hash: str) -> CachedKey | bool | None:
        """The cached key; False for a known miss; None when not cached."""
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        if isinstance(entry, float):
            if entry > self.clock():
                return False
            self._drop(key_hash)
            return None
        self._entries.move_to_end(key_hash)
        return entry

    def put(self, key_hash: str, key: CachedKey) -> None:
        self._drop(key_hash)
        self._entries[key_hash] = key
        self._by_key[key.key_id] = key_hash
        self._by_customer.setdefault(key.customer_id, set()).add(key_hash)
        self._trim()

    def put_missing(self, key_hash: str) -> None:
        self._drop(key_hash)
        self._entries[key_hash] = self.clock() + NEGATIVE_SECONDS
        self._trim()

    def forget(self, change: Change) -> None:
        """Drop whatever ``change`` may have made stale."""
        if change.key_hash:
            self._drop(change.key_hash)
        if change.key_id and change.key_id in self._by_key:
            self._drop(self._by_key[change.key_id])
        if change.kind == "customer" and change.customer_id:
            for key_hash in list(self._by_customer.get(change.customer_id, ())):
                self._drop(key_hash)

    def clear(self) -> None:
        self._entries.clear()
        self._by_key.clear()
        self._by_customer.clear()

    def _trim(self) -> None:
        while len(self._entries) > self.size:
            self._drop(next(iter(self._entries)))

    def _drop(self, key_hash: str) -> None:
        entry = self._entries.pop(key_hash, None)
        if isinstance(entry, CachedKey):
            self._by_key.pop(entry.key_id, None)
            hashes = self._by_customer.get(entry.customer_id)
            if hashes is not None:
                hashes.discard(key_hash)
                if not hashes:
                    del self._by_customer[entry.customer_id]


def cached_key(key: Any, customer: Any) -> CachedKey:
    """A CachedKey from the catalog's ApiKey and Customer rows."""
    expires = key.expires_at.timestamp() if key.expires_at is not None else None
    return CachedKey(key.id, key.customer_id, customer.plan, key.enabled, expires,
                     key.revoked_at is not None or customer.deleted_at is not None,
                     customer.limits, key.limits)


class ChangeFeed:
    """Polls the change log and hands each new row to ``apply`` once."""

    def __init__(self, read_after: Callable[[int], Awaitable[list[Change]]],
                 apply: Callable[[Change], None], interval: float = POLL_SECONDS,
                 prune: Callable[[datetime], Awaitable[None]] | None = None,
                 resync: Callable[[], None] | None = None) -> None:
        self.read_after = read_after
        self.apply = apply
        # Called when the log is readable again after failures: what was missed meanwhile
        # may have been pruned, so whatever was cached must be dropped.
        self.resync = resync
        self.interval = interval
        self.prune = prune
        self.floor = 0  # every id up to here has been applied or given up
        self._seen: set[int] = set()  # applied ids above the floor
        self._gaps: dict[int, float] = {}  # missing id -> when first missed
        self._task: asyncio.Task[None] | None = None
        self.failures = 0

    def start(self, floor: int) -> None:
        self.floor = floor
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def poll(self) -> int:
        """Apply every row not applied yet; returns how many were."""
        rows = await self.read_after(self.floor)
        applied = 0
        for row in rows:
            if row.id not in self._seen:
                self._seen.add(row.id)
                self.apply(row)
                applied += 1
        self._advance(time.monotonic())
        return applied

    def _advance(self, now: float) -> None:
        top = max(self._seen, default=self.floor)
        for missing in range(self.floor + 1, top):
            if missing not in self._seen:
                self._gaps.setdefault(missing, now)
        floor = self.floor
        while floor + 1 <= top and (floor + 1 in self._seen or
                                    now - self._gaps.get(floor + 1, now) > GAP_SECONDS):
            floor += 1
            self._seen.discard(floor)
            self._gaps.pop(floor, None)
        self.floor = floor

    async def _run(self) -> None:
        next_prune = 0.0
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll()
                if self.failures and self.resync is not None:
                    log.warning("the change log is readable again; dropping cached keys")
                    self.resync()
                self.failures = 0
                if self.prune is not None and time.monotonic() > next_prune:
                    next_prune = time.monotonic() + 600
                    await self.prune(datetime.now(UTC) - KEEP_CHANGES)
            except Exception as exc:  # the database away: keep trying, log once per outage
                self.failures += 1
                if self.failures == 1:
                    log.warning("cannot read the change log (%s); retrying every %.2fs",
                                exc, self.interval)
