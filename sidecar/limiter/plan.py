"""Planning a request: which descriptors reach the store, under which keys, windows and TTLs.

A matched descriptor becomes a Charge: the reference's fixed windows a plain INCRBY + EXPIRE
on its key (byte for byte envoyproxy/ratelimit's layout), every other limit an algorithm Check
for the store to run. Descriptors without a limit, unlimited or replaced ones get their status
here and never reach the store.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from sidecar.limiter.keys import descriptor_key
from sidecar.limiter.windows import aligned_window, calendar_window
from sidecar.model import (
    UNLIMITED_REMAINING,
    Algorithm,
    Code,
    Descriptor,
    DescriptorStatus,
    RateLimit,
)
from sidecar.rules.matcher import Match
from sidecar.rules.model import DomainOptions
from sidecar.storage.algorithms import Check, Rate

# Module names for the members: an Enum class attribute costs ~0.3 µs to look up on 3.11.
_FIXED_WINDOW, _SLIDING_WINDOW, _SLIDING_LOG, _TOKEN_BUCKET = (
    Algorithm.FIXED_WINDOW, Algorithm.SLIDING_WINDOW, Algorithm.SLIDING_LOG,
    Algorithm.TOKEN_BUCKET)
_BUCKETS = (Algorithm.TOKEN_BUCKET, Algorithm.LEAKY_BUCKET)


@dataclass(slots=True)
class Charge:
    """A descriptor that reaches the store, with the status it answers."""

    index: int
    limit: RateLimit
    stats_key: str
    key: str
    hits: int
    window: int  # the reset in seconds, until the store answers
    check: Check | None = None  # None: a plain INCRBY + EXPIRE (the reference's way)
    ttl: int = 0  # seconds, for the plain INCRBY + EXPIRE


@dataclass(slots=True)
class Plan:
    """Per descriptor: its status so far, the limit it is checked against (None when it has
    none, is unlimited or was replaced) and whether it is unlimited; plus the charges."""

    statuses: list[DescriptorStatus] = field(default_factory=list)
    limits: list[RateLimit | None] = field(default_factory=list)
    unlimited: list[bool] = field(default_factory=list)
    charges: list[Charge] = field(default_factory=list)


class Planner:
    """Turns matched descriptors into charges (keys under ``prefix``, TTLs with jitter)."""

    def __init__(self, prefix: str, jitter_max_seconds: int, rng: random.Random) -> None:
        self.prefix = prefix
        self.jitter = jitter_max_seconds
        self.rng = rng

    def plan(self, domain: str, descriptors: Sequence[Descriptor], matches: list[Match | None],
             request_hits: int, now_ms: int, options: DomainOptions) -> Plan:
        # As the reference: every matched limit (unlimited ones too) contributes its replaces;
        # unlimited wins over being replaced; a replaced limit is dropped (status OK, no limit).
        replaced = {name for m in matches if m is not None and m.limit.replaces
                    for name in m.limit.replaces}
        plan = Plan()
        statuses, limits, unlimited = plan.statuses, plan.limits, plan.unlimited
        for i, match in enumerate(matches):
            if match is None:
                statuses.append(DescriptorStatus(Code.OK))
                limits.append(None)
                unlimited.append(False)
                continue
            limit = match.limit
            if limit.unlimited:
                statuses.append(DescriptorStatus(Code.OK, remaining=UNLIMITED_REMAINING))
                limits.append(None)
                unlimited.append(True)
                continue
            if replaced and limit.name and limit.name in replaced:
                statuses.append(DescriptorStatus(Code.OK))
                limits.append(None)
                unlimited.append(False)
                continue
            desc = descriptors[i]
            hits = desc.hits_addend if desc.hits_addend is not None else request_hits
            charge = self.charge(i, domain, desc, match, hits, now_ms, options)
            plan.charges.append(charge)
            statuses.append(DescriptorStatus(Code.OK, limit, 0, charge.window))
            limits.append(limit)
            unlimited.append(False)
        return plan

    def charge(self, index: int, domain: str, desc: Descriptor, match: Match, hits: int,
               now_ms: int, options: DomainOptions) -> Charge:
        """How one descriptor is counted."""
        limit = match.limit
        # Atomic domains put every key in one hash slot, so one script can touch them all.
        tag = f"{{{domain}}}" if options.atomic else domain
        if match.shared_values:
            base = descriptor_key(self.prefix, tag, desc.entries, match.shared_values)
        else:
            base = "".join([self.prefix, tag, "_", *[f"{k}_{v}_" for k, v in desc.entries]])
        if limit.reference_compatible and not options.atomic:
            now = now_ms // 1000
            window = limit.window_seconds
            ttl = window + self.rng.randrange(self.jitter) if self.jitter > 0 else window
            return Charge(index, limit, match.stats_key, f"{base}{now - now % window}", hits,
                          window - now % window, None, ttl)
        return self._checked(index, limit, match.stats_key, base, hits, now_ms, options)

    def _checked(self, index: int, limit: RateLimit, stats_key: str, base: str, hits: int,
                 now_ms: int, options: DomainOptions) -> Charge:
        """A charge the store answers by running the limit's algorithm."""
        window_ms = limit.window_length_ms
        rpu = limit.requests_per_unit
        algorithm = limit.algorithm
        if algorithm == _FIXED_WINDOW:
            if limit.calendar:
                start, end = calendar_window(now_ms, limit.unit.name.lower(),
                                             _zone(options.time_zone))
            else:
                start, end = aligned_window(now_ms, window_ms)
            key, ttl_ms = f"{base}{start // 1000}", end - now_ms + self._jitter_ms()
        else:
            key, end = f"{base}{algorithm}", now_ms + window_ms
            ttl_ms = _state_ttl_ms(algorithm, rpu, window_ms, limit.burst)
        burst = limit.burst or (rpu if algorithm == _TOKEN_BUCKET else 1)
        check = Check(key, algorithm, Rate(rpu, float(window_ms), burst, limit.count_rejected),
                      hits, float(ttl_ms), float(end))
        return Charge(index, limit, stats_key, key, hits, -(-(end - now_ms) // 1000), check)

    def _jitter_ms(self) -> int:
        return self.rng.randrange(self.jitter) * 1000 if self.jitter > 0 else 0


def peek(charge: Charge) -> Charge:
    """``charge`` sent with 0 hits: the store reports its state without charging it."""
    assert charge.check is not None
    return Charge(charge.index, charge.limit, charge.stats_key, charge.key, charge.hits,
                  charge.window, charge.check._replace(hits=0), charge.ttl)


def always_charge(charges: list[Charge]) -> None:
    """Make every algorithm check charge its hits even when refused (``Rate.always``); the
    plain INCRBY path always charges already."""
    for charge in charges:
        if charge.check is not None:
            rate = charge.check.rate._replace(always=True)
            charge.check = charge.check._replace(rate=rate)


def _state_ttl_ms(algorithm: Algorithm, rpu: int, window_ms: int, burst: int) -> int:
    """How long an algorithm's state matters; past it, a missing key means the same thing."""
    if algorithm == _SLIDING_WINDOW:
        return 2 * window_ms
    if algorithm == _SLIDING_LOG:
        return window_ms
    if algorithm in _BUCKETS:
        per_request = window_ms / max(1, rpu)
        return int(per_request * max(1, burst or rpu) + per_request) + 1000
    return window_ms


_ZONES: dict[str, ZoneInfo] = {}


def _zone(name: str) -> ZoneInfo:
    zone = _ZONES.get(name)
    if zone is None:
        zone = _ZONES[name] = ZoneInfo(name)
    return zone
