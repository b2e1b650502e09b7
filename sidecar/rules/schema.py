"""One rules file's YAML → its domain and descriptor tree, with every problem found in it.

Each problem reads ``<file>:<line>: <path in file>: <what is wrong>; expected <what is allowed>``.
The keys are envoyproxy/ratelimit's, read as its YAML 1.1 (yaml11.py: ``value: 123`` is the
string "123", floats are refused; ``<<: *anchor`` merge keys work), plus the extensions of
extensions.py. Unlike the reference, keys are checked per level, and a repeated key in one
mapping, a second YAML document or a missing ``requests_per_unit`` is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from yaml.constructor import ConstructorError

from sidecar.errors import RuleError
from sidecar.model import UNIT_NAMES, FailurePolicy, RateLimit, Unit
from sidecar.rules.checker import COUNT, listing
from sidecar.rules.extensions import ExtensionChecker, is_concurrency, unit_for
from sidecar.rules.matcher import sanitize_stat_name
from sidecar.rules.model import DescriptorNode, DomainOptions
from sidecar.rules.yaml11 import (
    Loader,
    MetadataConstructor,
    describe,
    is_null,
    json_problem,
    line_of,
    mark_line,
    yaml_problem,
)

ROOT_KEYS = ("domain", "descriptors", "atomic", "count_rejected", "time_zone", "failure_policy")
DESCRIPTOR_KEYS = (
    "key", "value", "rate_limit", "descriptors", "shadow_mode", "quota_mode",
    "detailed_metric", "value_to_metric", "share_threshold", "metadata",
)  # fmt: skip
RATE_LIMIT_KEYS = (
    "unit", "requests_per_unit", "unlimited", "name", "replaces",
    "algorithm", "burst", "unit_multiplier", "window", "calendar", "count_rejected",
    "max", "lease_ttl",
)  # fmt: skip
REPLACES_KEYS = ("name",)
LIMIT_FLAGS = ("shadow_mode", "quota_mode", "detailed_metric")
UNITS_TEXT = ", ".join(UNIT_NAMES)


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


class FileChecker(ExtensionChecker):
    """Walks one file's YAML nodes, building descriptor nodes and collecting errors."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.parsed = ParsedFile(name, errors=self.errors)

    # -- structure ---------------------------------------------------------------------------

    def root(self, node: yaml.Node | None) -> None:
        fields = {} if is_null(node) else self.mapping(node, "", ROOT_KEYS)
        if fields is None:
            return
        domain_node = fields.get("domain")
        self.parsed.domain = self.string(domain_node, "domain")
        self.parsed.domain_line = line_of(domain_node)
        if not self.parsed.domain:
            self.fail(
                domain_node or node,
                "domain",
                "config file cannot have empty domain",
                "'domain: <name>' at the top of the file",
                line=line_of(domain_node or node) or 1,
            )
        self.parsed.options = self.domain_options(fields)
        self.domain_count_rejected = self.parsed.options.count_rejected
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
                f"one of {listing(FailurePolicy)}",
            )
            policy = None
        return DomainOptions(
            failure_policy=FailurePolicy(policy) if policy else None,
            atomic=self.boolean(fields.get("atomic"), "atomic"),
            count_rejected=None if is_null(counted) else self.boolean(counted, "count_rejected"),
            time_zone=zone,
        )

    def descriptors(self, node: yaml.Node | None, path: str, parent: str) -> list[Placed]:
        if is_null(node):
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.fail(
                node,
                path,
                f"{describe(node)} is not a list",
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
            seen[desc.final_key] = Placed(desc, where, line_of(item))
            out.append(seen[desc.final_key])
        return out

    def descriptor(self, node: yaml.Node, path: str, parent: str) -> DescriptorNode | None:
        if not isinstance(node, yaml.MappingNode):
            self.fail(
                node,
                path,
                f"{describe(node)} is not a descriptor",
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
        if not is_null(f.get("rate_limit")):
            desc.limit = self.rate_limit(f["rate_limit"], f"{path}.rate_limit", full, desc, flags)
            self.concurrency_flags(desc.limit, f, path)
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
        if is_concurrency(f) and not unlimited:
            held = self.concurrency(f, node, path)
            name = self.string(f.get("name"), f"{path}.name")
            if held is None:
                return None
            return RateLimit(
                **held,
                stats_key=sanitize_stat_name(full),
                name=name,
                metadata=desc.metadata,
                shadow_mode=flags["shadow_mode"],
                quota_mode=flags["quota_mode"],
                detailed_metric=flags["detailed_metric"],
            )
        window = self.window(f, path) if "window" in f else None
        if "window" in f and is_null(f.get("unit")) and not unlimited:
            unit: Unit | None = unit_for(window) if window is not None else None
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
            self.fail(node, f"{path}.requests_per_unit", "requests_per_unit is missing", COUNT)
        return None

    def replaces(self, node: yaml.Node | None, path: str, own: str) -> tuple[str, ...] | None:
        if is_null(node):
            return ()
        if not isinstance(node, yaml.SequenceNode):
            self.fail(
                node,
                path,
                f"{describe(node)} is not a list",
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
        if is_null(node):
            return None
        if not isinstance(node, yaml.MappingNode):
            self.fail(
                node,
                path,
                f"error parsing metadata: {describe(node)} is not a mapping",
                "a mapping of names to values",
            )
            return None
        try:
            data = MetadataConstructor().construct_document(node)
            problem = json_problem(data)
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


def add_child(parent: DescriptorNode, child: DescriptorNode) -> None:
    parent.children[child.final_key] = child
    if child.is_wildcard:
        parent.wildcards.append((child.final_key, tuple(child.final_key.split("*")), child))


def parse_file(rule_file: RuleFile) -> ParsedFile:
    """One file → its domain, top-level descriptors and every problem found in it."""
    checker = FileChecker(rule_file.name)
    try:
        documents = [d for d in yaml.compose_all(rule_file.text, Loader=Loader) if not is_null(d)]
    except yaml.YAMLError as exc:
        checker.fail(
            None,
            "",
            f"error loading config file: {yaml_problem(exc)}",
            "valid YAML",
            line=mark_line(exc),
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
