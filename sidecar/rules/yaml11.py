"""YAML read as the reference reads it (gopkg.in/yaml.v2, YAML 1.1), node by node.

The rules are checked on YAML nodes, not on constructed values, so every problem keeps its
line and a scalar keeps its text: ``value: 123`` is the string "123", ``value: yes`` is "yes",
``value: null`` is empty, dates stay text, a plain ``y``/``n`` is a boolean as in YAML 1.1.
"""

from __future__ import annotations

from typing import Any, ClassVar

import yaml
from yaml.constructor import SafeConstructor

STR = "tag:yaml.org,2002:str"
INT = "tag:yaml.org,2002:int"
BOOL = "tag:yaml.org,2002:bool"
NULL = "tag:yaml.org,2002:null"
FLOAT = "tag:yaml.org,2002:float"
TIMESTAMP = "tag:yaml.org,2002:timestamp"
MERGE = "tag:yaml.org,2002:merge"
# yaml.v2 decodes these into a Go string field from their raw text.
TEXT_TAGS = (STR, INT, BOOL, TIMESTAMP)
# yaml.v2 (YAML 1.1) also reads a plain y/n as a boolean; PyYAML does not.
_SHORT_BOOLS = {"y": True, "Y": True, "n": False, "N": False}

try:
    Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - libyaml missing
    Loader = yaml.SafeLoader


class MetadataConstructor(SafeConstructor):
    """Metadata values as yaml.v2 hands them to protobuf Struct: dates stay text."""

    yaml_constructors: ClassVar[dict[Any, Any]] = {
        **SafeConstructor.yaml_constructors,
        TIMESTAMP: SafeConstructor.construct_yaml_str,
    }


def line_of(node: yaml.Node | None) -> int | None:
    return node.start_mark.line + 1 if node is not None else None


def is_null(node: yaml.Node | None) -> bool:
    return node is None or (isinstance(node, yaml.ScalarNode) and node.tag == NULL)


def bool_value(node: yaml.Node) -> bool | None:
    if not isinstance(node, yaml.ScalarNode):
        return None
    if node.tag == BOOL:
        found = yaml.SafeLoader.bool_values.get(str(node.value).lower())
        return None if found is None else bool(found)
    if node.tag == STR and not node.style:  # plain: libyaml says "", PyYAML None
        return _SHORT_BOOLS.get(node.value)
    return None


def int_value(node: yaml.Node | None) -> int | None:
    if not isinstance(node, yaml.ScalarNode) or node.tag != INT:
        return None
    try:
        return int(SafeConstructor().construct_yaml_int(node))
    except ValueError:  # e.g. an explicit '!!int abc'
        return None


def describe(node: yaml.Node | None) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if is_null(node):
        return "an empty value"
    assert isinstance(node, yaml.ScalarNode)
    if node.tag == STR and node.style in ("'", '"'):
        return f"the quoted text {node.value!r}"
    if node.tag == FLOAT:
        return f"the number {node.value}"
    return repr(node.value)


def json_problem(data: Any) -> str:
    """Why ``data`` cannot become a google.protobuf.Struct, or '' when it can."""
    if isinstance(data, dict):
        for k, v in data.items():
            if not isinstance(k, str):
                return f"key {k!r} is not a string"
            problem = json_problem(v)
            if problem:
                return problem
        return ""
    if isinstance(data, list):
        return next((p for p in map(json_problem, data) if p), "")
    if data is None or isinstance(data, str | int | float | bool):
        return ""
    return f"{data!r} is not a JSON value"


def yaml_problem(exc: yaml.YAMLError) -> str:
    context = getattr(exc, "context", None)
    problem = getattr(exc, "problem", None) or str(exc)
    return f"{context}: {problem}" if context else str(problem)


def mark_line(exc: yaml.YAMLError) -> int | None:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return mark.line + 1 if mark is not None else None
