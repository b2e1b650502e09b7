"""Decisions counted on the hot path: one dict increment, no SQL, no Redis round trip.

Every verification whose key is known (whatever the transport: REST verify, ext_authz,
forward-auth) adds 1 decision (and, when allowed, its cost in hits) to the bucket (customer,
key, refusing limit, outcome, plan, hour). NOT_FOUND and a throttled client address have no
customer and are not counted. The flusher (flusher.py) takes the buckets away in batches.

A decision of /v1/check, /v1/report or /v1/forward-auth in a namespace a customer owns
(checks.py) is counted the same way with no key (key ''): VALID when allowed (its hits: the
largest hits_addend of its descriptors, 1 when unset), else QUOTA_EXCEEDED when an exhausted
rule is a calendar quota and RATE_LIMITED otherwise. Billing prices the VALID ones as
``requests`` on the plan recorded with them, as it does verifications.

A refused decision names the limit that refused it: the first exhausted quota for
QUOTA_EXCEEDED, the first exhausted limit for RATE_LIMITED; '' for every other outcome. A
rule is named by its ``name`` or else its stats key, cut to the ledger's 64 characters (with
a digest of the whole, so two long names stay apart).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from sidecar.management.usage.ledger import Batch, Bucket
from sidecar.model import Code, Decision, Descriptor

if TYPE_CHECKING:
    from sidecar.management.usage.checks import Owner
    from sidecar.management.verify import Outcome

NAME_LENGTH = 64  # usage_counts.limit_name


class UsageCounter:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.pending: dict[Bucket, list[int]] = {}
        self.oldest: float | None = None  # when the oldest pending decision was made

    def record(self, outcome: Outcome, cost: int) -> None:
        """Count one verification (the hot path: keep it a dict increment)."""
        key = outcome.key
        if key is None:
            return
        now = self.clock()
        code = outcome.code
        if code == "VALID":
            bucket = (key.customer_id, key.key_id, "", code, key.plan, int(now // 3600))
        else:
            cost = 0
            bucket = (key.customer_id, key.key_id, refusing_limit(outcome), code, key.plan,
                      int(now // 3600))
        self._add(bucket, cost, now)

    def record_check(self, owner: Owner, descriptors: Sequence[Descriptor],
                     decision: Decision) -> None:
        """Count one decision in a namespace ``owner`` owns (the hot path, as ``record``)."""
        now = self.clock()
        if decision.overall == Code.OVER_LIMIT:
            code, limit = refusing_rule(decision)
            bucket = (owner.customer_id, "", limit, code, owner.plan, int(now // 3600))
            self._add(bucket, 0, now)
            return
        hits = 0
        for descriptor in descriptors:
            addend = descriptor.hits_addend
            hits = max(hits, 1 if addend is None else addend)
        self._add((owner.customer_id, "", "", "VALID", owner.plan, int(now // 3600)), hits, now)

    def _add(self, bucket: Bucket, cost: int, now: float) -> None:
        cell = self.pending.get(bucket)
        if cell is None:
            self.pending[bucket] = [1, cost]
            if self.oldest is None:
                self.oldest = now
        else:
            cell[0] += 1
            cell[1] += cost

    def take(self) -> Batch | None:
        """Everything counted so far, as one batch (None when nothing was)."""
        if not self.pending:
            return None
        batch = Batch(self.pending, self.oldest if self.oldest is not None else self.clock())
        self.pending, self.oldest = {}, None
        return batch

    @property
    def decisions(self) -> int:
        return sum(cell[0] for cell in self.pending.values())


def refusing_limit(outcome: Outcome) -> str:
    """The name of the limit behind a RATE_LIMITED or QUOTA_EXCEEDED answer ('' otherwise)."""
    decision = outcome.decision
    if decision is None or outcome.code not in ("RATE_LIMITED", "QUOTA_EXCEEDED"):
        return ""
    quota = outcome.code == "QUOTA_EXCEEDED"
    for status, limit in zip(decision.statuses, outcome.limits, strict=False):
        if status.code == Code.OVER_LIMIT and limit.calendar == quota:
            return limit.name
    return ""


def refusing_rule(decision: Decision) -> tuple[str, str]:
    """(outcome, refusing rule's name) of an over-limit decision of the rules."""
    first = ""
    for status in decision.statuses:
        limit = status.limit
        if status.code != Code.OVER_LIMIT or limit is None:
            continue
        if limit.calendar:
            return "QUOTA_EXCEEDED", ledger_name(limit.name or limit.stats_key)
        first = first or ledger_name(limit.name or limit.stats_key)
    return "RATE_LIMITED", first


def ledger_name(name: str) -> str:
    """``name`` as the ledger can hold it: as it is up to 64 characters, else its first 55,
    '~' and 8 hex digits of its SHA-256."""
    if len(name) <= NAME_LENGTH:
        return name
    return f"{name[:NAME_LENGTH - 9]}~{hashlib.sha256(name.encode()).hexdigest()[:8]}"
