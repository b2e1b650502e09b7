"""Generic checks of YAML nodes against an allow-list, each problem kept with its place.

A NodeChecker collects RuleErrors (``<file>:<line>: <path>: <what>; expected <what is
allowed>``) instead of stopping at the first: a load reports every problem at once. Keys are
checked against the allowed ones of their level (a typo gets a "did you mean"), ``<<: *anchor``
merge keys are expanded, a repeated key is an error.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

from sidecar.errors import RuleError
from sidecar.rules.yaml11 import (
    MERGE,
    STR,
    TEXT_TAGS,
    bool_value,
    describe,
    int_value,
    is_null,
    line_of,
)

MAX_U32 = 2**32 - 1
COUNT = f"a whole number from 0 to {MAX_U32} (0 refuses every request)"

_Pair = tuple[yaml.Node, yaml.Node]


class NodeChecker:
    """Checks nodes of one file, collecting every problem in ``errors``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.errors: list[RuleError] = []
        # flatten_mapping rewrites a node in place; an '*alias' visits the same node again.
        self._split: dict[int, tuple[list[_Pair], list[_Pair]]] = {}
        # (mapping, allowed key) for each "did you mean": that key is not also reported missing.
        self._typos: set[tuple[int, str]] = set()

    def fail(
        self,
        node: yaml.Node | None,
        path: str,
        problem: str,
        expected: str,
        line: int | None = None,
    ) -> None:
        line = line if line is not None else line_of(node)
        self.errors.append(
            RuleError(self.name, path, f"{problem}; expected {expected}", line)
        )

    def mapping(
        self, node: yaml.Node | None, path: str, allowed: tuple[str, ...]
    ) -> dict[str, yaml.Node] | None:
        """A mapping node as {key: value node}, unknown and repeated keys reported."""
        if not isinstance(node, yaml.MappingNode):
            self.fail(
                node,
                path,
                f"{describe(node)} is not a mapping",
                f"a mapping with keys {listing(allowed)}",
            )
            return None
        merged, own = self._pairs(node, path)
        out: dict[str, yaml.Node] = {}
        for key_node, value_node in merged:  # keys from '<<:' merges: the mapping's own win
            key = self._key(key_node, path, allowed, node)
            if key is not None:
                out[key] = value_node
        seen: set[str] = set()
        for key_node, value_node in own:
            key = self._key(key_node, path, allowed, node)
            if key is not None and key in seen:
                self.fail(
                    key_node,
                    join(path, key),
                    f"key '{key}' appears twice in this mapping",
                    "each key once",
                )
            elif key is not None:
                seen.add(key)
                out[key] = value_node
        return out

    def _pairs(self, node: yaml.MappingNode, path: str) -> tuple[list[_Pair], list[_Pair]]:
        """(pairs brought in by '<<:' merge keys, the mapping's own pairs)."""
        if id(node) not in self._split:
            self._split[id(node)] = self._flatten(node, path)
        return self._split[id(node)]

    def _flatten(self, node: yaml.MappingNode, path: str) -> tuple[list[_Pair], list[_Pair]]:
        own: list[_Pair] = [(k, v) for k, v in node.value if k.tag != MERGE]
        if len(own) == len(node.value):
            return [], own
        try:
            SafeConstructor().flatten_mapping(node)
        except ConstructorError as exc:
            self.fail(
                node,
                path,
                f"cannot merge '<<': {exc.problem}",
                "'<<: *anchor' naming a mapping or a list of mappings",
            )
            return [], own
        return list(node.value[: len(node.value) - len(own)]), own

    def _key(
        self, node: yaml.Node, path: str, allowed: tuple[str, ...], mapping: yaml.Node
    ) -> str | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag != STR:
            shown = repr(node.value) if isinstance(node, yaml.ScalarNode) else describe(node)
            self.fail(node, path, f"key {shown} is not a string", f"one of {listing(allowed)}")
            return None
        key = str(node.value)
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            self._typos.update((id(mapping), c) for c in close)
            self.fail(
                node, join(path, key), f"unknown key '{key}'{hint}", f"one of {listing(allowed)}"
            )
            return None
        return key

    def misspelled(self, mapping: yaml.Node, key: str) -> bool:
        """Whether an unknown key of ``mapping`` was reported as a typo of ``key`` already."""
        return (id(mapping), key) in self._typos

    def string(self, node: yaml.Node | None, path: str) -> str:
        if is_null(node):
            return ""
        if isinstance(node, yaml.ScalarNode) and node.tag in TEXT_TAGS:
            return str(node.value)
        quoted = f" (quote it: '{node.value}')" if isinstance(node, yaml.ScalarNode) else ""
        self.fail(node, path, f"{describe(node)} is not a string", f"text{quoted}")
        return ""

    def boolean(self, node: yaml.Node | None, path: str) -> bool:
        if is_null(node):
            return False
        assert node is not None
        found = bool_value(node)
        if found is None:
            self.fail(
                node, path, f"{describe(node)} is not a boolean", "true or false, without quotes"
            )
            return False
        return found

    def count(self, node: yaml.Node | None, path: str) -> int | None:
        """A uint32 such as requests_per_unit; None when invalid (already reported)."""
        number = int_value(node)
        if number is not None and 0 <= number <= MAX_U32:
            return number
        if is_null(node):
            problem = "requests_per_unit has no value"
        elif number is not None:
            problem = f"{number} is out of range"
        else:
            problem = f"{describe(node)} is not a whole number"
        self.fail(node, path, problem, COUNT)
        return None


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def listing(words: Iterable[str]) -> str:
    return ", ".join(words)
