"""What each algorithm may answer when all a client knows is when it sent a call and when the
answer came back.

The sidecar reads its clock somewhere between the two (same machine, same wall clock), so
every call ``j`` happened at an unknown ``t_j`` in ``[sent_j, answered_j]``. The checks below
are necessary conditions that hold for every placement of the calls inside their intervals:
however late the machine ran a call, a correct sidecar passes them, and one that forgets or
invents state fails them as soon as it answers something no placement allows. One client
calls one key, one call at a time, so the calls reach the store in the order they were sent.

Each check returns a list of problems (empty when the answers are possible).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# The sidecar floors its clock to the millisecond and rounds the reset it reports.
SLACK_MS = 2.0


@dataclass(frozen=True)
class Call:
    """One answered call, times in ms since the epoch (widened by the rounding slack)."""

    sent: float
    answered: float
    allowed: bool
    remaining: int
    reset_ms: float

    @classmethod
    def measured(cls, sent_s: float, answered_s: float, allowed: bool, remaining: int,
                 reset_ms: float) -> Call:
        return cls(math.floor(sent_s * 1000) - SLACK_MS, math.ceil(answered_s * 1000) + SLACK_MS,
                   allowed, remaining, reset_ms)


def _within(what: str, j: int, value: float, low: float, high: float) -> list[str]:
    if low - SLACK_MS <= value <= high + SLACK_MS:
        return []
    return [f"call {j}: {what} {value:g} outside the possible [{low:g}, {high:g}]"]


# -- fixed windows, aligned to the epoch --------------------------------------------------------


def _windows(call: Call, w: float) -> range:
    """The windows the call may have fallen in (one, or two when it spans a boundary)."""
    return range(int(call.sent // w), int(call.answered // w) + 1)


def _surely_in(call: Call, k: int, w: float) -> bool:
    return k * w <= call.sent and call.answered < (k + 1) * w


def _maybe_in(call: Call, k: int, w: float) -> bool:
    return call.sent < (k + 1) * w and call.answered >= k * w


def _counted(calls: list[Call], j: int, k: int, w: float, only_allowed: bool) -> tuple[int, int]:
    """How many earlier calls count in window ``k``: surely, possibly."""
    counted = [c for c in calls[:j] if c.allowed or not only_allowed]
    return (sum(_surely_in(c, k, w) for c in counted),
            sum(_maybe_in(c, k, w) for c in counted))


def _elapsed(call: Call, k: int, w: float) -> tuple[float, float]:
    return max(call.sent, k * w) - k * w, min(call.answered, (k + 1) * w - 1) - k * w


def check_fixed_window(calls: list[Call], limit: int, w: float,
                       count_rejected: bool) -> list[str]:
    """Counts per aligned window: every call when ``count_rejected`` (the reference's INCRBY,
    which reports the reset in whole seconds), only allowed ones otherwise (reset in ms)."""
    problems: list[str] = []
    for j, call in enumerate(calls):
        ks = _windows(call, w)
        counts = [_counted(calls, j, k, w, not count_rejected) for k in ks]
        fewest, most = min(lo for lo, _ in counts), max(hi for _, hi in counts)
        if call.allowed and fewest + 1 > limit:
            problems.append(f"call {j}: allowed with {fewest} already counted in its window")
        if not call.allowed and most + 1 <= limit:
            problems.append(f"call {j}: refused with at most {most} counted in its window")
        if call.allowed:
            problems += _within("remaining", j, call.remaining, max(0, limit - 1 - most),
                                max(0, limit - 1 - fewest))
        if count_rejected:
            if call.reset_ms != w:  # whole seconds: a one-second window always says 1 s
                problems.append(f"call {j}: reset {call.reset_ms:g} ms, expected {w:g}")
        else:
            resets = [w - e for k in ks for e in _elapsed(call, k, w)]
            problems += _within("reset", j, call.reset_ms, min(resets), max(resets))
    return problems


def check_sliding_window(calls: list[Call], limit: int, w: float) -> list[str]:
    """floor(previous window * its share still in view) + current window + this call; refused
    calls are not counted (the algorithm's default)."""
    problems: list[str] = []
    for j, call in enumerate(calls):
        least, most, resets = math.inf, -math.inf, []
        for k in _windows(call, w):
            cur_lo, cur_hi = _counted(calls, j, k, w, True)
            prev_lo, prev_hi = _counted(calls, j, k - 1, w, True)
            e_lo, e_hi = _elapsed(call, k, w)
            least = min(least, math.floor(prev_lo * (w - e_hi) / w) + cur_lo + 1)
            most = max(most, math.floor(prev_hi * (w - e_lo) / w) + cur_hi + 1)
            resets += [w - e_hi, w - e_lo]
        if call.allowed and least > limit:
            problems.append(f"call {j}: allowed with at least {least} counted")
        if not call.allowed and most <= limit:
            problems.append(f"call {j}: refused with at most {most} counted")
        if call.allowed:
            problems += _within("remaining", j, call.remaining, max(0, limit - most),
                                limit - least)
            problems += _within("reset", j, call.reset_ms, min(resets), max(resets))
    return problems


# -- sliding log ----------------------------------------------------------------------------


def check_sliding_log(calls: list[Call], limit: int, w: float) -> list[str]:
    """Exact: an entry per allowed call, in view while ``t > now - w``."""
    problems: list[str] = []
    allowed = [i for i, c in enumerate(calls) if c.allowed]
    for a, b in zip(allowed, allowed[limit:], strict=False):  # never limit + 1 in any window
        if calls[b].answered - calls[a].sent < w - SLACK_MS:
            problems.append(f"calls {a} and {b}: {limit + 1} allowed within "
                            f"{calls[b].answered - calls[a].sent:g} ms")
    for j, call in enumerate(calls):
        earlier = [calls[i] for i in allowed if i < j]
        surely = [c for c in earlier if c.sent > call.answered - w]
        maybe = [c for c in earlier if c.answered > call.sent - w]
        if call.allowed and len(surely) >= limit:
            problems.append(f"call {j}: allowed with {len(surely)} entries surely in view")
        if not call.allowed and len(maybe) < limit:
            problems.append(f"call {j}: refused with at most {len(maybe)} entries in view")
        # the oldest entry in view (this call's own when none) leaves the view at reset
        oldest_lo = maybe[0].sent if maybe else call.sent
        oldest_hi = surely[0].answered if surely else call.answered
        low = max(0.0, oldest_lo + w - call.answered)
        high = min(w, oldest_hi + w - call.sent)
        if call.allowed:
            problems += _within("remaining", j, call.remaining, max(0, limit - 1 - len(maybe)),
                                limit - 1 - len(surely))
            problems += _within("reset", j, call.reset_ms, low, high)
        elif surely:
            problems += _within("reset", j, call.reset_ms, max(1.0, low), max(1.0, high))
    return problems


# -- token bucket and leaky bucket (GCRA is a token bucket of ``burst`` tokens) ---------------


def _tokens(calls: list[Call], j: int, capacity: float, rate: float) -> tuple[float, float]:
    """Tokens before call ``j``: the bucket was at most full before any earlier call ``i``,
    then refilled at ``rate`` and paid one token per allowed call since, so
    tokens = min over i of (capacity + rate * (t_j - t_i) - allowed since i), capped at
    capacity; bounded by the earliest and latest placements of the two calls."""
    low = high = capacity
    spent = 0
    for i in range(j - 1, -1, -1):
        spent += calls[i].allowed
        low = min(low, capacity + rate * (calls[j].sent - calls[i].answered) - spent)
        high = min(high, capacity + rate * (calls[j].answered - calls[i].sent) - spent)
    return low, high


def check_bucket(calls: list[Call], capacity: int, limit: int, w: float) -> list[str]:
    """A bucket of ``capacity`` tokens refilled with ``limit`` per ``w``; a call takes one."""
    rate = limit / w
    slack = rate * SLACK_MS
    problems: list[str] = []
    for j, call in enumerate(calls):
        low, high = _tokens(calls, j, capacity, rate)
        if call.allowed and high < 1 - slack:
            problems.append(f"call {j}: allowed with at most {high:.3f} tokens")
        if not call.allowed and low >= 1 + slack:
            problems.append(f"call {j}: refused with at least {low:.3f} tokens")
        if call.allowed:  # remaining whole tokens; reset: until the bucket is full again
            problems += _within("remaining", j, call.remaining, math.floor(low - 1 - slack),
                                math.floor(high - 1 + slack))
            problems += _within("reset", j, call.reset_ms, (capacity - high + 1) / rate,
                                (capacity - low + 1) / rate)
        else:  # reset: until one token is there
            problems += _within("reset", j, call.reset_ms, max(1.0, (1 - high) / rate),
                                max(1.0, (1 - low) / rate))
    return problems


# -- every algorithm whose refusals charge nothing --------------------------------------------


def check_refusals_hold(calls: list[Call]) -> list[str]:
    """A refusal says when a call of the same size will pass. Until then nothing this client
    does can change that (refused calls charge nothing): a call answered before the reset is
    refused, and the first one sent after it is allowed."""
    problems: list[str] = []
    for j, call in enumerate(calls):
        if call.allowed:
            continue
        for k in range(j + 1, len(calls)):
            later = calls[k]
            if later.answered < call.sent + call.reset_ms - SLACK_MS and later.allowed:
                problems.append(f"call {k}: allowed before the reset call {j} announced")
            if later.sent > call.answered + call.reset_ms + SLACK_MS:
                if not later.allowed:
                    problems.append(f"call {k}: refused after the reset call {j} announced")
                break
            if later.allowed:  # the state moved on: later calls answer to it
                break
    return problems
