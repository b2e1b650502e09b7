"""The failure policy: what to answer for a request whose counters the store could not reach.

Per domain (the rules' ``failure_policy:``), else VIVA_FAILURE_POLICY:

- ``unavailable`` (default): raise StorageError, so the transport answers gRPC UNAVAILABLE and
  Envoy's ``failure_mode_deny`` decides, as with the reference;
- ``allow``: answer OK for the descriptors that needed the store (fail open, decided here);
- ``deny``: answer OVER_LIMIT for them (fail closed; shadow-mode rules still answer OK);
- ``local``: count that request in the fallback store instead (the composition root gives a
  memory store), for as long as the store keeps failing. Each sidecar then enforces the whole
  limit on its own traffic, and what it counted is not merged back into Redis when Redis
  returns. Without a fallback store, ``local`` answers as ``unavailable``.

Every decision is counted (``viva_ratelimit_failure_policy_decisions_total{domain,policy}``)
and logged at most once per domain and policy every ``log_interval`` seconds, with the number
of decisions since the last line, so a Redis outage cannot flood the logs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sidecar.model import FailurePolicy
from sidecar.storage.base import Store

log = logging.getLogger("sidecar.policy")

# Receives (domain, policy) for every decision taken under the policy; for metrics.
DecisionListener = Callable[[str, str], None]


class FailureHandler:
    """Chooses the failure policy of a domain and records each decision taken under it."""

    def __init__(self, default: FailurePolicy = FailurePolicy.UNAVAILABLE,
                 fallback: Store | None = None, listener: DecisionListener | None = None,
                 log_interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if default not in tuple(FailurePolicy):
            raise ValueError(f"failure policy {default!r}; expected one of "
                             f"{', '.join(FailurePolicy)}")
        self.default = FailurePolicy(default)
        # The ``local`` policy's counters, kept across outages so a flapping Redis does not
        # hand out a fresh budget at every blip.
        self.fallback = fallback
        self.listener = listener
        self.log_interval = log_interval
        self._clock = clock
        # (domain, policy) -> [when the last line was logged, decisions since]
        self._logged: dict[tuple[str, str], list[float]] = {}

    def choose(self, domain_policy: FailurePolicy | None) -> FailurePolicy:
        policy = domain_policy or self.default
        if policy == FailurePolicy.LOCAL and self.fallback is None:
            return FailurePolicy.UNAVAILABLE
        return policy

    def decided(self, domain: str, policy: FailurePolicy, error: Exception) -> None:
        """Count one decision, and log it unless this domain and policy logged recently."""
        if self.listener is not None:
            self.listener(domain, policy)
        now = self._clock()
        state = self._logged.get((domain, policy))
        if state is None:
            state = self._logged[(domain, policy)] = [now - self.log_interval, 0.0]
        state[1] += 1
        if now - state[0] < self.log_interval:
            return
        log.warning("counter store failed for domain %r, answering by failure policy %r "
                    "(%d decision(s) since the last such line): %s",
                    domain, str(policy), int(state[1]), error)
        state[0], state[1] = now, 0.0
