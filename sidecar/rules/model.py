"""The loaded form of a rules directory: frozen, shared by every request of one version."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sidecar.model import FailurePolicy, RateLimit


@dataclass(frozen=True, slots=True)
class DomainOptions:
    """Domain-level extensions: defaults for its rules and how a request is charged."""

    atomic: bool = False  # all descriptors of a request are charged together, or none
    count_rejected: bool | None = None  # default for the domain's counting rules
    time_zone: str = "UTC"  # for calendar windows
    # What to answer when the counter store fails; None: the service-wide default
    # (VIVA_FAILURE_POLICY).
    failure_policy: FailurePolicy | None = None


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
