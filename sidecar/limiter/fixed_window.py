"""Fixed-window decision arithmetic: a pure function of the counter before and after a hit.

Over the limit is strict (``after > limit``): the N-th hit of an N limit is allowed with 0 left.
The near-limit threshold is computed in float32, as the reference does, so the counts match.
"""

from __future__ import annotations

import struct
from typing import NamedTuple


def float32(x: float) -> float:
    """Round ``x`` to the nearest float32 value."""
    return float(struct.unpack("f", struct.pack("f", x))[0])


def near_threshold(limit: int, ratio: float) -> int:
    """floor(float32(limit) * float32(ratio)), the reference's near-limit line."""
    return int(float32(float32(limit) * float32(ratio)))


class Outcome(NamedTuple):
    """What one hit on a fixed window means for the caller and for the counters."""

    over: bool
    remaining: int
    over_hits: int
    near_hits: int
    within_hits: int


def outcome(after: int, hits: int, limit: int, near: int) -> Outcome:
    """Outcome of adding ``hits`` that took a counter to ``after`` under ``limit``."""
    before = after - hits
    if after > limit:
        if before >= limit:
            return Outcome(True, 0, hits, 0, 0)
        return Outcome(True, 0, after - limit, limit - max(near, before), 0)
    near_hits = 0
    if after > near:
        near_hits = hits if before >= near else after - near
    return Outcome(False, limit - after, 0, near_hits, hits)
