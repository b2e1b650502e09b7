"""Request descriptor → configured limit, exactly as envoyproxy/ratelimit walks its tree.

At each entry: exact ``key_value`` child > first wildcard child in config order > key-only child.
Only the node where the request descriptor ends may give a limit, and a chosen node is never
abandoned for a sibling (no backtracking).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sidecar.model import Entries, RateLimit
from sidecar.rules.model import DescriptorNode


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
    special = False  # a share_threshold wildcard or value_to_metric on the way down
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
        special = special or node.value_to_metric or (how == 1 and node.share_threshold)
        if i == last:
            limit = node.limit
            if limit is None:
                return None
            if special or limit.detailed_metric:
                return _resolve(limit, domain, entries, chosen)
            plain: Match | None = node.plain_match
            if plain is None:  # the common case: one Match per node, made once
                plain = node.plain_match = Match(limit, limit.stats_key)
            return plain
        if not node.children:
            return None
        parent = node
    return None


def _resolve(
    limit: RateLimit, domain: str, entries: Entries, chosen: list[tuple[DescriptorNode, int]]
) -> Match:
    shared = _shared_values(entries, chosen)
    if limit.detailed_metric:
        names = [_detailed_name(k, v, s, bool(shared)) for (k, v), s in _zip(entries, shared)]
    elif any(node.value_to_metric for node, _ in chosen):
        names = [
            _level_name(node, how, k, v)
            for (node, how), (k, v) in zip(chosen, entries, strict=True)
        ]
    else:
        return Match(limit, limit.stats_key, shared)
    return Match(limit, sanitize_stat_name(".".join([domain, *names])), shared)


def _shared_values(
    entries: Entries, chosen: list[tuple[DescriptorNode, int]]
) -> tuple[str | None, ...]:
    """Per entry, the pattern a share_threshold wildcard puts in place of the request value."""
    if not any(how == 1 and node.share_threshold for node, how in chosen):
        return ()
    return tuple(
        _pattern_value(node, key) if how == 1 and node.share_threshold else None
        for (node, how), (key, _) in zip(chosen, entries, strict=True)
    )


def _pattern_value(node: DescriptorNode, key: str) -> str:
    # The reference trims "<request key>_" off the pattern: a key with '_' must stay whole.
    return node.final_key.removeprefix(f"{key}_")


def _zip(
    entries: Entries, shared: tuple[str | None, ...]
) -> list[tuple[tuple[str, str], str | None]]:
    return list(zip(entries, shared or (None,) * len(entries), strict=True))


def _detailed_name(key: str, value: str, pattern: str | None, any_shared: bool) -> str:
    if pattern is not None:
        return f"{key}_{pattern}"
    # Without share_threshold the reference always writes "key_value", even for an empty
    # value; with it, entries that are not shared drop the '_' of an empty value.
    return f"{key}_{value}" if value or not any_shared else key


def _level_name(node: DescriptorNode, how: int, key: str, value: str) -> str:
    if how == 1 and (node.share_threshold or not node.value_to_metric):
        return f"{key}_{_pattern_value(node, key)}"
    return f"{key}_{value}" if value and (how == 0 or node.value_to_metric) else key


_DOTTED_QUAD = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")


def sanitize_stat_name(name: str) -> str:
    """The reference's stat-name clean-up: ':' and '|' → '_', IPv4 dots → '_'."""
    name = name.replace(":", "_").replace("|", "_")
    return _DOTTED_QUAD.sub(lambda m: m.group(0).replace(".", "_"), name)


def override_stats_key(domain: str, entries: Entries) -> str:
    """Stats key for a limit Envoy supplied in the request (values included, as the reference)."""
    parts = [f"{k}_{v}" if v else k for k, v in entries]
    return sanitize_stat_name(".".join([domain, *parts]))
