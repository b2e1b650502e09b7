"""Engine.should_rate_limit: the one seam every transport goes through.

Per request: snapshot the rules, match each descriptor, drop unlimited and replaced limits, build
the counter keys, charge them in one store call, then turn counts into per-descriptor statuses,
the overall code and (optionally) response headers, following envoyproxy/ratelimit's semantics.
Keys the local over-limit cache knows are refused skip the store (local_cache.py); when the
store fails, the domain's failure policy answers instead (policy.py).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from zoneinfo import ZoneInfo

from sidecar.errors import NoRulesError, RequestError, StorageError
from sidecar.limiter.fixed_window import judge, near_threshold
from sidecar.limiter.keys import descriptor_key
from sidecar.limiter.local_cache import LocalCache
from sidecar.limiter.policy import FailureHandler
from sidecar.limiter.windows import aligned_window, calendar_window
from sidecar.model import (
    UNLIMITED_REMAINING,
    Algorithm,
    Code,
    Decision,
    Descriptor,
    DescriptorStatus,
    FailurePolicy,
    RateLimit,
)
from sidecar.rules.matcher import Match, match_descriptor
from sidecar.rules.model import DomainOptions, RuleSet
from sidecar.storage.algorithms import Check, Rate, Verdict
from sidecar.storage.base import Increment, Store

_NO_OPTIONS = DomainOptions()
# Module names for the members: an Enum class attribute costs ~0.3 µs to look up on 3.11.
_FIXED_WINDOW, _SLIDING_WINDOW, _SLIDING_LOG = (
    Algorithm.FIXED_WINDOW, Algorithm.SLIDING_WINDOW, Algorithm.SLIDING_LOG)
_BUCKETS = (Algorithm.TOKEN_BUCKET, Algorithm.LEAKY_BUCKET)


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
    algorithm: Check | None = None  # None: a plain INCRBY + EXPIRE (the reference's way)
    ttl: int = 0  # seconds, for the plain INCRBY + EXPIRE


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
                 rng: random.Random | None = None,
                 policy: FailureHandler | None = None,
                 local_cache: LocalCache | None = None) -> None:
        self.store = store
        self.options = options or EngineOptions()
        self.stats = stats or NullStats()
        self.clock = clock
        self.rng = rng or random.Random()
        self.rules: RuleSet | None = None
        self._near_cache: dict[int, int] = {}
        # What to answer when the store fails, and keys known over their limit (None: off).
        self.policy = policy or FailureHandler()
        self.local_cache = local_cache

    def set_rules(self, rules: RuleSet) -> None:
        """Swap in a new rule set; requests already running keep the one they started with."""
        self.rules = rules

    async def should_rate_limit(self, domain: str, descriptors: Sequence[Descriptor],
                                hits_addend: int = 0, *, charge_always: bool = False) -> Decision:
        """Check and charge ``descriptors`` of ``domain``. ``charge_always`` (usage reported
        after the fact) charges every hit even past the limit, whatever the algorithm and
        ``count_rejected``; it skips the local cache and charges an atomic domain's
        descriptors each on its own."""
        if not domain:
            raise RequestError("rate limit domain must not be empty")
        if not descriptors:
            raise RequestError("rate limit descriptor list must not be empty")
        rules = self.rules
        if rules is None:
            raise NoRulesError()
        now_ms = int(self.clock() * 1000)
        options = rules.options.get(domain, _NO_OPTIONS)
        plan = self._plan(domain, descriptors, self._match_all(rules, domain, descriptors),
                          max(1, hits_addend), now_ms, options)
        checks, cached = plan.checks, False
        if charge_always:
            _charge_always(checks)
        elif checks and self.local_cache is not None:
            checks, cached = self._skip_cached(domain, checks, plan.statuses, now_ms,
                                               options.atomic)
        if checks:
            atomic = options.atomic and not charge_always
            try:
                await self._charge(self.store, domain, checks, plan.statuses, now_ms,
                                   atomic, cached, charge_always)
            except StorageError as exc:
                await self._store_failed(exc, domain, checks, plan.statuses, now_ms,
                                         options.failure_policy, atomic, cached, charge_always)
        return self._finish(plan)

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
                out.append(_explicit(desc.limit, i))
            elif desc.entries:
                out.append(match_descriptor(root, domain, desc.entries))
            else:
                out.append(None)
        return out

    # -- planning ----------------------------------------------------------------------------

    def _plan(self, domain: str, descriptors: Sequence[Descriptor], matches: list[Match | None],
              request_hits: int, now_ms: int, options: DomainOptions) -> _Plan:
        # As the reference: every matched limit (unlimited ones too) contributes its replaces;
        # unlimited wins over being replaced; a replaced limit is dropped (status OK, no limit).
        replaced = {name for m in matches if m is not None and m.limit.replaces
                    for name in m.limit.replaces}
        plan = _Plan()
        statuses, limits, unlimited, checks = plan.statuses, plan.limits, plan.unlimited, \
            plan.checks
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
            check = self._check(i, domain, desc, match, hits, now_ms, options)
            checks.append(check)
            statuses.append(DescriptorStatus(Code.OK, limit, 0, check.window))
            limits.append(limit)
            unlimited.append(False)
        return plan

    def _check(self, index: int, domain: str, desc: Descriptor, match: Match, hits: int,
               now_ms: int, options: DomainOptions) -> _Check:
        """How one descriptor is counted. ``window`` holds its reset in seconds until charged."""
        limit = match.limit
        # Atomic domains put every key in one hash slot, so one script can touch them all.
        tag = f"{{{domain}}}" if options.atomic else domain
        if match.shared_values:
            base = descriptor_key(self.options.cache_key_prefix, tag, desc.entries,
                                  match.shared_values)
        else:
            base = "".join([self.options.cache_key_prefix, tag, "_",
                            *[f"{k}_{v}_" for k, v in desc.entries]])
        if limit.reference_compatible and not options.atomic:
            now = now_ms // 1000
            window = limit.window_seconds
            jitter = self.options.expiration_jitter_max_seconds
            ttl = window + self.rng.randrange(jitter) if jitter > 0 else window
            return _Check(index, limit, match.stats_key, f"{base}{now - now % window}", hits,
                          window - now % window, None, ttl)
        return self._algorithm_check(index, limit, match.stats_key, base, hits, now_ms, options)

    def _algorithm_check(self, index: int, limit: RateLimit, stats_key: str, base: str,
                         hits: int, now_ms: int, options: DomainOptions) -> _Check:
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
        burst = limit.burst or (rpu if algorithm == Algorithm.TOKEN_BUCKET else 1)
        check = Check(key, algorithm, Rate(rpu, float(window_ms), burst, limit.count_rejected),
                      hits, float(ttl_ms), float(end))
        return _Check(index, limit, stats_key, key, hits, -(-(end - now_ms) // 1000), check)

    def _jitter_ms(self) -> int:
        jitter = self.options.expiration_jitter_max_seconds
        return self.rng.randrange(jitter) * 1000 if jitter > 0 else 0

    # -- charging ----------------------------------------------------------------------------

    async def _charge(self, store: Store, domain: str, checks: list[_Check],
                      statuses: list[DescriptorStatus], now_ms: int, atomic: bool,
                      cached: bool = False, always: bool = False) -> None:
        scripted = [c for c in checks if c.algorithm is not None]
        plain = [c for c in checks if c.algorithm is None] if scripted else checks
        increments = [Increment(c.key, c.hits, c.ttl, c.limit.window_seconds) for c in plain]
        if plain and self.options.stop_increment_when_over_limit and not always:
            if cached:  # as the reference: a local-cache hit means charge nothing else
                increments = [i._replace(hits=0) for i in increments]
            else:
                increments = await self._stop_increment(store, plain, increments, now_ms)
        values, verdicts = await store.run(
            increments, [c.algorithm for c in scripted if c.algorithm is not None], now_ms,
            atomic)
        for check, after in zip(plain, values, strict=True):
            self._judge(domain, check, after, statuses[check.index])
        for check, verdict in zip(scripted, verdicts, strict=True):
            self._apply(domain, check, verdict, statuses[check.index])
        if self.local_cache is not None:
            self._remember_over(plain, values, scripted, verdicts, now_ms)

    async def _stop_increment(self, store: Store, plain: list[_Check],
                              increments: list[Increment], now_ms: int) -> list[Increment]:
        """STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT: when some counters would go over, charge
        only those (the reference's rule), so the others keep their quota."""
        current = await store.get([c.key for c in plain], now_ms / 1000)
        flagged = [v + c.hits > c.limit.requests_per_unit
                   for v, c in zip(current, plain, strict=True)]
        if not any(flagged):
            return increments
        return [i if f else i._replace(hits=0) for i, f in zip(increments, flagged, strict=True)]

    # -- store failure and the local over-limit cache ---------------------------------------

    async def _store_failed(self, error: StorageError, domain: str, checks: list[_Check],
                            statuses: list[DescriptorStatus], now_ms: int,
                            domain_policy: FailurePolicy | None, atomic: bool, cached: bool,
                            always: bool) -> None:
        """Answer by the domain's failure policy (see limiter/policy.py); ``unavailable``
        re-raises, so the transport answers UNAVAILABLE and Envoy decides."""
        policy = self.policy.choose(domain_policy)
        self.policy.decided(domain, policy, error)
        if policy == FailurePolicy.UNAVAILABLE:
            raise error
        if policy == FailurePolicy.LOCAL:
            assert self.policy.fallback is not None  # choose() never picks local without it
            await self._charge(self.policy.fallback, domain, checks, statuses, now_ms, atomic,
                               cached, always)
            return
        deny = policy == FailurePolicy.DENY
        for check in checks:
            status, limit = statuses[check.index], check.limit
            if deny:
                status.code = Code.OK if limit.shadow_mode else Code.OVER_LIMIT
                status.remaining = 0
            else:  # allow: as if this were the first request of its window
                status.remaining = max(0, limit.requests_per_unit - check.hits)

    def _skip_cached(self, domain: str, checks: list[_Check],
                     statuses: list[DescriptorStatus], now_ms: int,
                     atomic: bool) -> tuple[list[_Check], bool]:
        """Answer the checks the local cache knows are over; return the others, and whether
        any was answered."""
        cache = self.local_cache
        assert cache is not None
        rest: list[_Check] = []
        for check in checks:
            until = cache.refused_until(check.key, check.hits, check.limit.requests_per_unit,
                                        now_ms)
            if until:
                self._cached_over(domain, check, statuses[check.index], until - now_ms, cache)
            else:
                rest.append(check)
        if len(rest) == len(checks):
            return checks, False
        if atomic:  # the request is refused: charge none of the others, only read them
            rest = [_peek(c) for c in rest]
        return rest, True

    def _cached_over(self, domain: str, check: _Check, status: DescriptorStatus,
                     reset_ms: int, cache: LocalCache) -> None:
        """A refusal from the cache, with the stats a refusal from the store would have (plus
        the cache's own ``over_limit_with_local_cache``), as the reference's TC-27."""
        limit, hits = check.limit, check.hits
        status.code = Code.OK if limit.shadow_mode else Code.OVER_LIMIT
        status.remaining = 0
        if check.algorithm is not None:  # exact, as the refusal that was cached said
            status.reset_ms = reset_ms
            status.reset_seconds = -(-reset_ms // 1000)
        self.stats.record(domain, check.stats_key, hits, hits, 0, 0,
                          hits if limit.shadow_mode else 0)
        cache.note_hit(domain, check.stats_key, hits)

    def _remember_over(self, plain: list[_Check], values: list[int], scripted: list[_Check],
                       verdicts: list[Verdict], now_ms: int) -> None:
        """Cache the keys this request found over their limit (see limiter/local_cache.py)."""
        cache = self.local_cache
        assert cache is not None
        now = now_ms // 1000
        for check, after in zip(plain, values, strict=True):
            rpu = check.limit.requests_per_unit
            if after > rpu:  # until the end of the window the key names
                cache.add(check.key, (now + check.window) * 1000, rpu)
        for check, verdict in zip(scripted, verdicts, strict=True):
            limit = check.limit
            if verdict.allowed or verdict.reset_ms <= 0 or (
                    limit.count_rejected and limit.algorithm != _FIXED_WINDOW):
                continue
            cache.add(check.key, now_ms + math.ceil(verdict.reset_ms),
                      limit.requests_per_unit, check.hits)

    def _near(self, rpu: int) -> int:
        near = self._near_cache.get(rpu)
        if near is None:
            if len(self._near_cache) > 4096:  # overrides may bring any number of limits
                self._near_cache.clear()
            near = self._near_cache[rpu] = near_threshold(rpu, self.options.near_limit_ratio)
        return near

    def _apply(self, domain: str, check: _Check, verdict: Verdict,
               status: DescriptorStatus) -> None:
        """Status and stats from an algorithm's verdict."""
        limit, hits = check.limit, check.hits
        reset_ms = max(0, round(verdict.reset_ms))
        status.reset_ms = reset_ms
        status.reset_seconds = -(-reset_ms // 1000)
        if verdict.allowed:
            status.remaining = verdict.remaining
            rpu = limit.requests_per_unit
            outcome = judge(rpu - verdict.remaining, hits, rpu, self._near(rpu))
            self.stats.record(domain, check.stats_key, hits, 0, outcome.near_hits, hits, 0)
            return
        status.code = Code.OK if limit.shadow_mode else Code.OVER_LIMIT
        shadow = hits if limit.shadow_mode else 0
        self.stats.record(domain, check.stats_key, hits, hits, 0, 0, shadow)

    def _judge(self, domain: str, check: _Check, after: int,
               status: DescriptorStatus) -> None:
        limit = check.limit
        rpu = limit.requests_per_unit
        # As the reference: the decision reads the counter as it is after the store call, even
        # when stop-increment mode charged 0; "before" (for the stats) assumes the full addend.
        hits = check.hits
        outcome = judge(after, hits, rpu, self._near(rpu))
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

    def _finish(self, plan: _Plan) -> Decision:
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
            decision.headers = self._headers(plan)
        if over and opts.shadow_mode:
            decision.overall = Code.OK
            self.stats.global_shadow()
        return decision

    def _headers(self, plan: _Plan) -> list[tuple[str, str]]:
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


def _peek(check: _Check) -> _Check:
    """``check`` sent with 0 hits: the store reports its state without charging it."""
    assert check.algorithm is not None
    return _Check(check.index, check.limit, check.stats_key, check.key, check.hits,
                  check.window, check.algorithm._replace(hits=0), check.ttl)


def _explicit(limit: RateLimit, index: int) -> Match:
    """A limit the caller sent with the descriptor, applied as it is; it must have a window."""
    if not limit.unlimited and limit.window_length_ms <= 0:
        raise RequestError(f"descriptors[{index}].limit.unit: {int(limit.unit)} is not a unit; "
                           "expected SECOND, MINUTE, HOUR, DAY, WEEK, MONTH or YEAR")
    return Match(limit, limit.stats_key)


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


def _charge_always(checks: list[_Check]) -> None:
    """Make every algorithm check charge its hits even when refused (``Rate.always``); the
    plain INCRBY path always charges already."""
    for check in checks:
        if check.algorithm is not None:
            rate = check.algorithm.rate._replace(always=True)
            check.algorithm = check.algorithm._replace(rate=rate)
