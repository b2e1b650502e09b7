"""REDIS_PERSECOND: counters of one-second windows in a Redis of their own.

As the reference: per-second counters are the hottest and shortest-lived keys, so a deployment
may give them their own Redis. Keys of SECOND-unit fixed windows (and, for the algorithms, of
rules whose window is at most a second) go there, the rest to the main Redis (leases, and the
reads of concurrency limits, always: a lease_ttl is no window); a request that
needs both sends both round trips at once. An atomic request stays on the main Redis whole:
all-or-nothing cannot span two servers. As in the reference, when one side fails after the
other succeeded, the call fails and the other side's increments stay applied.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from sidecar.model import Algorithm
from sidecar.storage.algorithms import Check, Verdict
from sidecar.storage.base import Increment, Store
from sidecar.storage.leases import LeaseOp, LeaseState

PER_SECOND_MS = 1000


def _per_second_increment(inc: Increment) -> bool:
    return 0 < inc.window <= 1


def _per_second_check(check: Check) -> bool:
    return check.rate.window_ms <= PER_SECOND_MS and check.algorithm != Algorithm.CONCURRENCY


class SplitStore:
    """Routes each counter to the main or the per-second store."""

    name = "redis"

    def __init__(self, main: Store, per_second: Store) -> None:
        self.main = main
        self.per_second = per_second

    async def run(self, increments: Sequence[Increment], checks: Sequence[Check], now_ms: int,
                  atomic: bool) -> tuple[list[int], list[Verdict]]:
        fast_inc = [_per_second_increment(i) for i in increments]
        fast_chk = [False] * len(checks) if atomic else [_per_second_check(c) for c in checks]
        if not any(fast_inc) and not any(fast_chk):
            return await self.main.run(increments, checks, now_ms, atomic)
        if all(fast_inc) and all(fast_chk):
            return await self.per_second.run(increments, checks, now_ms, atomic)
        main_part, fast_part = await _both(
            self.main.run(_pick(increments, fast_inc, False), _pick(checks, fast_chk, False),
                          now_ms, atomic),
            self.per_second.run(_pick(increments, fast_inc, True),
                                _pick(checks, fast_chk, True), now_ms, atomic))
        return (_merge(main_part[0], fast_part[0], fast_inc),
                _merge(main_part[1], fast_part[1], fast_chk))

    async def lease(self, ops: Sequence[LeaseOp], now_ms: int) -> list[LeaseState]:
        return await self.main.lease(ops, now_ms)

    async def get(self, keys: Sequence[str], now: float) -> list[int]:
        """A key lives in one of the two stores (absent reads 0 in the other)."""
        main, fast = await _both(self.main.get(keys, now), self.per_second.get(keys, now))
        return [max(a, b) for a, b in zip(main, fast, strict=True)]

    async def ping(self) -> None:
        await _both(self.main.ping(), self.per_second.ping())

    async def close(self) -> None:
        await asyncio.gather(self.main.close(), self.per_second.close())


async def _both(first: Any, second: Any) -> tuple[Any, Any]:
    """Await both; raise the first failure once both are done (none left dangling)."""
    results = await asyncio.gather(first, second, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results[0], results[1]


def _pick(items: Sequence[Any], flags: list[bool], want: bool) -> list[Any]:
    return [item for item, flag in zip(items, flags, strict=True) if flag is want]


def _merge(main: list[Any], fast: list[Any], flags: list[bool]) -> list[Any]:
    """Results back in request order."""
    it_main, it_fast = iter(main), iter(fast)
    return [next(it_fast) if flag else next(it_main) for flag in flags]
