"""YAML rules → RuleSet, checking every key against an allow-list and reporting every problem.

Each error reads ``<file>:<line>: <path in file>: <what is wrong>; expected <what is allowed>``.
Scalars follow the reference's YAML 1.1 reading: ``value: 123`` is the string "123",
``value: null`` is a key-only entry, floats are refused.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from sidecar.errors import RuleError, RuleSetError
from sidecar.rules.model import UNIT_NAMES, DescriptorNode, RateLimit, RuleSet, Unit

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_FLOAT = "tag:yaml.org,2002:float"
_MAX_U32 = 2**32 - 1

ROOT_KEYS = ("domain", "descriptors")
DESCRIPTOR_KEYS = (
    "key", "value", "rate_limit", "descriptors", "shadow_mode", "quota_mode",
    "detailed_metric", "value_to_metric", "share_threshold", "metadata",
)  # fmt: skip
RATE_LIMIT_KEYS = ("unit", "requests_per_unit", "unlimited", "name", "replaces")
REPLACES_KEYS = ("name",)
UNITS_TEXT = ", ".join(UNIT_NAMES)

try:
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader


@dataclass(frozen=True)
class RuleFile:
    """One rules file as read from disk: its display name and its text."""

    name: str
    text: str


class _FileChecker:
    """Walks one file's YAML nodes, building descriptor nodes and collecting errors."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.errors: list[RuleError] = []
        self.domain = ""

    def fail(self, node: yaml.Node | None, path: str, problem: str) -> None:
        line = node.start_mark.line + 1 if node is not None else None
        self.errors.append(RuleError(self.name, path, problem, line))

    # -- scalars ---------------------------------------------------------------------------

    def mapping(self, node: yaml.Node, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        """A mapping node as {key: value node}, with unknown and duplicate keys reported."""
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, path, f"{_describe(node)} is not a mapping; expected keys {_list(allowed)}")
            return {}
        out: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR:
                self.fail(key_node, path, f"key {_describe(key_node)} is not a string")
                continue
            key = key_node.value
            where = f"{path}.{key}" if path else key
            if key not in allowed:
                self.fail(key_node, where, f"unknown key '{key}'; expected one of {_list(allowed)}")
            elif key in out:
                self.fail(key_node, where, f"key '{key}' appears twice in the same mapping")
            else:
                out[key] = value_node
        return out

    def string(self, node: yaml.Node | None, path: str) -> str:
        if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == _NULL):
            return ""
        if isinstance(node, yaml.ScalarNode) and node.tag in (_STR, _INT, _BOOL):
            return str(node.value)
        self.fail(node, path, f"{_describe(node)} is not a string; expected text")
        return ""

    def boolean(self, node: yaml.Node | None, path: str) -> bool:
        if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == _NULL):
            return False
        if isinstance(node, yaml.ScalarNode) and node.tag == _BOOL:
            return bool(yaml.SafeLoader.bool_values[node.value.lower()])
        self.fail(node, path, f"{_describe(node)} is not a boolean; expected true or false")
        return False

    def count(self, node: yaml.Node | None, path: str) -> int | None:
        """A uint32 such as requests_per_unit; None when invalid (already reported)."""
        if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == _NULL):
            return None
        if isinstance(node, yaml.ScalarNode) and node.tag == _INT:
            number = int(yaml.constructor.SafeConstructor().construct_yaml_int(node))
            if 0 <= number <= _MAX_U32:
                return number
        self.fail(node, path, f"{_describe(node)} is not a valid count; expected a whole number "
                  f"from 0 to {_MAX_U32}")
        return None

    # -- structure -------------------------------------------------------------------------

    def root(self, node: yaml.Node | None) -> list[DescriptorNode]:
        if node is None:
            self.fail(None, "", "config file cannot have empty domain; expected 'domain: <name>'")
            return []
        fields = self.mapping(node, "", ROOT_KEYS)
        if not fields and not isinstance(node, yaml.MappingNode):
            return []
        self.domain = self.string(fields.get("domain"), "domain")
        if not self.domain:
            self.fail(fields.get("domain", node), "domain",
                      "config file cannot have empty domain; expected 'domain: <name>'")
        return self.descriptors(fields.get("descriptors"), "descriptors", self.domain)

    def descriptors(self, node: yaml.Node | None, path: str, parent: str) -> list[DescriptorNode]:
        if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == _NULL):
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, path, f"{_describe(node)} is not a list; expected a list of descriptors")
            return []
        out: list[DescriptorNode] = []
        seen: dict[str, int] = {}
        for i, item in enumerate(node.value):
            where = f"{path}[{i}]"
            desc = self.descriptor(item, where, parent)
            if desc is None:
                continue
            composite = f"{parent}.{desc.final_key}"
            if desc.final_key in seen:
                self.fail(item, where, f"duplicate descriptor composite key '{composite}'; "
                          f"already defined at {path}[{seen[desc.final_key]}], expected each "
                          "key/value once per level")
                continue
            seen[desc.final_key] = i
            out.append(desc)
        return out

    def descriptor(self, node: yaml.Node, path: str, parent: str) -> DescriptorNode | None:
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, path, f"{_describe(node)} is not a descriptor; expected a mapping "
                      "with 'key' and optionally 'value', 'rate_limit', 'descriptors'")
            return None
        f = self.mapping(node, path, DESCRIPTOR_KEYS)
        key = self.string(f.get("key"), f"{path}.key")
        if not key:
            self.fail(f.get("key", node), f"{path}.key", "descriptor has empty key; "
                      "expected 'key: <name>'")
            return None
        value = self.string(f.get("value"), f"{path}.value")
        desc = DescriptorNode(key=key, value=value)
        full = f"{parent}.{desc.final_key}"
        desc.value_to_metric = self.boolean(f.get("value_to_metric"), f"{path}.value_to_metric")
        desc.share_threshold = self.boolean(f.get("share_threshold"), f"{path}.share_threshold")
        if desc.share_threshold and "*" not in desc.final_key:
            self.fail(f["share_threshold"], f"{path}.share_threshold",
                      "share_threshold can only be used with wildcard values (containing '*'), "
                      f"but found key '{desc.final_key}'")
        desc.metadata = self.metadata(f.get("metadata"), f"{path}.metadata")
        flags = {k: self.boolean(f.get(k), f"{path}.{k}")
                 for k in ("shadow_mode", "quota_mode", "detailed_metric")}
        if "rate_limit" in f:
            desc.limit = self.rate_limit(f["rate_limit"], f"{path}.rate_limit", full, desc, flags)
        for child in self.descriptors(f.get("descriptors"), f"{path}.descriptors", full):
            desc.children[child.final_key] = child
            if child.is_wildcard:
                desc.wildcards.append((child.final_key, tuple(child.final_key.split("*")), child))
        return desc

    def rate_limit(self, node: yaml.Node, path: str, full: str, desc: DescriptorNode,
                   flags: dict[str, bool]) -> RateLimit | None:
        f = self.mapping(node, path, RATE_LIMIT_KEYS)
        if not isinstance(node, yaml.MappingNode):
            return None
        unlimited = self.boolean(f.get("unlimited"), f"{path}.unlimited")
        unit_text = self.string(f.get("unit"), f"{path}.unit")
        unit = UNIT_NAMES.get(unit_text.lower())
        ok = True
        if unlimited and unit is not None:
            self.fail(f["unit"], f"{path}.unit", "should not specify rate limit unit when "
                      "unlimited; expected either 'unlimited: true' or a unit")
            ok = False
        elif not unlimited and unit is None:
            shown = f"'{unit_text}' is not a unit" if unit_text else "a unit is required"
            self.fail(f.get("unit", node), f"{path}.unit", f"invalid rate limit unit: {shown}; "
                      f"expected one of {UNITS_TEXT}")
            ok = False
        rpu = self.count(f.get("requests_per_unit"), f"{path}.requests_per_unit")
        if rpu is None and "requests_per_unit" in f:
            ok = False
        if rpu is None and not unlimited and "requests_per_unit" not in f:
            self.fail(node, f"{path}.requests_per_unit", "requests_per_unit is missing; expected "
                      "a whole number (0 refuses every request)")
            ok = False
        name = self.string(f.get("name"), f"{path}.name")
        replaces = self.replaces(f.get("replaces"), f"{path}.replaces", name)
        if not ok or replaces is None:
            return None
        return RateLimit(
            requests_per_unit=rpu or 0, unit=unit or Unit.UNKNOWN, stats_key=full, name=name,
            unlimited=unlimited, replaces=replaces, metadata=desc.metadata, **flags,
        )

    def replaces(self, node: yaml.Node | None, path: str, own: str) -> tuple[str, ...] | None:
        if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == _NULL):
            return ()
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, path, f"{_describe(node)} is not a list; expected a list of "
                      "'- name: <limit name>'")
            return None
        names: list[str] = []
        for i, item in enumerate(node.value):
            fields = self.mapping(item, f"{path}[{i}]", REPLACES_KEYS)
            name = self.string(fields.get("name"), f"{path}[{i}].name")
            if not name:
                self.fail(item, f"{path}[{i}].name", "should not have an empty replaces entry; "
                          "expected the name of another rate_limit")
                return None
            if name == own:
                self.fail(item, f"{path}[{i}].name", "replaces should not contain name of same "
                          f"descriptor ('{name}'); expected the name of another rate_limit")
                return None
            names.append(name)
        return tuple(names)

    def metadata(self, node: yaml.Node | None, path: str) -> dict[str, Any] | None:
        if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == _NULL):
            return None
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, path, f"error parsing metadata: {_describe(node)} is not a mapping")
            return None
        data = yaml.constructor.SafeConstructor().construct_document(node)
        problem = _json_problem(data)
        if problem:
            self.fail(node, path, f"error parsing metadata: {problem}")
            return None
        return dict(data)


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
    if isinstance(node, yaml.ScalarNode):
        return f"{node.value!r}"
    return "nothing"


def _list(words: Iterable[str]) -> str:
    return ", ".join(words)


def parse_file(rule_file: RuleFile) -> tuple[str, list[DescriptorNode], list[RuleError]]:
    """One file → (domain, top-level descriptors, errors)."""
    checker = _FileChecker(rule_file.name)
    try:
        documents = list(yaml.compose_all(rule_file.text, Loader=_Loader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        return "", [], [RuleError(rule_file.name, "", f"error loading config file: {problem}; "
                                  "expected valid YAML", line)]
    documents = [d for d in documents if d is not None] or [None]  # type: ignore[list-item]
    for extra in documents[1:]:
        checker.fail(extra, "", "a rules file holds one domain, but this file has a second "
                     "YAML document; expected one file per domain")
    descriptors = checker.root(documents[0])
    return checker.domain, descriptors, checker.errors


def build_rules(files: Iterable[RuleFile], merge_domains: bool = False) -> RuleSet:
    """Parse and assemble every file; raise RuleSetError listing all problems."""
    files = list(files)
    errors: list[RuleError] = []
    domains: dict[str, DescriptorNode] = {}
    owner: dict[str, str] = {}
    for rule_file in files:
        domain, descriptors, file_errors = parse_file(rule_file)
        errors.extend(file_errors)
        if not domain:
            continue
        if domain in domains and not merge_domains:
            errors.append(RuleError(rule_file.name, "domain", f"duplicate domain '{domain}' in "
                                    f"config file (also in {owner[domain]}); expected each domain "
                                    "in one file, or MERGE_DOMAIN_CONFIG=true"))
            continue
        owner.setdefault(domain, rule_file.name)
        root = domains.setdefault(domain, DescriptorNode(key=domain, value=""))
        _merge_into(root, descriptors, domain, rule_file.name, errors)
    if errors:
        raise RuleSetError(errors)
    digest = hashlib.sha256()
    for rule_file in files:
        digest.update(rule_file.name.encode() + b"\0" + rule_file.text.encode() + b"\0")
    return RuleSet(domains=domains, version=digest.hexdigest()[:12], loaded_at=time.time(),
                   files=tuple(f.name for f in files))


def _merge_into(root: DescriptorNode, descriptors: list[DescriptorNode], domain: str,
                name: str, errors: list[RuleError]) -> None:
    for desc in descriptors:
        if desc.final_key in root.children:
            errors.append(RuleError(name, "descriptors", "duplicate descriptor composite key "
                                    f"'{domain}.{desc.final_key}' across merged files; expected "
                                    "each key/value once per domain"))
            continue
        root.children[desc.final_key] = desc
        if desc.is_wildcard:
            root.wildcards.append((desc.final_key, tuple(desc.final_key.split("*")), desc))


def find_rule_files(path: str, include_dotfiles: bool = False) -> list[str]:
    """Every *.yaml / *.yml below ``path`` (or ``path`` itself), sorted, dot entries skipped."""
    if os.path.isfile(path):
        return [path]
    found: list[str] = []
    for folder, dirs, names in os.walk(path, followlinks=False):
        if not include_dotfiles:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
        dirs.sort()
        for name in sorted(names):
            if name.startswith(".") and not include_dotfiles:
                continue
            if name.endswith((".yaml", ".yml")):
                found.append(os.path.join(folder, name))
    return found


def read_rule_files(path: str, include_dotfiles: bool = False) -> list[RuleFile]:
    """Read the files under ``path``; an unreadable file is a RuleSetError, not a crash."""
    if not os.path.exists(path):
        raise RuleSetError([RuleError(path, "", "rules path does not exist; expected a directory "
                                      "of *.yaml files or one file")])
    out: list[RuleFile] = []
    errors: list[RuleError] = []
    for file_path in find_rule_files(path, include_dotfiles):
        try:
            with open(file_path, encoding="utf-8") as fh:
                out.append(RuleFile(file_path, fh.read()))
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(RuleError(file_path, "", f"cannot read file: {exc}; expected a "
                                    "readable UTF-8 text file"))
    if errors:
        raise RuleSetError(errors)
    return out


def load_rules(path: str, merge_domains: bool = False, include_dotfiles: bool = False) -> RuleSet:
    """Load every rules file under ``path``: the whole set, or RuleSetError with every problem."""
    return build_rules(read_rule_files(path, include_dotfiles), merge_domains)
