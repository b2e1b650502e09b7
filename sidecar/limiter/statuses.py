"""From what the store answered to the Decision: each descriptor's status and its rule stats,
then the overall code and (optionally) the response headers, with envoyproxy/ratelimit's
semantics for shadow mode, quota mode and the near-limit counter."""

from __future__ import annotations

from typing import Protocol

from sidecar.limiter.fixed_window import near_threshold, outcome
from sidecar.limiter.options import EngineOptions
from sidecar.limiter.plan import Charge, Plan
from sidecar.model import Code, Decision, DescriptorStatus
from sidecar.storage.algorithms import Verdict


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


class Statuses:
    """Fills in statuses from the store's answers and records the rule stats of each."""

    def __init__(self, options: EngineOptions, stats: RuleStats) -> None:
        self.options = options
        self.stats = stats
        self._near_cache: dict[int, int] = {}

    def apply_count(self, domain: str, charge: Charge, after: int,
                    status: DescriptorStatus) -> None:
        """A plain counter's value after the increment (the reference's fixed window)."""
        limit = charge.limit
        rpu = limit.requests_per_unit
        # As the reference: the decision reads the counter as it is after the store call, even
        # when stop-increment mode charged 0; "before" (for the stats) assumes the full addend.
        hits = charge.hits
        result = outcome(after, hits, rpu, self._near(rpu))
        shadow = 0
        if result.over:
            status.code = Code.OVER_LIMIT
            if limit.shadow_mode:
                status.code = Code.OK
                shadow = result.over_hits
        else:
            status.remaining = result.remaining
        self.stats.record(domain, charge.stats_key, hits, result.over_hits, result.near_hits,
                          result.within_hits, shadow)

    def apply_verdict(self, domain: str, charge: Charge, verdict: Verdict,
                      status: DescriptorStatus) -> None:
        """An algorithm's verdict (exact reset, in milliseconds)."""
        limit, hits = charge.limit, charge.hits
        reset_ms = max(0, round(verdict.reset_ms))
        status.reset_ms = reset_ms
        status.reset_seconds = -(-reset_ms // 1000)
        if verdict.allowed:
            status.remaining = verdict.remaining
            rpu = limit.requests_per_unit
            result = outcome(rpu - verdict.remaining, hits, rpu, self._near(rpu))
            self.stats.record(domain, charge.stats_key, hits, 0, result.near_hits, hits, 0)
            return
        status.code = Code.OK if limit.shadow_mode else Code.OVER_LIMIT
        shadow = hits if limit.shadow_mode else 0
        self.stats.record(domain, charge.stats_key, hits, hits, 0, 0, shadow)

    def apply_cached(self, domain: str, charge: Charge, status: DescriptorStatus,
                     reset_ms: int) -> None:
        """A refusal from the local over-limit cache, with the stats a refusal from the store
        would have."""
        limit, hits = charge.limit, charge.hits
        status.code = Code.OK if limit.shadow_mode else Code.OVER_LIMIT
        status.remaining = 0
        if charge.check is not None:  # exact, as the refusal that was cached said
            status.reset_ms = reset_ms
            status.reset_seconds = -(-reset_ms // 1000)
        self.stats.record(domain, charge.stats_key, hits, hits, 0, 0,
                          hits if limit.shadow_mode else 0)

    def _near(self, rpu: int) -> int:
        near = self._near_cache.get(rpu)
        if near is None:
            if len(self._near_cache) > 4096:  # explicit limits may bring any number of them
                self._near_cache.clear()
            near = self._near_cache[rpu] = near_threshold(rpu, self.options.near_limit_ratio)
        return near

    # -- the answer --------------------------------------------------------------------------

    def decision(self, plan: Plan) -> Decision:
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

    def _headers(self, plan: Plan) -> list[tuple[str, str]]:
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
