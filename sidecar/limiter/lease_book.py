"""The leases one sidecar knows are held, per concurrency rule: what the active-leases gauge
shows.

No sidecar can count every lease of a rule (they live in the shared store, one key per
descriptor value, and expire there without a word), so each keeps the leases it granted or
renewed, until it releases them or they expire. With one sidecar per application instance
(the sidecar deployment: an instance keeps talking to its own) the sum over sidecars is the
exact count; when an instance's calls spread over several sidecars, the sum is an upper bound
that settles within one time to live.
"""

from __future__ import annotations

import heapq
from collections import Counter
from typing import Protocol

_Rule = tuple[str, str]  # (domain, stats key): one concurrency rule as the metrics name it
_Slot = tuple[str, str, str]  # (lease token, domain, stats key): one lease on one rule


class LeaseStats(Protocol):
    """Receives the lease metrics: each acquire's outcome per rule, and the leases held."""

    def lease_acquired(self, domain: str, stats_key: str, outcome: str) -> None: ...

    def leases_active(self, domain: str, stats_key: str, count: int) -> None: ...


class NullLeaseStats:
    def lease_acquired(self, domain: str, stats_key: str, outcome: str) -> None:
        return None

    def leases_active(self, domain: str, stats_key: str, count: int) -> None:
        return None


class LeaseBook:
    """Leases held through this sidecar, each with its expiry on the sidecar's clock (ms)."""

    def __init__(self, stats: LeaseStats) -> None:
        self.stats = stats
        self._expiries: dict[_Slot, int] = {}
        self._counts: Counter[_Rule] = Counter()
        # (expiry, slot), earliest first; a renewal pushes a new entry, and an entry whose
        # expiry is no longer the slot's is skipped when its time comes.
        self._due: list[tuple[int, _Slot]] = []

    def __len__(self) -> int:
        return len(self._expiries)

    def held(self, domain: str, stats_key: str) -> int:
        return self._counts[(domain, stats_key)]

    def hold(self, token: str, domain: str, stats_key: str, expires_ms: int) -> None:
        slot = (token, domain, stats_key)
        if slot not in self._expiries:
            self._change((domain, stats_key), +1)
        self._expiries[slot] = expires_ms
        heapq.heappush(self._due, (expires_ms, slot))

    def drop(self, token: str, domain: str, stats_key: str) -> None:
        slot = (token, domain, stats_key)
        if self._expiries.pop(slot, None) is not None:
            self._change((domain, stats_key), -1)

    def prune(self, now_ms: int) -> None:
        """Forget the leases that have expired by ``now_ms``."""
        due = self._due
        while due and due[0][0] <= now_ms:
            expires, slot = heapq.heappop(due)
            if self._expiries.get(slot) == expires:
                del self._expiries[slot]
                self._change((slot[1], slot[2]), -1)

    def _change(self, rule: _Rule, delta: int) -> None:
        self._counts[rule] += delta
        count = self._counts[rule]
        if count == 0:
            del self._counts[rule]
        self.stats.leases_active(rule[0], rule[1], count)
