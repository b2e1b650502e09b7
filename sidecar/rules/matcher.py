"""Request descriptor → configured limit, exactly as envoyproxy/ratelimit walks its tree.

At each entry: exact ``key_value`` child > first wildcard child in config order > key-only child.
Only the node where the request descriptor ends may give a limit, and a chosen node is never
abandoned for a sibling (no backtracking).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sidecar.rules.model import DescriptorNode, RateLimit

Entries = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Match:
    """A matched limit with the names the request resolves it to."""

    limit: RateLimit
    stats_key: str
    # Per entry: the wildcard pattern that replaces the request value in the counter key when
    # that entry matched a share_threshold node; None everywhere else. () when none applies.
    shared_values: tuple[str | None, ...] = ()


def wildcard_match(parts: tuple[str, ...], text: str) -> bool:
    """Whether ``text`` matches the pattern whose literal pieces (split on '*') are ``parts``."""
    first, last = parts[0], parts[-1]
    if not text.startswith(first) or not text.endswith(last):
        return False
    if sum(len(p) for p in parts) > len(text):
        return False
    pos, end = len(first), len(text) - len(last)
    for middle in parts[1:-1]:
        found = text.find(middle, pos, end)
        if found < 0:
            return False
        pos = found + len(middle)
    return True


def match_descriptor(root: DescriptorNode, domain: str, entries: Entries) -> Match | None:
    """The limit for one request descriptor in one domain's tree, or None (no limit)."""
    parent = root
    chosen: list[tuple[DescriptorNode, int]] = []  # node, how: 0 exact, 1 wildcard, 2 key-only
    last = len(entries) - 1
    for i, (key, value) in enumerate(entries):
        final_key = f"{key}_{value}"
        node = parent.children.get(final_key)
        how = 0
        if node is None:
            how = 1
            for _, parts, candidate in parent.wildcards:
                if wildcard_match(parts, final_key):
                    node = candidate
                    break
        if node is None:
            node, how = parent.children.get(key), 2
        if node is None:
            return None
        chosen.append((node, how))
        if i == last:
            return _resolve(node.limit, domain, entries, chosen) if node.limit else None
        if not node.children:
            return None
        parent = node
    return None


def _resolve(limit: RateLimit, domain: str, entries: Entries,
             chosen: list[tuple[DescriptorNode, int]]) -> Match:
    shared = any(how == 1 and node.share_threshold for node, how in chosen)
    shared_values = (
        tuple(node.final_key.split("_", 1)[1] if how == 1 and node.share_threshold else None
              for node, how in chosen) if shared else ()
    )
    if limit.detailed_metric:
        names = [node.final_key if how == 1 and node.share_threshold else f"{k}_{v}"
                 for (node, how), (k, v) in zip(chosen, entries, strict=True)]
    elif any(node.value_to_metric for node, _ in chosen):
        names = [_level_name(node, how, k, v) for (node, how), (k, v) in zip(chosen, entries,
                                                                              strict=True)]
    else:
        return Match(limit, limit.stats_key, shared_values)
    return Match(limit, sanitize_stat_name(".".join([domain, *names])), shared_values)


def _level_name(node: DescriptorNode, how: int, key: str, value: str) -> str:
    if how == 0:
        return f"{key}_{value}"
    if how == 1:
        return f"{key}_{value}" if node.value_to_metric and not node.share_threshold \
            else node.final_key
    return f"{key}_{value}" if node.value_to_metric and value else key


_DOTTED_QUAD = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")


def sanitize_stat_name(name: str) -> str:
    """The reference's stat-name clean-up: ':' and '|' → '_', IPv4 dots → '_'."""
    name = name.replace(":", "_").replace("|", "_")
    return _DOTTED_QUAD.sub(lambda m: m.group(0).replace(".", "_"), name)


def override_stats_key(domain: str, entries: Entries) -> str:
    """Stats key for a limit Envoy supplied in the request (values included, as the reference)."""
    parts = [f"{k}_{v}" if v else k for k, v in entries]
    return sanitize_stat_name(".".join([domain, *parts]))
