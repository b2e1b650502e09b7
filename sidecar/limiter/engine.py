"""Engine.should_rate_limit: the one seam every transport goes through.

Per request: snapshot the rules, match each descriptor, drop unlimited and replaced limits, build
the counter keys, charge them in one store call, then turn counts into per-descriptor statuses,
the overall code and (optionally) response headers, following envoyproxy/ratelimit's semantics.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sidecar.errors import NoRulesError, RequestError
from sidecar.limiter.fixed_window import judge, near_threshold
from sidecar.limiter.keys import descriptor_key, window_key
from sidecar.rules.matcher import Entries, Match, match_descriptor, override_stats_key
from sidecar.rules.model import UNIT_SECONDS, RateLimit, RuleSet, Unit
from sidecar.storage.base import Increment, Store

UNLIMITED_REMAINING = 4294967295


class Code(enum.IntEnum):
    """Envoy's RateLimitResponse.Code numbers."""

    UNKNOWN = 0
    OK = 1
    OVER_LIMIT = 2


@dataclass(frozen=True, slots=True)
class Descriptor:
    """One request descriptor: its entries, and what Envoy may add to it."""

    entries: Entries
    hits_addend: int | None = None  # per-descriptor; None when Envoy did not set it
    limit: tuple[int, Unit] | None = None  # Envoy's limit override (requests_per_unit, unit)


@dataclass(slots=True)
class DescriptorStatus:
    code: Code
    limit: RateLimit | None = None
    remaining: int = 0
    reset_seconds: int = 0


@dataclass(slots=True)
class Decision:
    overall: Code
    statuses: list[DescriptorStatus]
    headers: list[tuple[str, str]] = field(default_factory=list)


class RuleStats(Protocol):
    """Receives the per-rule counters of each decision (the reference's stats)."""

    def record(self, domain: str, stats_key: str, total: int, over: int, near: int,
               within: int, shadow: int) -> None: ...

    def domain_not_found(self, domain: str) -> None: ...

    def global_shadow(self) -> None: ...


class NullStats:
    def record(self, domain: str, stats_key: str, total: int, over: int, near: int,
               within: int, shadow: int) -> None:
        return None

    def domain_not_found(self, domain: str) -> None:
        return None

    def global_shadow(self) -> None:
        return None


@dataclass(frozen=True)
class EngineOptions:
    """Engine behaviour that comes from settings."""

    cache_key_prefix: str = ""
    near_limit_ratio: float = 0.8
    shadow_mode: bool = False
    quota_mode: bool = False
    stop_increment_when_over_limit: bool = False
    expiration_jitter_max_seconds: int = 300
    response_headers: bool = False
    limit_header: str = "RateLimit-Limit"
    remaining_header: str = "RateLimit-Remaining"
    reset_header: str = "RateLimit-Reset"


@dataclass(slots=True)
class _Check:
    """A descriptor that reaches the store."""

    index: int
    limit: RateLimit
    stats_key: str
    key: str
    hits: int
    window: int


@dataclass(slots=True)
class _Plan:
    """Per descriptor: its status so far, the limit it is checked against (None when it has
    none, is unlimited or was replaced) and whether it is unlimited; plus the store checks."""

    statuses: list[DescriptorStatus] = field(default_factory=list)
    limits: list[RateLimit | None] = field(default_factory=list)
    unlimited: list[bool] = field(default_factory=list)
    checks: list[_Check] = field(default_factory=list)

    def add(self, status: DescriptorStatus, limit: RateLimit | None, unlimited: bool) -> None:
        self.statuses.append(status)
        self.limits.append(limit)
        self.unlimited.append(unlimited)


class Engine:
    """Decides requests against the current rules and a counter store."""

    def __init__(self, store: Store, options: EngineOptions | None = None,
                 stats: RuleStats | None = None, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None) -> None:
        self.store = store
        self.options = options or EngineOptions()
        self.stats = stats or NullStats()
        self.clock = clock
        self.rng = rng or random.Random()
        self.rules: RuleSet | None = None

    def set_rules(self, rules: RuleSet) -> None:
        """Swap in a new rule set; requests already running keep the one they started with."""
        self.rules = rules

    async def should_rate_limit(self, domain: str, descriptors: Sequence[Descriptor],
                                hits_addend: int = 0) -> Decision:
        if not domain:
            raise RequestError("rate limit domain must not be empty")
        if not descriptors:
            raise RequestError("rate limit descriptor list must not be empty")
        rules = self.rules
        if rules is None:
            raise NoRulesError()
        now = int(self.clock())
        plan = self._plan(domain, descriptors, self._match_all(rules, domain, descriptors),
                          max(1, hits_addend), now)
        if plan.checks:
            await self._charge(domain, plan.checks, plan.statuses, now)
        return self._finish(plan, now)

    # -- matching ----------------------------------------------------------------------------

    def _match_all(self, rules: RuleSet, domain: str,
                   descriptors: Sequence[Descriptor]) -> list[Match | None]:
        root = rules.domains.get(domain)
        if root is None:
            for _ in descriptors:
                self.stats.domain_not_found(domain)
            return [None] * len(descriptors)
        out: list[Match | None] = []
        for i, desc in enumerate(descriptors):
            if desc.limit is not None:
                out.append(self._override(domain, desc.entries, desc.limit, i))
            elif desc.entries:
                out.append(match_descriptor(root, domain, desc.entries))
            else:
                out.append(None)
        return out

    @staticmethod
    def _override(domain: str, entries: Entries, override: tuple[int, Unit], index: int) -> Match:
        """The limit Envoy sent with the descriptor; applied without consulting the rules."""
        rpu, unit = override
        if unit not in UNIT_SECONDS:
            raise RequestError(f"descriptors[{index}].limit.unit: {int(unit)} is not a unit; "
                               "expected SECOND, MINUTE, HOUR, DAY, WEEK, MONTH or YEAR")
        key = override_stats_key(domain, entries)
        return Match(RateLimit(requests_per_unit=rpu, unit=unit, stats_key=key), key)

    # -- planning ----------------------------------------------------------------------------

    def _plan(self, domain: str, descriptors: Sequence[Descriptor], matches: list[Match | None],
              request_hits: int, now: int) -> _Plan:
        # As the reference: every matched limit (unlimited ones too) contributes its replaces;
        # unlimited wins over being replaced; a replaced limit is dropped (status OK, no limit).
        replaced = {name for m in matches if m is not None for name in m.limit.replaces}
        plan = _Plan()
        prefix = self.options.cache_key_prefix
        for i, (desc, match) in enumerate(zip(descriptors, matches, strict=True)):
            limit = match.limit if match is not None else None
            if limit is not None and limit.unlimited:
                plan.add(DescriptorStatus(Code.OK, remaining=UNLIMITED_REMAINING), None, True)
                continue
            if match is None or limit is None or (limit.name and limit.name in replaced):
                plan.add(DescriptorStatus(Code.OK), None, False)
                continue
            hits = desc.hits_addend if desc.hits_addend is not None else request_hits
            window = UNIT_SECONDS[limit.unit]
            base = descriptor_key(prefix, domain, desc.entries, match.shared_values)
            plan.checks.append(_Check(i, limit, match.stats_key, window_key(base, now, window),
                                      hits, window))
            plan.add(DescriptorStatus(Code.OK, limit, 0, window - now % window), limit, False)
        return plan

    # -- charging ----------------------------------------------------------------------------

    async def _charge(self, domain: str, checks: list[_Check], statuses: list[DescriptorStatus],
                      now: int) -> None:
        hits = [c.hits for c in checks]
        if self.options.stop_increment_when_over_limit:
            current = await self.store.get([c.key for c in checks], now)
            flagged = [v + c.hits > c.limit.requests_per_unit for v, c in zip(current, checks,
                                                                               strict=True)]
            if any(flagged):
                hits = [h if f else 0 for h, f in zip(hits, flagged, strict=True)]
        jitter = self.options.expiration_jitter_max_seconds
        increments = [
            Increment(c.key, h, c.window + (self.rng.randrange(jitter) if jitter > 0 else 0))
            for c, h in zip(checks, hits, strict=True)
        ]
        values = await self.store.increment(increments, now)
        ratio = self.options.near_limit_ratio
        for check, after in zip(checks, values, strict=True):
            self._judge(domain, check, after, ratio, statuses[check.index])

    def _judge(self, domain: str, check: _Check, after: int, ratio: float,
               status: DescriptorStatus) -> None:
        limit = check.limit
        rpu = limit.requests_per_unit
        # As the reference: the decision reads the counter as it is after the store call, even
        # when stop-increment mode charged 0; "before" (for the stats) assumes the full addend.
        hits = check.hits
        outcome = judge(after, hits, rpu, near_threshold(rpu, ratio))
        shadow = 0
        if outcome.over:
            status.code = Code.OVER_LIMIT
            if limit.shadow_mode:
                status.code = Code.OK
                shadow = outcome.over_hits
        else:
            status.remaining = outcome.remaining
        self.stats.record(domain, check.stats_key, hits, outcome.over_hits, outcome.near_hits,
                          outcome.within_hits, shadow)

    # -- the answer --------------------------------------------------------------------------

    def _finish(self, plan: _Plan, now: int) -> Decision:
        opts = self.options
        failed = quota_total = quota_failed = 0
        for status, limit, unlimited in zip(plan.statuses, plan.limits, plan.unlimited,
                                            strict=True):
            if unlimited:
                continue
            over = status.code == Code.OVER_LIMIT
            if opts.quota_mode or (limit is not None and limit.quota_mode):
                quota_total += 1
                quota_failed += over
            elif over:
                failed += 1
        # Quota descriptors fail the request only when every one of them is over.
        over = failed > 0 or (quota_total > 0 and quota_failed == quota_total)
        decision = Decision(Code.OVER_LIMIT if over else Code.OK, plan.statuses)
        if opts.response_headers:
            decision.headers = self._headers(plan, now)
        if over and opts.shadow_mode:
            decision.overall = Code.OK
            self.stats.global_shadow()
        return decision

    def _headers(self, plan: _Plan, now: int) -> list[tuple[str, str]]:
        """Headers from the most constrained status: the last non-quota OVER_LIMIT one, else
        the first with the lowest remaining (the reference's choice)."""
        lowest: DescriptorStatus | None = None
        over: DescriptorStatus | None = None
        for status, limit in zip(plan.statuses, plan.limits, strict=True):
            if status.limit is None or limit is None:
                continue
            if lowest is None or status.remaining < lowest.remaining:
                lowest = status
            if status.code == Code.OVER_LIMIT and not (self.options.quota_mode
                                                       or limit.quota_mode):
                over = status
        chosen = over or lowest
        if chosen is None or chosen.limit is None:
            return []
        opts = self.options
        return [(opts.limit_header, str(chosen.limit.requests_per_unit)),
                (opts.remaining_header, str(chosen.remaining)),
                (opts.reset_header, str(chosen.reset_seconds))]
