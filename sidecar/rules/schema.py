"""One rules file's YAML → its domain and descriptor tree, with every problem found in it.

Each problem reads ``<file>:<line>: <path in file>: <what is wrong>; expected <what is allowed>``.
Scalars follow the reference's YAML 1.1 reading (gopkg.in/yaml.v2): ``value: 123`` is the
string "123", ``value: yes`` is "yes", ``value: null`` is a key-only entry, dates stay text,
floats are refused; ``<<: *anchor`` merge keys work. Unlike the reference, keys are checked
per level, and a repeated key in one mapping, a second YAML document or a missing
``requests_per_unit`` is an error.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

from sidecar.errors import RuleError
from sidecar.model import (
    CALENDAR_UNITS,
    UNIT_NAMES,
    UNIT_SECONDS,
    Algorithm,
    FailurePolicy,
    RateLimit,
    Unit,
)
from sidecar.rules.matcher import sanitize_stat_name
from sidecar.rules.model import DescriptorNode, DomainOptions

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_FLOAT = "tag:yaml.org,2002:float"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"
# yaml.v2 decodes these into a Go string field from their raw text.
_TEXT_TAGS = (_STR, _INT, _BOOL, _TIMESTAMP)
# yaml.v2 (YAML 1.1) also reads a plain y/n as a boolean; PyYAML does not.
_SHORT_BOOLS = {"y": True, "Y": True, "n": False, "N": False}
_MAX_U32 = 2**32 - 1
_COUNT = f"a whole number from 0 to {_MAX_U32} (0 refuses every request)"

ROOT_KEYS = ("domain", "descriptors", "atomic", "count_rejected", "time_zone", "failure_policy")
DESCRIPTOR_KEYS = (
    "key", "value", "rate_limit", "descriptors", "shadow_mode", "quota_mode",
    "detailed_metric", "value_to_metric", "share_threshold", "metadata",
)  # fmt: skip
RATE_LIMIT_KEYS = (
    "unit", "requests_per_unit", "unlimited", "name", "replaces",
    "algorithm", "burst", "unit_multiplier", "window", "calendar", "count_rejected",
)  # fmt: skip
EXTENSION_KEYS = ("algorithm", "burst", "unit_multiplier", "window", "calendar", "count_rejected")
ALGORITHMS_TEXT = ", ".join(Algorithm)
BUCKETS = (Algorithm.TOKEN_BUCKET, Algorithm.LEAKY_BUCKET)
SLIDING_LOG_MAX = 10_000  # entries a sliding_log key may hold (one per allowed request)
# The algorithms that can count refused requests.
COUNTERS = (Algorithm.FIXED_WINDOW, Algorithm.SLIDING_WINDOW)
_WINDOW = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
REPLACES_KEYS = ("name",)
LIMIT_FLAGS = ("shadow_mode", "quota_mode", "detailed_metric")
UNITS_TEXT = ", ".join(UNIT_NAMES)

try:
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader

_Pair = tuple[yaml.Node, yaml.Node]


class _MetadataConstructor(SafeConstructor):
    """Metadata values as yaml.v2 hands them to protobuf Struct: dates stay text."""

    yaml_constructors: ClassVar[dict[Any, Any]] = {
        **SafeConstructor.yaml_constructors,
        _TIMESTAMP: SafeConstructor.construct_yaml_str,
    }


@dataclass(frozen=True)
class RuleFile:
    """One rules file as read from disk: its display name and its text."""

    name: str
    text: str


class Placed(NamedTuple):
    """A top-level descriptor with where it was written, for errors found while merging."""

    node: DescriptorNode
    path: str
    line: int | None


@dataclass
class ParsedFile:
    """One file's domain and top-level descriptors, and every problem found in it."""

    name: str
    domain: str = ""
    domain_line: int | None = None
    descriptors: list[Placed] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)
    options: DomainOptions = field(default_factory=DomainOptions)


def _line(node: yaml.Node | None) -> int | None:
    return node.start_mark.line + 1 if node is not None else None


def _is_null(node: yaml.Node | None) -> bool:
    return node is None or (isinstance(node, yaml.ScalarNode) and node.tag == _NULL)


class _FileChecker:
    """Walks one file's YAML nodes, building descriptor nodes and collecting errors."""

    def __init__(self, name: str) -> None:
        self.parsed = ParsedFile(name)
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
        line = line if line is not None else _line(node)
        self.parsed.errors.append(
            RuleError(self.parsed.name, path, f"{problem}; expected {expected}", line)
        )

    # -- mappings ----------------------------------------------------------------------------

    def mapping(
        self, node: yaml.Node | None, path: str, allowed: tuple[str, ...]
    ) -> dict[str, yaml.Node] | None:
        """A mapping node as {key: value node}, unknown and repeated keys reported."""
        if not isinstance(node, yaml.MappingNode):
            self.fail(
                node,
                path,
                f"{_describe(node)} is not a mapping",
                f"a mapping with keys {_list(allowed)}",
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
                    _join(path, key),
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
        own: list[_Pair] = [(k, v) for k, v in node.value if k.tag != _MERGE]
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
        if not isinstance(node, yaml.ScalarNode) or node.tag != _STR:
            shown = repr(node.value) if isinstance(node, yaml.ScalarNode) else _describe(node)
            self.fail(node, path, f"key {shown} is not a string", f"one of {_list(allowed)}")
            return None
        key = str(node.value)
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            self._typos.update((id(mapping), c) for c in close)
            self.fail(
                node, _join(path, key), f"unknown key '{key}'{hint}", f"one of {_list(allowed)}"
            )
            return None
        return key

    def misspelled(self, mapping: yaml.Node, key: str) -> bool:
        """Whether an unknown key of ``mapping`` was reported as a typo of ``key`` already."""
        return (id(mapping), key) in self._typos

    # -- scalars -----------------------------------------------------------------------------

    def string(self, node: yaml.Node | None, path: str) -> str:
        if _is_null(node):
            return ""
        if isinstance(node, yaml.ScalarNode) and node.tag in _TEXT_TAGS:
            return str(node.value)
        quoted = f" (quote it: '{node.value}')" if isinstance(node, yaml.ScalarNode) else ""
        self.fail(node, path, f"{_describe(node)} is not a string", f"text{quoted}")
        return ""

    def boolean(self, node: yaml.Node | None, path: str) -> bool:
        if _is_null(node):
            return False
        assert node is not None
        found = _bool_value(node)
        if found is None:
            self.fail(
                node, path, f"{_describe(node)} is not a boolean", "true or false, without quotes"
            )
            return False
        return found

    def count(self, node: yaml.Node | None, path: str) -> int | None:
        """A uint32 such as requests_per_unit; None when invalid (already reported)."""
        number = _int_value(node)
        if number is not None and 0 <= number <= _MAX_U32:
            return number
        if _is_null(node):
            problem = "requests_per_unit has no value"
        elif number is not None:
            problem = f"{number} is out of range"
        else:
            problem = f"{_describe(node)} is not a whole number"
        self.fail(node, path, problem, _COUNT)
        return None

    # -- structure ---------------------------------------------------------------------------

    def root(self, node: yaml.Node | None) -> None:
        fields = {} if _is_null(node) else self.mapping(node, "", ROOT_KEYS)
        if fields is None:
            return
        domain_node = fields.get("domain")
        self.parsed.domain = self.string(domain_node, "domain")
        self.parsed.domain_line = _line(domain_node)
        if not self.parsed.domain:
            self.fail(
                domain_node or node,
                "domain",
                "config file cannot have empty domain",
                "'domain: <name>' at the top of the file",
                line=_line(domain_node or node) or 1,
            )
        self.parsed.options = self.domain_options(fields)
        self.parsed.descriptors = self.descriptors(
            fields.get("descriptors"), "descriptors", self.parsed.domain
        )

    def domain_options(self, fields: dict[str, yaml.Node]) -> DomainOptions:
        counted = fields.get("count_rejected")
        zone = self.string(fields.get("time_zone"), "time_zone") or "UTC"
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            self.fail(
                fields["time_zone"],
                "time_zone",
                f"unknown time zone '{zone}'",
                "an IANA time zone name such as UTC, Europe/Paris or America/New_York",
            )
            zone = "UTC"
        policy = self.string(fields.get("failure_policy"), "failure_policy") or None
        if policy is not None and policy not in tuple(FailurePolicy):
            self.fail(
                fields["failure_policy"],
                "failure_policy",
                f"unknown failure policy '{policy}'",
                f"one of {_list(FailurePolicy)}",
            )
            policy = None
        return DomainOptions(
            failure_policy=FailurePolicy(policy) if policy else None,
            atomic=self.boolean(fields.get("atomic"), "atomic"),
            count_rejected=None if _is_null(counted) else self.boolean(counted, "count_rejected"),
            time_zone=zone,
        )

    def descriptors(self, node: yaml.Node | None, path: str, parent: str) -> list[Placed]:
        if _is_null(node):
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.fail(
                node,
                path,
                f"{_describe(node)} is not a list",
                "a list of descriptors ('- key: <name>')",
            )
            return []
        out: list[Placed] = []
        seen: dict[str, Placed] = {}
        for i, item in enumerate(node.value):
            where = f"{path}[{i}]"
            desc = self.descriptor(item, where, parent)
            if desc is None:
                continue
            first = seen.get(desc.final_key)
            if first is not None:
                self.fail(
                    item,
                    where,
                    f"duplicate descriptor composite key "
                    f"'{parent}.{desc.final_key}' (first at {first.path}, line {first.line})",
                    "each key/value pair once per level",
                )
                continue
            seen[desc.final_key] = Placed(desc, where, _line(item))
            out.append(seen[desc.final_key])
        return out

    def descriptor(self, node: yaml.Node, path: str, parent: str) -> DescriptorNode | None:
        if not isinstance(node, yaml.MappingNode):
            self.fail(
                node,
                path,
                f"{_describe(node)} is not a descriptor",
                "a mapping with 'key' and optionally 'value', 'rate_limit', 'descriptors'",
            )
            return None
        f = self.mapping(node, path, DESCRIPTOR_KEYS) or {}
        key = self.string(f.get("key"), f"{path}.key")
        if not key and not self.misspelled(node, "key"):
            self.fail(
                f.get("key", node), f"{path}.key", "descriptor has empty key", "'key: <name>'"
            )
        desc = DescriptorNode(key=key, value=self.string(f.get("value"), f"{path}.value"))
        full = f"{parent}.{desc.final_key}"
        self.node_flags(desc, f, path)
        flags = {k: self.boolean(f.get(k), f"{path}.{k}") for k in LIMIT_FLAGS}
        if not _is_null(f.get("rate_limit")):
            desc.limit = self.rate_limit(f["rate_limit"], f"{path}.rate_limit", full, desc, flags)
        for child in self.descriptors(f.get("descriptors"), f"{path}.descriptors", full):
            add_child(desc, child.node)
        return desc if key else None

    def node_flags(self, desc: DescriptorNode, f: dict[str, yaml.Node], path: str) -> None:
        """The flags that act on the node rather than on its limit."""
        desc.value_to_metric = self.boolean(f.get("value_to_metric"), f"{path}.value_to_metric")
        desc.share_threshold = self.boolean(f.get("share_threshold"), f"{path}.share_threshold")
        if desc.share_threshold and not desc.is_wildcard:
            self.fail(
                f["share_threshold"],
                f"{path}.share_threshold",
                "share_threshold can only be used with wildcard values (containing '*'), "
                f"but found key '{desc.final_key}'",
                "a value with '*' such as 'prefix*', or no share_threshold",
            )
        desc.metadata = self.metadata(f.get("metadata"), f"{path}.metadata")

    def rate_limit(
        self, node: yaml.Node, path: str, full: str, desc: DescriptorNode, flags: dict[str, bool]
    ) -> RateLimit | None:
        f = self.mapping(node, path, RATE_LIMIT_KEYS)
        if f is None:
            return None
        unlimited = self.boolean(f.get("unlimited"), f"{path}.unlimited")
        window = self.window(f, path) if "window" in f else None
        if "window" in f and _is_null(f.get("unit")) and not unlimited:
            unit: Unit | None = _unit_for(window) if window is not None else None
        else:
            unit = self.unit(f, node, path, unlimited)
        rpu = self.requests(f, node, path, unlimited)
        name = self.string(f.get("name"), f"{path}.name")
        replaces = self.replaces(f.get("replaces"), f"{path}.replaces", name)
        extra = self.extensions(f, path, unit, unlimited, window)
        if unit is None or rpu is None or replaces is None or extra is None:
            return None
        return RateLimit(
            **extra,
            requests_per_unit=rpu,
            unit=unit,
            stats_key=sanitize_stat_name(full),
            name=name,
            unlimited=unlimited,
            replaces=replaces,
            metadata=desc.metadata,
            shadow_mode=flags["shadow_mode"],
            quota_mode=flags["quota_mode"],
            detailed_metric=flags["detailed_metric"],
        )

    def extensions(
        self,
        f: dict[str, yaml.Node],
        path: str,
        unit: Unit | None,
        unlimited: bool,
        window: int | None,
    ) -> dict[str, Any] | None:
        """The algorithm and window extensions, checked together; None when invalid."""
        given = [k for k in EXTENSION_KEYS if k in f]
        if unlimited and given:
            self.fail(
                f[given[0]],
                f"{path}.{given[0]}",
                f"'{given[0]}' has no meaning on an unlimited limit",
                "either 'unlimited: true' alone, or a limit with its algorithm",
            )
            return None
        errors = len(self.parsed.errors)
        algorithm = self.algorithm(f, path)
        out: dict[str, Any] = {"algorithm": algorithm}
        out["burst"] = self.burst(f, path, algorithm)
        out["window_ms"] = self.window_length(f, path, unit, window)
        out["calendar"] = self.calendar(f, path, unit, algorithm)
        if algorithm == Algorithm.SLIDING_LOG:
            self.log_size(f.get("requests_per_unit"), path)
        counted = f.get("count_rejected")
        if not _is_null(counted):
            out["count_rejected"] = self.boolean(counted, f"{path}.count_rejected")
            if algorithm not in COUNTERS and out["count_rejected"]:
                self.fail(
                    counted,
                    f"{path}.count_rejected",
                    f"{algorithm} never charges refused requests",
                    "count_rejected only with fixed_window or sliding_window",
                )
        else:
            out["count_rejected"] = self._default_count_rejected(algorithm)
        return out if len(self.parsed.errors) == errors else None

    def log_size(self, node: yaml.Node | None, path: str) -> None:
        """sliding_log keeps one entry per allowed request and reads them all on each check:
        its limit is capped so one hot key cannot cost unbounded memory and CPU."""
        text = node.value if isinstance(node, yaml.ScalarNode) else ""
        if text.isdigit() and int(text) > SLIDING_LOG_MAX:
            self.fail(
                node,
                f"{path}.requests_per_unit",
                f"{text} is too many for sliding_log, which keeps one entry per request",
                f"at most {SLIDING_LOG_MAX}, or algorithm: sliding_window for larger limits",
            )

    def _default_count_rejected(self, algorithm: Algorithm) -> bool:
        """The domain's default where it set one; else only fixed windows count refusals (the
        reference's behaviour)."""
        if algorithm not in COUNTERS:
            return False
        domain = self.parsed.options.count_rejected
        return algorithm == Algorithm.FIXED_WINDOW if domain is None else domain

    def algorithm(self, f: dict[str, yaml.Node], path: str) -> Algorithm:
        text = self.string(f.get("algorithm"), f"{path}.algorithm") or Algorithm.FIXED_WINDOW
        if text not in tuple(Algorithm):
            self.fail(
                f.get("algorithm"),
                f"{path}.algorithm",
                f"unknown algorithm '{text}'",
                f"one of {ALGORITHMS_TEXT}",
            )
            return Algorithm.FIXED_WINDOW
        return Algorithm(text)

    def burst(self, f: dict[str, yaml.Node], path: str, algorithm: Algorithm) -> int:
        node = f.get("burst")
        if _is_null(node):
            return 0
        if algorithm not in BUCKETS:
            self.fail(
                node,
                f"{path}.burst",
                f"burst has no meaning for {algorithm}",
                "burst only with algorithm token_bucket or leaky_bucket",
            )
            return 0
        number = _int_value(node)
        if number is None or not 1 <= number <= _MAX_U32:
            self.fail(
                node,
                f"{path}.burst",
                f"{_describe(node)} is not a valid burst",
                f"a whole number from 1 to {_MAX_U32}",
            )
            return 0
        return number

    def window(self, f: dict[str, yaml.Node], path: str) -> int | None:
        """``window: 90s`` → 90000 (ms); None when invalid (already reported)."""
        node = f["window"]
        text = self.string(node, f"{path}.window").strip()
        match = _WINDOW.match(text)
        seconds = 0
        if match and text:
            d, h, m, sec = (int(g) if g else 0 for g in match.groups())
            seconds = ((d * 24 + h) * 60 + m) * 60 + sec
        if seconds <= 0:
            self.fail(
                node,
                f"{path}.window",
                f"'{text}' is not a window length",
                "a duration of whole seconds such as 30s, 90s, 5m, 1h30m or 2d",
            )
            return None
        return seconds * 1000

    def window_length(
        self, f: dict[str, yaml.Node], path: str, unit: Unit | None, window: int | None
    ) -> int:
        node = f.get("unit_multiplier")
        if _is_null(node):
            return window or 0
        if window is not None:
            self.fail(
                node,
                f"{path}.unit_multiplier",
                "unit_multiplier and window both given",
                "one of them: 'unit_multiplier: 5' with a unit, or 'window: 5m'",
            )
            return 0
        number = _int_value(node)
        if number is None or not 1 <= number <= 1_000_000:
            self.fail(
                node,
                f"{path}.unit_multiplier",
                f"{_describe(node)} is not a valid multiplier",
                "a whole number from 1 to 1000000",
            )
            return 0
        return number * UNIT_SECONDS.get(unit or Unit.SECOND, 1) * 1000 if number > 1 else 0

    def calendar(
        self, f: dict[str, yaml.Node], path: str, unit: Unit | None, algorithm: Algorithm
    ) -> bool:
        node = f.get("calendar")
        if not self.boolean(node, f"{path}.calendar"):
            return False
        if algorithm != Algorithm.FIXED_WINDOW:
            self.fail(
                node,
                f"{path}.calendar",
                f"calendar windows need fixed_window, not {algorithm}",
                "calendar: true only with the fixed_window algorithm",
            )
        elif (
            unit is None
            or unit.name.lower() not in CALENDAR_UNITS
            or any(k in f for k in ("window", "unit_multiplier"))
        ):
            self.fail(
                node,
                f"{path}.calendar",
                "calendar windows are one day, week, month or year",
                f"unit one of {', '.join(CALENDAR_UNITS)}, without unit_multiplier or window",
            )
        return True

    def unit(
        self, f: dict[str, yaml.Node], node: yaml.Node, path: str, unlimited: bool
    ) -> Unit | None:
        """The unit; UNKNOWN for an unlimited limit; None when invalid (already reported)."""
        text = self.string(f.get("unit"), f"{path}.unit")
        unit = UNIT_NAMES.get(text.lower())
        if unlimited and unit is not None:
            self.fail(
                f["unit"],
                f"{path}.unit",
                "should not specify rate limit unit when unlimited",
                "either 'unlimited: true' without a unit, or a unit",
            )
            return None
        if unlimited:
            return Unit.UNKNOWN
        if unit is None and not (not text and self.misspelled(node, "unit")):
            problem = f"invalid rate limit unit '{text}'" if text else "rate limit unit is missing"
            self.fail(
                f.get("unit", node),
                f"{path}.unit",
                problem,
                f"one of {UNITS_TEXT} (any case), or 'unlimited: true'",
            )
        return unit

    def requests(
        self, f: dict[str, yaml.Node], node: yaml.Node, path: str, unlimited: bool
    ) -> int | None:
        if "requests_per_unit" in f:
            return self.count(f["requests_per_unit"], f"{path}.requests_per_unit")
        if unlimited:
            return 0
        if not self.misspelled(node, "requests_per_unit"):
            self.fail(node, f"{path}.requests_per_unit", "requests_per_unit is missing", _COUNT)
        return None

    def replaces(self, node: yaml.Node | None, path: str, own: str) -> tuple[str, ...] | None:
        if _is_null(node):
            return ()
        if not isinstance(node, yaml.SequenceNode):
            self.fail(
                node,
                path,
                f"{_describe(node)} is not a list",
                "a list of '- name: <name of another rate_limit>'",
            )
            return None
        names = [self.replaced_name(item, f"{path}[{i}]", own) for i, item in enumerate(node.value)]
        return None if None in names else tuple(n for n in names if n is not None)

    def replaced_name(self, node: yaml.Node, path: str, own: str) -> str | None:
        fields = self.mapping(node, path, REPLACES_KEYS)
        if fields is None:
            return None
        name = self.string(fields.get("name"), f"{path}.name")
        if not name:
            self.fail(
                fields.get("name", node),
                f"{path}.name",
                "should not have an empty replaces entry",
                "'name: <name of another rate_limit>'",
            )
            return None
        if name == own:
            self.fail(
                fields["name"],
                f"{path}.name",
                f"replaces should not contain name of same descriptor ('{name}')",
                "the name of another rate_limit",
            )
            return None
        return name

    def metadata(self, node: yaml.Node | None, path: str) -> dict[str, Any] | None:
        if _is_null(node):
            return None
        if not isinstance(node, yaml.MappingNode):
            self.fail(
                node,
                path,
                f"error parsing metadata: {_describe(node)} is not a mapping",
                "a mapping of names to values",
            )
            return None
        try:
            data = _MetadataConstructor().construct_document(node)
            problem = _json_problem(data)
        except (ConstructorError, ValueError, RecursionError) as exc:
            problem = str(getattr(exc, "problem", None) or exc)
        if problem:
            self.fail(
                node,
                path,
                f"error parsing metadata: {problem}",
                "text, numbers, booleans, lists and mappings with text keys",
            )
            return None
        return dict(data)


def _unit_for(window_ms: int) -> Unit:
    """The largest unit a window is a whole number of: what current_limit reports for it."""
    for unit in (Unit.YEAR, Unit.MONTH, Unit.WEEK, Unit.DAY, Unit.HOUR, Unit.MINUTE):
        if window_ms % (UNIT_SECONDS[unit] * 1000) == 0:
            return unit
    return Unit.SECOND


def add_child(parent: DescriptorNode, child: DescriptorNode) -> None:
    parent.children[child.final_key] = child
    if child.is_wildcard:
        parent.wildcards.append((child.final_key, tuple(child.final_key.split("*")), child))


def _bool_value(node: yaml.Node) -> bool | None:
    if not isinstance(node, yaml.ScalarNode):
        return None
    if node.tag == _BOOL:
        found = yaml.SafeLoader.bool_values.get(str(node.value).lower())
        return None if found is None else bool(found)
    if node.tag == _STR and not node.style:  # plain: libyaml says "", PyYAML None
        return _SHORT_BOOLS.get(node.value)
    return None


def _int_value(node: yaml.Node | None) -> int | None:
    if not isinstance(node, yaml.ScalarNode) or node.tag != _INT:
        return None
    try:
        return int(SafeConstructor().construct_yaml_int(node))
    except ValueError:  # e.g. an explicit '!!int abc'
        return None


def _json_problem(data: Any) -> str:
    """Why ``data`` cannot become a google.protobuf.Struct, or '' when it can."""
    if isinstance(data, dict):
        for k, v in data.items():
            if not isinstance(k, str):
                return f"key {k!r} is not a string"
            problem = _json_problem(v)
            if problem:
                return problem
        return ""
    if isinstance(data, list):
        return next((p for p in map(_json_problem, data) if p), "")
    if data is None or isinstance(data, str | int | float | bool):
        return ""
    return f"{data!r} is not a JSON value"


def _describe(node: yaml.Node | None) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if _is_null(node):
        return "an empty value"
    assert isinstance(node, yaml.ScalarNode)
    if node.tag == _STR and node.style in ("'", '"'):
        return f"the quoted text {node.value!r}"
    if node.tag == _FLOAT:
        return f"the number {node.value}"
    return repr(node.value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _list(words: Iterable[str]) -> str:
    return ", ".join(words)


def parse_file(rule_file: RuleFile) -> ParsedFile:
    """One file → its domain, top-level descriptors and every problem found in it."""
    checker = _FileChecker(rule_file.name)
    try:
        documents = [d for d in yaml.compose_all(rule_file.text, Loader=_Loader) if not _is_null(d)]
    except yaml.YAMLError as exc:
        checker.fail(
            None,
            "",
            f"error loading config file: {_yaml_problem(exc)}",
            "valid YAML",
            line=_mark_line(exc),
        )
        return checker.parsed
    for extra in documents[1:]:
        checker.fail(
            extra,
            "",
            "a second YAML document ('---') in one file",
            "one document per file; put each domain in its own file",
        )
    try:
        checker.root(documents[0] if documents else None)
    except RecursionError:
        checker.fail(
            None,
            "",
            "descriptors nest too deeply (a recursive '*alias'?)",
            "a finite tree of descriptors",
        )
    checker.parsed.errors.sort(key=lambda e: e.line or 0)  # stable: same line keeps its order
    return checker.parsed


def _yaml_problem(exc: yaml.YAMLError) -> str:
    context = getattr(exc, "context", None)
    problem = getattr(exc, "problem", None) or str(exc)
    return f"{context}: {problem}" if context else str(problem)


def _mark_line(exc: yaml.YAMLError) -> int | None:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return mark.line + 1 if mark is not None else None
