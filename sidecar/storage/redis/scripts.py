"""The Lua side of the algorithms: one script, assembled from one file per algorithm; and one
script per lease operation (lease_acquire.lua, lease_renew.lua, lease_release.lua).

Registered once per client (SCRIPT LOAD on first use, EVALSHA after; redis-py falls back to
loading it again on NOSCRIPT, e.g. after a Redis restart or failover).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any

from sidecar.model import Algorithm
from sidecar.storage.algorithms import Check, Verdict
from sidecar.storage.leases import LeaseKind, LeaseOp, LeaseState

_PARTS = (*Algorithm, "driver")


@functools.cache
def script_sha() -> str:
    """SHA1 of the script, as EVALSHA names it."""
    return hashlib.sha1(script_source().encode()).hexdigest()


@functools.cache
def script_source() -> str:
    """The algorithm functions followed by the driver, as one Lua chunk."""
    folder = resources.files("sidecar.storage.redis").joinpath("lua")
    return "\n".join(folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")
                     for name in _PARTS)


def all_scripts() -> dict[str, str]:
    """Every script the store runs, by SHA1: what a server that forgot them gets again."""
    return {script_sha(): script_source(),
            **{lease_sha(kind): lease_source(kind) for kind in LeaseKind}}


@functools.cache
def lease_source(kind: LeaseKind) -> str:
    folder = resources.files("sidecar.storage.redis").joinpath("lua")
    return folder.joinpath(f"lease_{kind}.lua").read_text(encoding="utf-8")


@functools.cache
def lease_sha(kind: LeaseKind) -> str:
    return hashlib.sha1(lease_source(kind).encode()).hexdigest()


def lease_command(op: LeaseOp) -> tuple[Any, ...]:
    """The EVALSHA of one lease operation (KEYS and ARGV: see the header of its script)."""
    argv: tuple[Any, ...] = (op.token,)
    if op.kind == LeaseKind.ACQUIRE:
        argv = (op.token, op.ttl_ms, op.limit, 1 if op.force else 0)
    elif op.kind == LeaseKind.RENEW:
        argv = (op.token, op.ttl_ms)
    return ("EVALSHA", lease_sha(op.kind), 1, op.key, *argv)


def parse_lease_reply(reply: Sequence[Any]) -> LeaseState:
    ok, active, expires, earliest, now = (int(v) for v in reply)
    return LeaseState(bool(ok), active, expires, earliest, now)


def script_args(checks: Sequence[Check], now_ms: int, atomic: bool) -> tuple[list[str],
                                                                           list[Any]]:
    """KEYS and ARGV for the driver (see the header of lua/driver.lua)."""
    keys = [c.key for c in checks]
    argv: list[Any] = [now_ms, 1 if atomic else 0]
    for c in checks:
        rate = c.rate
        argv += [c.algorithm, rate.requests, _num(rate.window_ms), rate.burst, c.hits,
                 2 if rate.always else 1 if rate.count_rejected else 0, max(1, int(c.ttl_ms)),
                 _num(c.window_end_ms)]
    return keys, argv


def parse_reply(reply: Sequence[Any]) -> list[Verdict]:
    out = []
    for i in range(0, len(reply), 4):
        out.append(Verdict(bool(int(reply[i])), int(reply[i + 1]), float(reply[i + 2]),
                           int(reply[i + 3])))
    return out


def _num(x: float) -> str:
    return repr(float(x)) if x != int(x) else str(int(x))
