"""The shared vocabulary: what a request asks, what a limit is, what the answer says.

Every layer speaks these types (rules build RateLimits, the engine turns Descriptors into a
Decision, stores and transports carry them); this module imports nothing of the sidecar, so
any of them can import it. Numbers that cross Envoy's wire (Unit, Code) keep Envoy's values.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

Entries = tuple[tuple[str, str], ...]  # a descriptor's (key, value) entries, in request order

# A descriptor that needs no counter (unlimited) reports this as remaining, as the reference.
UNLIMITED_REMAINING = 4294967295


class Unit(enum.IntEnum):
    """Envoy's RateLimitResponse.RateLimit.Unit numbers, so they cross the wire unchanged."""

    UNKNOWN = 0
    SECOND = 1
    MINUTE = 2
    HOUR = 3
    DAY = 4
    MONTH = 5
    YEAR = 6
    WEEK = 7


# Window lengths in seconds, as the reference sizes them: month = 30 days, year = 365 days,
# all aligned to the Unix epoch.
UNIT_SECONDS: dict[Unit, int] = {
    Unit.SECOND: 1,
    Unit.MINUTE: 60,
    Unit.HOUR: 3600,
    Unit.DAY: 86400,
    Unit.WEEK: 604800,
    Unit.MONTH: 2592000,
    Unit.YEAR: 31536000,
}

UNIT_NAMES: dict[str, Unit] = {u.name.lower(): u for u in UNIT_SECONDS}

# The units a fixed window may align to the calendar (``calendar: true``), by name.
CALENDAR_UNITS = ("day", "week", "month", "year")


class Algorithm(enum.StrEnum):
    """How a limit counts; the value is the rules' ``algorithm:`` word and part of the
    counter key of every algorithm but the fixed window.

    ``concurrency`` counts holders, not requests: a lease takes a slot until it is released or
    expires (limiter/leases.py); a rate check (ShouldRateLimit, /v1/check) only reads it.
    """

    FIXED_WINDOW = "fixed_window"
    SLIDING_WINDOW = "sliding_window"
    SLIDING_LOG = "sliding_log"
    TOKEN_BUCKET = "token_bucket"
    LEAKY_BUCKET = "leaky_bucket"
    CONCURRENCY = "concurrency"


# The algorithms that count requests over time: every one but concurrency.
RATE_ALGORITHMS = tuple(a for a in Algorithm if a != Algorithm.CONCURRENCY)


class FailurePolicy(enum.StrEnum):
    """What to answer when the counter store fails (VIVA_FAILURE_POLICY, a domain's
    ``failure_policy:``); limiter/policy.py carries each out."""

    ALLOW = "allow"
    DENY = "deny"
    UNAVAILABLE = "unavailable"
    LOCAL = "local"


class Code(enum.IntEnum):
    """Envoy's RateLimitResponse.Code numbers."""

    UNKNOWN = 0
    OK = 1
    OVER_LIMIT = 2


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One limit: a rules file's ``rate_limit`` block with the flags of the descriptor that
    holds it, or a limit a caller sends with its descriptor (Descriptor.limit)."""

    requests_per_unit: int
    unit: Unit
    stats_key: str
    name: str = ""
    unlimited: bool = False
    shadow_mode: bool = False
    quota_mode: bool = False
    detailed_metric: bool = False
    replaces: tuple[str, ...] = ()
    metadata: dict[str, Any] | None = field(default=None, hash=False, compare=False)
    # Extensions (envoyproxy/ratelimit files never set them, so they keep its behaviour).
    # A concurrency limit keeps its ``max`` in requests_per_unit and its ``lease_ttl`` in
    # window_ms (unit: the largest unit that TTL is a whole number of).
    algorithm: Algorithm = Algorithm.FIXED_WINDOW
    window_ms: int = 0  # 0: the unit's length
    burst: int = 0  # token/leaky bucket capacity; 0: the algorithm's default
    count_rejected: bool = True  # resolved at load from the rule, the domain and the algorithm
    calendar: bool = False  # day/week/month/year aligned to the domain's time zone
    # Derived once here, read on every request.
    window_seconds: int = field(init=False, compare=False, repr=False)
    # Counted exactly as envoyproxy/ratelimit counts (INCRBY + EXPIRE on its keys).
    reference_compatible: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        seconds = self.window_ms // 1000 if self.window_ms else UNIT_SECONDS.get(self.unit, 0)
        object.__setattr__(self, "window_seconds", seconds)
        object.__setattr__(self, "reference_compatible",
                           self.algorithm == Algorithm.FIXED_WINDOW and self.count_rejected
                           and not self.calendar)

    @property
    def window_length_ms(self) -> int:
        return self.window_ms or UNIT_SECONDS.get(self.unit, 0) * 1000


@dataclass(frozen=True, slots=True)
class Descriptor:
    """One request descriptor: its entries, and what the caller may add to it.

    ``limit`` is a limit the engine applies as it is, without looking the entries up in the
    domain's descriptor tree (the domain must still have rules, as the reference requires for
    Envoy's override): Envoy's per-descriptor override, or any limit a caller computes itself.
    """

    entries: Entries
    hits_addend: int | None = None  # per-descriptor; None when the caller did not set it
    limit: RateLimit | None = None


@dataclass(slots=True)
class DescriptorStatus:
    code: Code
    limit: RateLimit | None = None
    remaining: int = 0
    reset_seconds: int = 0  # whole seconds, rounded up (what the reference reports)
    reset_ms: int | None = None  # exact, for algorithms that know it to the millisecond


@dataclass(slots=True)
class Decision:
    overall: Code
    statuses: list[DescriptorStatus]
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class LeaseStatus:
    """One descriptor's part of a lease call.

    ``limit`` is its concurrency limit (None: none applies, and nothing was held for it);
    ``active`` the leases held on it after the call (None: the store could not say);
    ``expires_at_ms`` when this lease's slot there frees unless renewed (None: no slot held);
    ``retry_after_ms``, when refused, the time until the earliest other lease there expires
    (a release may free a slot sooner). Times are the store's clock, in ms since the epoch.
    """

    limit: RateLimit | None = None
    allowed: bool = True
    active: int | None = None
    expires_at_ms: int | None = None
    retry_after_ms: int | None = None
    ttl_ms: int | None = None  # the time to live the slot was given (acquire and renew)


@dataclass(slots=True)
class LeaseDecision:
    """The answer of a lease call: ``allowed`` (acquire: a slot taken on every limited
    descriptor; renew and release: done), the lease's id (None when nothing is held: refused,
    released, no concurrency limit applies, or the failure policy answered) and the status of
    each of its descriptors."""

    allowed: bool
    lease_id: str | None
    descriptors: list[Entries]
    statuses: list[LeaseStatus]
