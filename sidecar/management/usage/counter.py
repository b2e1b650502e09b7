"""Decisions counted on the hot path: one dict increment, no SQL, no Redis round trip.

Every verification whose key is known (whatever the transport: REST verify, ext_authz,
forward-auth) adds 1 decision (and, when allowed, its cost in hits) to the bucket (customer,
key, refusing limit, outcome, plan, hour). NOT_FOUND and a throttled client address have no
customer and are not counted. The flusher (flusher.py) takes the buckets away in batches.

A refused decision names the limit that refused it: the first exhausted quota for
QUOTA_EXCEEDED, the first exhausted limit for RATE_LIMITED; '' for every other outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sidecar.management.usage.ledger import Batch, Bucket
from sidecar.model import Code

if TYPE_CHECKING:
    from sidecar.management.verify import Outcome


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
