"""Leases as pure functions of one descriptor's lease table: the Python twin of
redis/lua/lease_*.lua, which the memory store runs (the Redis store runs the scripts).

A lease table maps each lease token to its expiry (ms since the epoch). Every operation first
drops the leases that have expired (an expiry at or before ``now`` has expired), then:

- acquire: take a slot for the token if fewer than ``limit`` are held (``force``: even when
  not, for shadow mode);
- renew: hold the token's slot until ``now + ttl_ms``, if it still holds one;
- release: free the token's slot.

Each touches one table (one Redis key), so every operation is atomic on its own and safe in a
Redis Cluster; a lease over several descriptors is several operations (limiter/leases.py).
"""

from __future__ import annotations

import enum
from typing import NamedTuple


class LeaseKind(enum.StrEnum):
    ACQUIRE = "acquire"
    RENEW = "renew"
    RELEASE = "release"


class LeaseOp(NamedTuple):
    """One operation on the lease table ``key``: its ``token`` (the random part of a lease id),
    the time to live it gives (acquire, renew), the most leases held at once (acquire) and
    whether to take a slot even when none is free (acquire in shadow mode)."""

    kind: LeaseKind
    key: str
    token: str
    ttl_ms: int = 0
    limit: int = 0
    force: bool = False


class LeaseState(NamedTuple):
    """What an operation found: ``ok`` (acquire: a slot taken; renew, release: the token held
    one), the leases held after it, the token's expiry after it (0: none held), the earliest
    expiry among the leases held (0: none) and the store's clock when it ran (all ms)."""

    ok: bool
    active: int
    expires_ms: int
    earliest_ms: int
    now_ms: int


def run_lease(table: dict[str, int], op: LeaseOp, now_ms: int) -> LeaseState:
    """Apply ``op`` to ``table`` (changed in place) at ``now_ms``."""
    for token in [t for t, expiry in table.items() if expiry <= now_ms]:
        del table[token]
    ok, expires = False, 0
    if op.kind == LeaseKind.ACQUIRE:
        if len(table) < op.limit or op.force:
            ok, expires = True, now_ms + op.ttl_ms
            table[op.token] = expires
    elif op.kind == LeaseKind.RENEW:
        if op.token in table:
            ok, expires = True, now_ms + op.ttl_ms
            table[op.token] = expires
    else:
        ok = table.pop(op.token, None) is not None
    return LeaseState(ok, len(table), expires, min(table.values(), default=0), now_ms)
