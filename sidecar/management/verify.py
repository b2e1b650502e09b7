"""Key verification: a key → its plan's limits → one engine decision → a code.

    NOT_FOUND       malformed (bad checksum: no lookup), or no such key
    REVOKED         revoked, or its customer deleted
    EXPIRED         past expires_at (a rotated key after its grace period)
    DISABLED        enabled: false, or its plan is no longer in the plans files
    FORBIDDEN       a required feature is not in the plan (nothing is charged)
    RATE_LIMITED    a limit without calendar: true is exhausted
    QUOTA_EXCEEDED  a calendar quota is exhausted (it wins over RATE_LIMITED: it lasts longer)
    VALID

The plan's limits, the customer's overrides and the key's (merged by name, the key's winning)
become descriptors with explicit limits, charged atomically by the engine: the same
algorithms, stores, failure policies and metrics as the rules. Limits from the plan or the
customer are counted per customer (its keys share them); a key's own overrides per key.

Failed verifications are counted per client by the engine itself (domain
``viva_verify_failures``, VIVA_VERIFY_FAILURES_PER_MINUTE); a client over that budget gets
RATE_LIMITED for keys not already known valid, without a lookup. The transport says who the
client is: the peer address at a gateway (ext_authz, forward-auth), the root key and the
``client_address`` it passes on REST (admin.failure_budget).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sidecar.errors import RequestError, RuleSetError, StorageError
from sidecar.limiter.engine import Limiter
from sidecar.management.cache import CachedKey, KeyCache, cached_key
from sidecar.management.catalog import Catalog
from sidecar.management.keys import hash_key, well_formed
from sidecar.management.plans import (
    DOMAIN,
    FAILURES_DOMAIN,
    Plan,
    PlanSet,
    check_limits,
    merge_limits,
    scoped,
)
from sidecar.model import Code, Decision, Descriptor, RateLimit, Unit
from sidecar.rules.model import DomainOptions

log = logging.getLogger("sidecar.keys")

_FAILURE_OPTIONS = DomainOptions()


@dataclass(slots=True)
class Outcome:
    """One verification: the code, who the key is, and the engine's decision on its limits
    (``limits`` and ``decision`` line up; empty when no limit was checked)."""

    code: str
    key: CachedKey | None = None
    plan: Plan | None = None
    limits: Sequence[RateLimit] = ()
    decision: Decision | None = None
    entries: list[tuple[tuple[str, str], ...]] = field(default_factory=list)
    throttled: Decision | None = None  # the client address is over its failure budget

    @property
    def valid(self) -> bool:
        return self.code == "VALID"


class Verifier:
    def __init__(self, catalog: Catalog, cache: KeyCache, engine: Limiter,
                 plans: Callable[[], PlanSet | None], failures_per_minute: int,
                 count: Callable[[str, str], None] | None = None,
                 record: Callable[[Outcome, int], None] | None = None,
                 observe: Callable[[Outcome], None] | None = None) -> None:
        self.catalog = catalog
        self.cache = cache
        self.engine = engine
        self.plans = plans
        self.count = count or (lambda code, transport: None)
        # Every outcome, on the hot path (each a few dict or set operations): usage metering
        # with the cost (usage/counter.py), and usage alerts (alerts/service.py).
        self.record = record
        self.observe = observe
        self.failure_limit = RateLimit(
            requests_per_unit=failures_per_minute, unit=Unit.MINUTE,
            stats_key=f"{FAILURES_DOMAIN}.client") if failures_per_minute else None

    async def verify(self, secret: str, client: str, cost: int = 1,
                     limit_names: Sequence[str] | None = None,
                     features: Sequence[str] = (), transport: str = "rest") -> Outcome:
        outcome = await self._verify(secret, client, cost, limit_names, features)
        self.count(outcome.code, transport)
        if self.record is not None:
            self.record(outcome, cost)
        if self.observe is not None:
            self.observe(outcome)
        return outcome

    async def _verify(self, secret: str, client: str, cost: int,
                      limit_names: Sequence[str] | None, features: Sequence[str]) -> Outcome:
        key_hash = hash_key(secret)
        entry = self.cache.get(key_hash)  # a cached key was well formed: no checksum again
        if not isinstance(entry, CachedKey) and not well_formed(secret):
            return await self._failed("NOT_FOUND", None, client)  # refused without a lookup
        if not isinstance(entry, CachedKey) or self._refusal(entry, self.plans()):
            throttled = await self._throttled(client)
            if throttled is not None:
                return Outcome("RATE_LIMITED", throttled=throttled)
        if entry is None:
            entry = await self._load(key_hash)
        if not isinstance(entry, CachedKey):
            return await self._failed("NOT_FOUND", None, client)
        plans = self.plans()
        refusal = self._refusal(entry, plans)
        if refusal:
            return await self._failed(refusal, entry, client)
        assert plans is not None
        plan = plans.plans[entry.plan]
        if not set(features) <= plan.features:
            return Outcome("FORBIDDEN", entry, plan)
        return await self._charge(entry, plan, plans, cost, limit_names)

    async def _load(self, key_hash: str) -> CachedKey | bool:
        # In a Task of its own: the fast transport may run a call's first step outside any
        # Task (h2 eager_start), and waiting for a pooled connection needs one
        # (asyncio.timeout). A cache miss is rare, so the Task costs nothing that counts.
        found = await asyncio.ensure_future(self.catalog.find_key(key_hash))
        if found is None:
            self.cache.put_missing(key_hash)
            return False
        entry = cached_key(*found)
        self.cache.put(key_hash, entry)
        return entry

    def _refusal(self, entry: CachedKey, plans: PlanSet | None) -> str:
        if entry.revoked:
            return "REVOKED"
        if entry.expires_at is not None and entry.expires_at <= self.engine.clock():
            return "EXPIRED"
        if not entry.enabled:
            return "DISABLED"
        if plans is None or entry.plan not in plans.plans:
            log.warning("key %s: plan %r is not in the plans files; answering DISABLED",
                        entry.key_id, entry.plan)
            return "DISABLED"
        return ""

    async def _charge(self, entry: CachedKey, plan: Plan, plans: PlanSet, cost: int,
                      limit_names: Sequence[str] | None) -> Outcome:
        limits = self._limits(entry, plan, plans)
        if limit_names is not None:
            by_name = {limit.name: limit for limit in limits}
            for i, name in enumerate(limit_names):
                if name not in by_name:
                    raise RequestError(f"limits[{i}]: the key has no limit {name!r}; expected "
                                       f"one of {', '.join(by_name) or 'none'}")
            limits = tuple(by_name[name] for name in dict.fromkeys(limit_names))
        if not limits:
            return Outcome("VALID", entry, plan)
        entries = [self._entries(entry, limit) for limit in limits]
        descriptors = [Descriptor(e, cost, limit) for e, limit in zip(entries, limits,
                                                                         strict=True)]
        decision = await self.engine.should_rate_limit(DOMAIN, descriptors,
                                                       options=plans.options)
        return Outcome(_code(decision, limits), entry, plan, limits, decision, entries)

    def _limits(self, entry: CachedKey, plan: Plan, plans: PlanSet) -> tuple[RateLimit, ...]:
        """The key's merged limits, resolved once per plans version."""
        if entry.resolved is not None and entry.resolved[0] == plans.version:
            return entry.resolved[1]
        try:
            customer = check_limits(entry.customer_limits or [], plan.id)
            own = check_limits(entry.key_limits or [], plan.id)
        except RuleSetError as exc:  # checked when written; a plan change cannot break them
            log.error("key %s: stored limits are invalid (%s); using the plan's", entry.key_id,
                      exc)
            customer, own = [], []
        key_names = {limit.name for limit in own}
        merged = tuple(scoped(limit, plan.id)
                       for limit in merge_limits(plan.limits, customer, own))
        entry.resolved = (plans.version, merged)
        entry.entries = {limit.name: (("key", entry.key_id) if limit.name in key_names
                                      else ("customer", entry.customer_id),
                                      ("limit", limit.name)) for limit in merged}
        return merged

    @staticmethod
    def _entries(entry: CachedKey, limit: RateLimit) -> tuple[tuple[str, str], ...]:
        return entry.entries[limit.name]

    async def throttled(self, client: str) -> bool:
        """Whether ``client`` has used up its failed-verification budget (the dashboard's
        sign-in form shares it with key verification)."""
        return await self._throttled(client) is not None

    async def failed(self, client: str) -> None:
        """Count one failed credential check from ``client`` against that budget."""
        await self._failed("NOT_FOUND", None, client)

    async def _throttled(self, client: str) -> Decision | None:
        """The failure budget of ``client``, when used up (a peek: nothing is charged)."""
        if self.failure_limit is None or not client:
            return None
        try:
            decision = await self._failures(client, 0)
        except StorageError:  # counting failures must not fail verification
            return None
        status = decision.statuses[0]
        return decision if status.remaining <= 0 and status.limit is not None else None

    async def _failed(self, code: str, entry: CachedKey | None, client: str) -> Outcome:
        if self.failure_limit is not None and client:
            with contextlib.suppress(StorageError):
                await self._failures(client, 1)
        return Outcome(code, entry)

    async def _failures(self, client: str, hits: int) -> Decision:
        assert self.failure_limit is not None
        descriptor = Descriptor((("client", client),), hits, self.failure_limit)
        return await self.engine.should_rate_limit(FAILURES_DOMAIN, [descriptor],
                                                   options=_FAILURE_OPTIONS)


def _code(decision: Decision, limits: Sequence[RateLimit]) -> str:
    if decision.overall != Code.OVER_LIMIT:
        return "VALID"
    over = [limit for status, limit in zip(decision.statuses, limits, strict=True)
            if status.code == Code.OVER_LIMIT]
    return "QUOTA_EXCEEDED" if any(limit.calendar for limit in over) else "RATE_LIMITED"
