"""Engine.should_rate_limit: the one seam every transport goes through (through service.py).

A concurrency limit met here is read, never held: the descriptor is allowed while ``hits`` more
holders would fit (limiter/leases.py holds slots).

Per request: snapshot the rules, match each descriptor (or take the limit it carries), plan the
charges (plan.py: drop unlimited and replaced limits, build the counter keys), charge them in
one store call, then turn counts into per-descriptor statuses, the overall code and
(optionally) response headers (statuses.py), following envoyproxy/ratelimit's semantics. Keys
the local over-limit cache knows are refused skip the store (local_cache.py); when the store
fails, the domain's failure policy answers instead (policy.py).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from sidecar.errors import NoRulesError, RequestError, StorageError
from sidecar.limiter.local_cache import LocalCache
from sidecar.limiter.options import EngineOptions
from sidecar.limiter.plan import Charge, Planner, always_charge, peek
from sidecar.limiter.policy import FailureHandler
from sidecar.limiter.statuses import NullStats, RuleStats, Statuses
from sidecar.model import (
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
from sidecar.storage.algorithms import Verdict
from sidecar.storage.base import Increment, Store

_NO_OPTIONS = DomainOptions()
# Module names: an Enum attribute lookup costs ~0.3 µs on 3.11.
_FIXED_WINDOW, _CONCURRENCY = Algorithm.FIXED_WINDOW, Algorithm.CONCURRENCY


class Limiter(Protocol):
    """The engine as every caller sees it: this Engine, or the native one
    (``limiter/native.py``'s NativeEngineAdapter)."""

    clock: Callable[[], float]

    @property
    def rules(self) -> RuleSet | None: ...

    def set_rules(self, rules: RuleSet) -> None: ...

    async def should_rate_limit(self, domain: str, descriptors: Sequence[Descriptor],
                                hits_addend: int = 0, *, charge_always: bool = False,
                                options: DomainOptions | None = None) -> Decision: ...


class Engine:
    """Decides requests against the current rules and a counter store."""

    def __init__(self, store: Store, options: EngineOptions | None = None,
                 stats: RuleStats | None = None, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None,
                 policy: FailureHandler | None = None,
                 local_cache: LocalCache | None = None) -> None:
        self.store = store
        self.options = options = options or EngineOptions()
        self.stats = stats or NullStats()
        self.clock = clock
        self.rules: RuleSet | None = None
        self.planner = Planner(options.cache_key_prefix, options.expiration_jitter_max_seconds,
                               rng or random.Random())
        self.statuses = Statuses(options, self.stats)
        # What to answer when the store fails, and keys known over their limit (None: off).
        self.policy = policy or FailureHandler()
        self.local_cache = local_cache

    def set_rules(self, rules: RuleSet) -> None:
        """Swap in a new rule set; requests already running keep the one they started with."""
        self.rules = rules

    async def should_rate_limit(self, domain: str, descriptors: Sequence[Descriptor],
                                hits_addend: int = 0, *, charge_always: bool = False,
                                options: DomainOptions | None = None) -> Decision:
        """Check and charge ``descriptors`` of ``domain``. ``charge_always`` (usage reported
        after the fact) charges every hit even past the limit, whatever the algorithm and
        ``count_rejected``; it skips the local cache and charges an atomic domain's
        descriptors each on its own.

        ``options``: the caller owns ``domain`` (full mode's key verification): its
        descriptors' own limits apply with these domain options, and the rules are not
        consulted at all (none need be loaded; a descriptor without a limit has none)."""
        if not domain:
            raise RequestError("rate limit domain must not be empty")
        if not descriptors:
            raise RequestError("rate limit descriptor list must not be empty")
        now_ms = int(self.clock() * 1000)
        if options is None:
            rules = self.rules
            if rules is None:
                raise NoRulesError()
            options = rules.options.get(domain, _NO_OPTIONS)
            matches = self._match_all(rules, domain, descriptors)
        else:
            matches = [None if d.limit is None else _explicit(d.limit, i)
                       for i, d in enumerate(descriptors)]
        plan = self.planner.plan(domain, descriptors, matches, max(1, hits_addend), now_ms,
                                 options)
        charges, cached = plan.charges, False
        if charge_always:
            always_charge(charges)
        elif charges and self.local_cache is not None:
            charges, cached = self._skip_cached(domain, charges, plan.statuses, now_ms,
                                                options.atomic)
        if charges:
            atomic = options.atomic and not charge_always
            try:
                await self._charge(self.store, domain, charges, plan.statuses, now_ms,
                                   atomic, cached, charge_always)
            except StorageError as exc:
                await self._store_failed(exc, domain, charges, plan.statuses, now_ms,
                                         options.failure_policy, atomic, cached, charge_always)
        return self.statuses.decision(plan)

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

    # -- charging ----------------------------------------------------------------------------

    async def _charge(self, store: Store, domain: str, charges: list[Charge],
                      statuses: list[DescriptorStatus], now_ms: int, atomic: bool,
                      cached: bool = False, always: bool = False) -> None:
        checked = [c for c in charges if c.check is not None]
        plain = [c for c in charges if c.check is None] if checked else charges
        increments = [Increment(c.key, c.hits, c.ttl, c.limit.window_seconds) for c in plain]
        if plain and self.options.stop_increment_when_over_limit and not always:
            if cached:  # as the reference: a local-cache hit means charge nothing else
                increments = [i._replace(hits=0) for i in increments]
            else:
                increments = await self._stop_increment(store, plain, increments, now_ms)
        values, verdicts = await store.run(
            increments, [c.check for c in checked if c.check is not None], now_ms, atomic)
        apply_count, apply_verdict = self.statuses.apply_count, self.statuses.apply_verdict
        for charge, after in zip(plain, values, strict=True):
            apply_count(domain, charge, after, statuses[charge.index])
        for charge, verdict in zip(checked, verdicts, strict=True):
            apply_verdict(domain, charge, verdict, statuses[charge.index])
        if self.local_cache is not None:
            self._remember_over(plain, values, checked, verdicts, now_ms)

    async def _stop_increment(self, store: Store, plain: list[Charge],
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

    async def _store_failed(self, error: StorageError, domain: str, charges: list[Charge],
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
            await self._charge(self.policy.fallback, domain, charges, statuses, now_ms, atomic,
                               cached, always)
            return
        deny = policy == FailurePolicy.DENY
        for charge in charges:
            status, limit = statuses[charge.index], charge.limit
            if deny:
                status.code = Code.OK if limit.shadow_mode else Code.OVER_LIMIT
                status.remaining = 0
            else:  # allow: as if this were the first request of its window
                status.remaining = max(0, limit.requests_per_unit - charge.hits)

    def _skip_cached(self, domain: str, charges: list[Charge],
                     statuses: list[DescriptorStatus], now_ms: int,
                     atomic: bool) -> tuple[list[Charge], bool]:
        """Answer the charges the local cache knows are over; return the others, and whether
        any was answered."""
        cache = self.local_cache
        assert cache is not None
        rest: list[Charge] = []
        for charge in charges:
            until = cache.refused_until(charge.key, charge.hits,
                                        charge.limit.requests_per_unit, now_ms)
            if until:
                # The stats a refusal from the store would have, plus the cache's own
                # over_limit_with_local_cache (the reference's TC-27).
                self.statuses.apply_cached(domain, charge, statuses[charge.index],
                                           until - now_ms)
                cache.note_hit(domain, charge.stats_key, charge.hits)
            else:
                rest.append(charge)
        if len(rest) == len(charges):
            return charges, False
        if atomic:  # the request is refused: charge none of the others, only read them
            rest = [peek(c) for c in rest]
        return rest, True

    def _remember_over(self, plain: list[Charge], values: list[int], checked: list[Charge],
                       verdicts: list[Verdict], now_ms: int) -> None:
        """Cache the keys this request found over their limit (see limiter/local_cache.py)."""
        cache = self.local_cache
        assert cache is not None
        now = now_ms // 1000
        for charge, after in zip(plain, values, strict=True):
            rpu = charge.limit.requests_per_unit
            if after > rpu:  # until the end of the window the key names
                cache.add(charge.key, (now + charge.window) * 1000, rpu)
        for charge, verdict in zip(checked, verdicts, strict=True):
            limit = charge.limit
            # A concurrency limit is full until some holder releases: no time to cache for.
            if verdict.allowed or verdict.reset_ms <= 0 or limit.algorithm == _CONCURRENCY or (
                    limit.count_rejected and limit.algorithm != _FIXED_WINDOW):
                continue
            cache.add(charge.key, now_ms + math.ceil(verdict.reset_ms),
                      limit.requests_per_unit, charge.hits)


def _explicit(limit: RateLimit, index: int) -> Match:
    """A limit the caller sent with the descriptor, applied as it is; it must have a window."""
    if not limit.unlimited and limit.window_length_ms <= 0:
        raise RequestError(f"descriptors[{index}].limit.unit: {int(limit.unit)} is not a unit; "
                           "expected SECOND, MINUTE, HOUR, DAY, WEEK, MONTH or YEAR")
    return Match(limit, limit.stats_key)

