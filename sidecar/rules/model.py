"""The loaded form of a rules directory: frozen, shared by every request of one version."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


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


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One ``rate_limit`` block, with the flags of the descriptor that holds it."""

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
    algorithm: str = "fixed_window"
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
        object.__setattr__(self, "reference_compatible", self.algorithm == "fixed_window"
                           and self.count_rejected and not self.calendar)

    @property
    def window_length_ms(self) -> int:
        return self.window_ms or UNIT_SECONDS.get(self.unit, 0) * 1000


@dataclass(frozen=True, slots=True)
class DomainOptions:
    """Domain-level extensions: defaults for its rules and how a request is charged."""

    atomic: bool = False  # all descriptors of a request are charged together, or none
    count_rejected: bool | None = None  # default for the domain's counting rules
    time_zone: str = "UTC"  # for calendar windows
    # What to answer when the counter store fails: allow | deny | unavailable | local;
    # None: the service-wide default (VIVA_FAILURE_POLICY).
    failure_policy: str | None = None


@dataclass(slots=True)
class DescriptorNode:
    """A descriptor entry of the rules tree; mutable only while the loader builds it."""

    key: str
    value: str
    limit: RateLimit | None = None
    children: dict[str, DescriptorNode] = field(default_factory=dict)
    # (final key, literal parts split on '*', node) in config order: first match wins.
    wildcards: list[tuple[str, tuple[str, ...], DescriptorNode]] = field(default_factory=list)
    value_to_metric: bool = False
    share_threshold: bool = False
    metadata: dict[str, Any] | None = None
    plain_match: Any = None  # matcher's cache of the Match this node's limit gives

    @property
    def final_key(self) -> str:
        return f"{self.key}_{self.value}" if self.value else self.key

    @property
    def is_wildcard(self) -> bool:
        return "*" in self.final_key


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Every domain of one successful load, with where it came from."""

    domains: dict[str, DescriptorNode]
    version: str
    loaded_at: float
    files: tuple[str, ...] = ()
    options: dict[str, DomainOptions] = field(default_factory=dict)

    def iter_limits(self) -> list[tuple[str, RateLimit]]:
        """(full key, limit) for every limited descriptor, parents before children."""
        out: list[tuple[str, RateLimit]] = []
        for domain, root in sorted(self.domains.items()):
            _collect(root, domain, out)
        return out


def _collect(node: DescriptorNode, prefix: str, out: list[tuple[str, RateLimit]]) -> None:
    for child in node.children.values():
        path = f"{prefix}.{child.final_key}"
        if child.limit is not None:
            out.append((path, child.limit))
        _collect(child, path, out)
