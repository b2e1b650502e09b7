"""A circuit breaker per Redis endpoint, so a dead Redis costs nothing instead of a timeout.

Without it every call to a dead or hung Redis waits for REDIS_TIMEOUT (the reference's users
report ~10 s stalls, issue #462). With it, after ``failures`` consecutive failed round trips the
endpoint is *open*: calls fail at once with StorageError, without touching the network. After
``cooldown`` seconds one call is let through as a probe (*half-open*); its success closes the
breaker, its failure opens it for another cooldown. Only transport failures count (connection
refused, timeouts): a Redis that answers, even with an error reply, is reachable.

    closed --N failures--> open --cooldown--> half-open --success--> closed
                             ^                    |
                             +------failure-------+
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sidecar.errors import StorageError

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

# Called with (endpoint, new state) on every transition; for metrics and logs.
BreakerListener = Callable[[str, str], None]


class Breaker:
    """Consecutive-failure breaker for one endpoint. Single event loop: no locking needed."""

    __slots__ = ("_clock", "_failures", "_listener", "_opened_at", "_probe_at", "_probing",
                 "cooldown", "endpoint", "state", "threshold")

    def __init__(self, endpoint: str, failures: int = 5, cooldown: float = 1.0,
                 listener: BreakerListener | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.endpoint = endpoint
        self.threshold = max(0, failures)  # 0: never opens
        self.cooldown = cooldown
        self.state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_at = 0.0
        self._probing = False
        self._listener = listener
        self._clock = clock

    def check(self) -> None:
        """Raise StorageError when the call must not reach the endpoint; otherwise let it go
        (and, after the cooldown, make it the one probe)."""
        if self.state == CLOSED:
            return
        now = self._clock()
        if self.state == OPEN and now - self._opened_at >= self.cooldown:
            self._move(HALF_OPEN)
        # A probe that never reported back (its caller was cancelled) must not wedge the
        # breaker: one cooldown later the next call probes instead.
        if self.state == HALF_OPEN and (not self._probing
                                        or now - self._probe_at >= self.cooldown):
            self._probing = True
            self._probe_at = now
            return
        raise StorageError(f"redis {self.endpoint}: circuit open after {self._failures} "
                           "consecutive failures; failing fast until a probe succeeds")

    def success(self) -> None:
        """A round trip completed: the endpoint answers."""
        self._failures = 0
        self._probing = False
        if self.state != CLOSED:
            self._move(CLOSED)

    def failure(self) -> None:
        """A round trip failed in transport (refused, reset, timed out)."""
        self._failures += 1
        was_probe, self._probing = self._probing, False
        if was_probe or (self.state == CLOSED and 0 < self.threshold <= self._failures):
            self._opened_at = self._clock()
            self._move(OPEN)

    def _move(self, state: str) -> None:
        self.state = state
        if self._listener is not None:
            self._listener(self.endpoint, state)
