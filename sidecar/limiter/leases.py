"""Concurrency limits: leases on the rules' ``algorithm: concurrency`` limits.

    acquire(domain, descriptors, ttl)  a slot on every descriptor a concurrency limit applies
                                       to, or on none; the answer carries the lease id
    renew(lease id, ttl)               the same slots for another ttl from now
    release(lease id)                  free them

A descriptor is matched as a rate check matches it (the same tree, keys and stats keys); only a
concurrency limit holds a slot, and a descriptor with any other limit, or none, is not limited
here. A slot is held for the ttl asked (at most the rule's ``lease_ttl``; by default all of it):
a holder that dies stops counting when its lease expires, a live one renews before. Each slot is
one store call on one key (a Redis Cluster takes them to their own nodes); when one descriptor
is full, the slots already taken for that lease are released again, so a lease holds all its
slots or none: a concurrent acquirer may find such a slot taken for that instant, and the number
held never exceeds ``max`` (shadow mode aside: it takes a slot over max, and counts it).

When the store fails, acquire answers by the domain's failure policy: ``allow`` allows without
recording a lease (no lease id), ``deny`` refuses (shadow-mode rules allow), ``local`` holds the
slots in the fallback store, ``unavailable`` raises StorageError. Renew and release bring no new
holder: ``local`` runs them in the fallback store (where a renewal adopts a lease it does not
know, so a holder keeps its slot through the outage, a release of such a lease is done, and a
lease taken there is found again once the store is back), ``allow`` and ``deny`` answer them
done without the store (the lease keeps its old expiry there), ``unavailable`` raises.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sidecar.errors import LeaseNotFound, NoRulesError, RequestError, StorageError
from sidecar.limiter.engine import Engine
from sidecar.limiter.lease_book import LeaseBook, LeaseStats, NullLeaseStats
from sidecar.limiter.lease_ids import decode_id, encode_id, new_token
from sidecar.model import (
    Algorithm,
    Descriptor,
    Entries,
    FailurePolicy,
    LeaseDecision,
    LeaseStatus,
    RateLimit,
)
from sidecar.rules.matcher import match_descriptor
from sidecar.rules.model import DomainOptions, RuleSet
from sidecar.storage.base import Store
from sidecar.storage.leases import LeaseKind, LeaseOp, LeaseState

log = logging.getLogger("sidecar.leases")

_NO_OPTIONS = DomainOptions()
_GONE = "no such lease: it expired, was released, or was never issued"


@dataclass(frozen=True, slots=True)
class Slot:
    """A descriptor a concurrency limit applies to: where its lease set is, for how long."""

    index: int
    limit: RateLimit
    stats_key: str
    key: str
    ttl_ms: int


class Leases:
    """Acquire, renew and release leases with the engine's rules, store, policy and clock."""

    def __init__(self, engine: Engine, stats: LeaseStats | None = None) -> None:
        self.engine = engine
        self.book = LeaseBook(stats or NullLeaseStats())
        self.stats = self.book.stats
        self.new_token = new_token

    def prune(self) -> None:
        """Forget the expired leases of the book (the gauge); run every second or so."""
        self.book.prune(self._now())

    # -- acquire -----------------------------------------------------------------------------

    async def acquire(self, domain: str, descriptors: Sequence[Entries],
                      ttl_ms: int | None = None) -> LeaseDecision:
        """A slot on every limited descriptor, or none. ``ttl_ms`` (None: each rule's
        lease_ttl) longer than a rule's lease_ttl is a RequestError."""
        if not domain:
            raise RequestError("namespace must not be empty", "namespace")
        if not descriptors:
            raise RequestError("descriptors must not be empty", "descriptors")
        rules, now_ms = self._rules(), self._now()
        slots = self._slots(rules, domain, descriptors, ttl_ms, now_ms, strict=True)
        statuses = [LeaseStatus(s.limit if s else None) for s in slots]
        held = [s for s in slots if s is not None]
        if not held:
            return LeaseDecision(True, None, list(descriptors), statuses)
        token = self.new_token()
        lease_id = encode_id(token, domain, list(descriptors), ttl_ms)  # before any slot
        ops = [LeaseOp(LeaseKind.ACQUIRE, s.key, token, s.ttl_ms, s.limit.requests_per_unit,
                       s.limit.shadow_mode or self.engine.options.shadow_mode) for s in held]
        try:
            store: Store = self.engine.store
            states = await store.lease(ops, now_ms)
        except StorageError as exc:
            fallback = self._fallback(domain, rules, exc)
            if fallback is None:
                return self._acquire_unrecorded(domain, rules, descriptors, held, statuses)
            store, states = fallback, await fallback.lease(ops, now_ms)
        allowed = all(state.ok for state in states)
        if not allowed:
            await self._undo(store, token, held, states, now_ms)
        for slot, state in zip(held, states, strict=True):
            self._fill(statuses[slot.index], state, allowed)
            self.stats.lease_acquired(domain, slot.stats_key,
                                      _outcome(slot, state) if allowed else "refused")
            if allowed:
                self.book.hold(token, domain, slot.stats_key, _local(state, now_ms))
        self.book.prune(now_ms)
        return LeaseDecision(allowed, lease_id if allowed else None, list(descriptors),
                             statuses)

    def _acquire_unrecorded(self, domain: str, rules: RuleSet,
                            descriptors: Sequence[Entries], held: list[Slot],
                            statuses: list[LeaseStatus]) -> LeaseDecision:
        """The failure policy's answer (allow or deny) when the store failed: no lease."""
        policy = self._policy(domain, rules)
        shadow = self.engine.options.shadow_mode
        allowed = policy == FailurePolicy.ALLOW or all(s.limit.shadow_mode or shadow
                                                       for s in held)
        for slot in held:
            statuses[slot.index].allowed = policy == FailurePolicy.ALLOW or \
                slot.limit.shadow_mode or shadow
            self.stats.lease_acquired(domain, slot.stats_key,
                                      "allowed" if allowed else "refused")
        return LeaseDecision(allowed, None, list(descriptors), statuses)

    async def _undo(self, store: Store, token: str, held: list[Slot],
                    states: list[LeaseState], now_ms: int) -> None:
        """Release the slots a refused lease took; if that fails, they expire with their TTL."""
        taken = [LeaseOp(LeaseKind.RELEASE, s.key, token) for s, st in zip(held, states,
                                                                           strict=True) if st.ok]
        if not taken:
            return
        try:
            await store.lease(taken, now_ms)
        except StorageError as exc:
            log.warning("could not give back the slots of a refused lease (they expire with "
                        "their lease time to live): %s", exc)

    # -- renew and release -------------------------------------------------------------------

    async def renew(self, lease_id: str, ttl_ms: int | None = None) -> LeaseDecision:
        """Hold the lease's slots ``ttl_ms`` from now (None: the ttl of the acquire, else the
        rules' lease_ttl); LeaseNotFound when it no longer holds them all (then it holds
        none)."""
        ref = decode_id(lease_id)
        rules, now_ms = self._rules(), self._now()
        asked = ttl_ms if ttl_ms is not None else ref.ttl_ms
        held = self._held(rules, ref.domain, ref.descriptors, asked, now_ms,
                          strict=ttl_ms is not None)
        ops = [LeaseOp(LeaseKind.RENEW, s.key, ref.token, s.ttl_ms) for s in held]
        states = await self._keep(ref.domain, rules, ops, now_ms, adopt=True)
        statuses = [LeaseStatus(None) for _ in ref.descriptors]
        if states is not None and not all(state.ok for state in states):
            await self._give_up(ref.domain, rules, ref.token, held, now_ms)
            raise LeaseNotFound(_GONE)
        for i, slot in enumerate(held):
            status = statuses[slot.index] = LeaseStatus(slot.limit, ttl_ms=slot.ttl_ms)
            if states is None:  # answered by the failure policy
                status.expires_at_ms = now_ms + slot.ttl_ms
                continue
            self._fill(status, states[i], True)
            self.book.hold(ref.token, ref.domain, slot.stats_key, _local(states[i], now_ms))
        self.book.prune(now_ms)
        return LeaseDecision(True, lease_id, ref.descriptors, statuses)

    async def release(self, lease_id: str) -> LeaseDecision:
        """Free the lease's slots; LeaseNotFound when it held none any more."""
        ref = decode_id(lease_id)
        rules, now_ms = self._rules(), self._now()
        held = self._held(rules, ref.domain, ref.descriptors, ref.ttl_ms, now_ms, strict=False)
        ops = [LeaseOp(LeaseKind.RELEASE, s.key, ref.token) for s in held]
        states = await self._keep(ref.domain, rules, ops, now_ms, adopt=False)
        for slot in held:
            self.book.drop(ref.token, ref.domain, slot.stats_key)
        if states is not None and not any(state.ok for state in states):
            raise LeaseNotFound(_GONE)
        statuses = [LeaseStatus(None) for _ in ref.descriptors]
        for i, slot in enumerate(held):
            status = statuses[slot.index] = LeaseStatus(slot.limit)
            if states is not None:
                status.active = states[i].active
        return LeaseDecision(True, None, ref.descriptors, statuses)

    async def _give_up(self, domain: str, rules: RuleSet, token: str, held: list[Slot],
                       now_ms: int) -> None:
        """A lease that lost one of its slots is gone: free the others too."""
        for slot in held:
            self.book.drop(token, domain, slot.stats_key)
        ops = [LeaseOp(LeaseKind.RELEASE, s.key, token) for s in held]
        try:
            await self._keep(domain, rules, ops, now_ms, adopt=False)
        except StorageError as exc:
            log.warning("could not free the other slots of a lost lease (they expire with "
                        "their lease time to live): %s", exc)

    async def _keep(self, domain: str, rules: RuleSet, ops: list[LeaseOp], now_ms: int,
                    adopt: bool) -> list[LeaseState] | None:
        """Renewals or releases on the store, else per the failure policy; None when the
        policy answered without a store (allow, deny)."""
        try:
            states = await self.engine.store.lease(ops, now_ms)
        except StorageError as exc:
            fallback = self._fallback(domain, rules, exc)
            if fallback is None:
                return None
            return await _in_fallback(fallback, ops, now_ms, adopt)
        fallback = self._fallback_store(domain, rules)
        missing = [i for i, state in enumerate(states) if not state.ok]
        if missing and fallback is not None:  # perhaps taken there during an outage
            found = await fallback.lease([ops[i] for i in missing], now_ms)
            for i, state in zip(missing, found, strict=True):
                if state.ok:
                    states[i] = state
        return states

    # -- matching and the failure policy -----------------------------------------------------

    def _rules(self) -> RuleSet:
        rules = self.engine.rules
        if rules is None:
            raise NoRulesError()
        return rules

    def _now(self) -> int:
        return int(self.engine.clock() * 1000)

    def _held(self, rules: RuleSet, domain: str, descriptors: Sequence[Entries],
              ttl_ms: int | None, now_ms: int, strict: bool) -> list[Slot]:
        held = [s for s in self._slots(rules, domain, descriptors, ttl_ms, now_ms, strict)
                if s is not None]
        if not held:
            raise LeaseNotFound("no concurrency limit applies to this lease's descriptors "
                                "under the rules in force now")
        return held

    def _slots(self, rules: RuleSet, domain: str, descriptors: Sequence[Entries],
               ttl_ms: int | None, now_ms: int, strict: bool) -> list[Slot | None]:
        """Per descriptor, the slot its concurrency limit gives (None: no such limit)."""
        root = rules.domains.get(domain)
        if root is None:
            self.engine.stats.domain_not_found(domain)
            return [None] * len(descriptors)
        options = rules.options.get(domain, _NO_OPTIONS)
        out: list[Slot | None] = []
        for i, entries in enumerate(descriptors):
            match = match_descriptor(root, domain, entries) if entries else None
            if match is None or match.limit.algorithm != Algorithm.CONCURRENCY:
                out.append(None)
                continue
            limit = match.limit
            charge = self.engine.planner.charge(i, domain, Descriptor(entries), match, 1,
                                                now_ms, options)
            out.append(Slot(i, limit, match.stats_key, charge.key,
                            _ttl(limit, ttl_ms, strict)))
        return out

    def _policy(self, domain: str, rules: RuleSet) -> FailurePolicy:
        options = rules.options.get(domain, _NO_OPTIONS)
        return self.engine.policy.choose(options.failure_policy)

    def _fallback(self, domain: str, rules: RuleSet, error: StorageError) -> Store | None:
        """The store failed: the fallback store under ``local``, None under allow or deny;
        ``unavailable`` re-raises. Every such decision is counted and logged (policy.py)."""
        policy = self._policy(domain, rules)
        self.engine.policy.decided(domain, policy, error)
        if policy == FailurePolicy.UNAVAILABLE:
            raise error
        return self._fallback_store(domain, rules)

    def _fallback_store(self, domain: str, rules: RuleSet) -> Store | None:
        if self._policy(domain, rules) != FailurePolicy.LOCAL:
            return None
        return self.engine.policy.fallback

    def _fill(self, status: LeaseStatus, state: LeaseState, allowed: bool) -> None:
        status.allowed = state.ok
        status.active = state.active - (1 if state.ok and not allowed else 0)  # given back
        if allowed:
            status.expires_at_ms = state.expires_ms
            status.ttl_ms = state.expires_ms - state.now_ms
        elif not state.ok and state.earliest_ms:
            status.retry_after_ms = max(1, state.earliest_ms - state.now_ms)


async def _in_fallback(fallback: Store, ops: list[LeaseOp], now_ms: int,
                       adopt: bool) -> list[LeaseState]:
    """Run ``ops`` in the fallback store while the store fails. A lease the fallback does not
    know was held in the failed store: a renewal (``adopt``) takes its slot here, so its
    holder keeps it; a release is done (the lease expires there with its TTL)."""
    states = await fallback.lease(ops, now_ms)
    missing = [i for i, state in enumerate(states) if not state.ok]
    if adopt and missing:
        taken = await fallback.lease([ops[i]._replace(kind=LeaseKind.ACQUIRE, force=True)
                                      for i in missing], now_ms)
        for i, state in zip(missing, taken, strict=True):
            states[i] = state
    elif missing:
        for i in missing:
            states[i] = states[i]._replace(ok=True)
    return states


def _ttl(limit: RateLimit, asked: int | None, strict: bool) -> int:
    """The time to live of a slot: what was asked, at most the rule's lease_ttl."""
    if asked is None:
        return limit.window_ms
    if asked <= limit.window_ms:
        return max(1, asked)
    if strict:
        most = limit.window_ms / 1000
        raise RequestError(f"ttl: {asked / 1000:g} s is longer than the lease_ttl of the rule "
                           f"{limit.name or limit.stats_key} ({most:g} s); expected at most "
                           f"{most:g}, or no ttl for the rule's own", "ttl")
    return limit.window_ms


def _outcome(slot: Slot, state: LeaseState) -> str:
    if not state.ok:
        return "refused"
    return "shadow" if state.active > slot.limit.requests_per_unit else "allowed"


def _local(state: LeaseState, now_ms: int) -> int:
    """A lease's expiry on this sidecar's clock (the store may run on its own)."""
    return now_ms + state.expires_ms - state.now_ms
