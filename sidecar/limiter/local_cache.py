"""The local over-limit cache (LOCAL_CACHE_SIZE_IN_BYTES): refusals answered without Redis.

A key found over its limit stays over until a known time, so while a client hammers a limit it
has exhausted, its requests need not reach Redis at all; that is what protects Redis during a
flood. As the reference (TC-27):

- reference-format fixed windows: the key names its window start, and it is cached until that
  window ends (the reference keeps it a full unit; since the next window has another key, the
  answers are the same). A hit answers OVER_LIMIT with remaining 0, counts ``over_limit`` and
  ``over_limit_with_local_cache``, and the counter in Redis is not incremented. Shadow-mode
  rules are cached too; their hits answer OK with the shadow stats.
- the other algorithms: a refusal carries the exact time a request of that size would be
  allowed (``reset_ms``), so the key is cached until then, for requests at least that large.
  Not cached when the rule counts refused requests (``count_rejected: true``) and is not a
  fixed window: there the refused hits themselves push the reset further (a sliding window's
  next window inherits them), so answering from the cache would let requests through earlier
  than Redis would.

Other sidecars and time only make a cached refusal more right: nothing they do can lower a
counter before the cached time. Raising a rule's limit on reload takes effect at once: an entry
holds the limit it was refused under.

Memory is bounded by the setting: each entry is charged what it really costs (the key string,
the entry tuple, the ordered-dict slot: measured, see tests), and the oldest entries go first
when the budget is full; expired ones go when met.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable

# Bytes of one entry besides its key: the (until, min_hits, limit) tuple and its large int,
# and the OrderedDict's hash slot and link node (CPython 3.11, 64-bit; tracemalloc ~166).
ENTRY_OVERHEAD = 176

# Receives (domain, stats key, hits) for every hit; for the per-rule metric.
HitListener = Callable[[str, str, int], None]


class LocalCache:
    """key -> (refused until, in ms since the epoch; smallest refused size; limit)."""

    def __init__(self, size_bytes: int, listener: HitListener | None = None) -> None:
        self.capacity = size_bytes
        self.listener = listener
        self._entries: OrderedDict[str, tuple[int, int, int]] = OrderedDict()
        self.bytes = 0
        self.hits = self.misses = self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def refused_until(self, key: str, hits: int, limit: int, now_ms: int) -> int:
        """When ``key`` is known refused for ``hits`` under ``limit``: until when (ms);
        otherwise 0."""
        entry = self._entries.get(key)
        if entry is not None:
            until, min_hits, cached_limit = entry
            if until <= now_ms:
                self._drop(key)
            elif hits >= min_hits and cached_limit == limit:
                self.hits += 1
                return until
        self.misses += 1
        return 0

    def add(self, key: str, until_ms: int, limit: int, min_hits: int = 0) -> None:
        """Remember that ``key`` refuses requests of ``min_hits`` or more until ``until_ms``."""
        if self.capacity <= 0:
            return
        entries = self._entries
        if key in entries:
            self._drop(key)
        entries[key] = (until_ms, min_hits, limit)
        self.bytes += _cost(key)
        while self.bytes > self.capacity and entries:
            oldest, _ = entries.popitem(last=False)
            self.bytes -= _cost(oldest)
            self.evictions += 1

    def note_hit(self, domain: str, stats_key: str, hits: int) -> None:
        if self.listener is not None:
            self.listener(domain, stats_key, hits)

    def _drop(self, key: str) -> None:
        del self._entries[key]
        self.bytes -= _cost(key)


def _cost(key: str) -> int:
    return ENTRY_OVERHEAD + sys.getsizeof(key)
