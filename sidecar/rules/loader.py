"""A rules directory → RuleSet: find the files, check each (schema.py), assemble the domains.

A load is all or nothing: RuleSetError carries every problem of every file, each reading
``<file>:<line>: <path in file>: <what is wrong>; expected <what is allowed>``.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterable

from sidecar.errors import RuleError, RuleSetError
from sidecar.rules.model import DescriptorNode, DomainOptions, RuleSet
from sidecar.rules.schema import ParsedFile, RuleFile, add_child, parse_file

__all__ = [
    "RuleFile",
    "build_rules",
    "find_rule_files",
    "is_plans_document",
    "load_rules",
    "read_rule_files",
    "rules_version",
]


# A top-level ``plans:`` key marks a file of full mode's plans (sidecar/management/plans):
# they live in the same directory as the rules, and each loader reads only its own kind.
_PLANS_KEY = re.compile(r"^(?:plans|'plans'|\"plans\")[ \t]*:", re.MULTILINE)


def is_plans_document(text: str) -> bool:
    """Whether a YAML file is a plans document (a top-level ``plans:`` key), not rules."""
    return _PLANS_KEY.search(text) is not None


def build_rules(files: Iterable[RuleFile], merge_domains: bool = False) -> RuleSet:
    """Parse and assemble every file; raise RuleSetError listing all problems."""
    files = list(files)
    errors: list[RuleError] = []
    domains: dict[str, DescriptorNode] = {}
    options: dict[str, DomainOptions] = {}
    owners: dict[tuple[str, ...], str] = {}  # (domain,) or (domain, key) -> first file with it
    for rule_file in files:
        parsed = parse_file(rule_file)
        errors.extend(parsed.errors)
        if not parsed.domain:
            continue
        if parsed.domain in domains and not merge_domains:
            errors.append(_duplicate_domain(parsed, owners[(parsed.domain,)]))
            continue
        owners.setdefault((parsed.domain,), parsed.name)
        first = options.setdefault(parsed.domain, parsed.options)
        if first != parsed.options:
            errors.append(_conflicting_options(parsed, owners[(parsed.domain,)]))
        root = domains.setdefault(parsed.domain, DescriptorNode(key=parsed.domain, value=""))
        _merge_into(root, parsed, owners, errors)
    if errors:
        raise RuleSetError(errors)
    return RuleSet(
        domains=domains,
        version=rules_version(files),
        loaded_at=time.time(),
        files=tuple(f.name for f in files),
        options=options,
    )


def _conflicting_options(parsed: ParsedFile, owner: str) -> RuleError:
    return RuleError(
        parsed.name,
        "domain",
        f"domain '{parsed.domain}' is merged with {owner} but sets different atomic, "
        "count_rejected or time_zone; expected the same domain options in every merged file",
        parsed.domain_line,
    )


def _duplicate_domain(parsed: ParsedFile, owner: str) -> RuleError:
    return RuleError(
        parsed.name,
        "domain",
        f"duplicate domain '{parsed.domain}' in config file "
        f"(also in {owner}); expected each domain in one file, or "
        "MERGE_DOMAIN_CONFIG=true to merge them",
        parsed.domain_line,
    )


def _merge_into(
    root: DescriptorNode,
    parsed: ParsedFile,
    owners: dict[tuple[str, ...], str],
    errors: list[RuleError],
) -> None:
    for placed in parsed.descriptors:
        owner_key = (parsed.domain, placed.node.final_key)
        if placed.node.final_key in root.children:
            errors.append(
                RuleError(
                    parsed.name,
                    placed.path,
                    "duplicate descriptor composite key "
                    f"'{'.'.join(owner_key)}' (also in {owners[owner_key]}); expected each "
                    "top-level key/value once per domain across merged files",
                    placed.line,
                )
            )
            continue
        owners[owner_key] = parsed.name
        add_child(root, placed.node)


def rules_version(files: list[RuleFile]) -> str:
    """A short hash of every file's name and text: equal versions load the same rules."""
    digest = hashlib.sha256()
    for rule_file in files:
        digest.update(rule_file.name.encode() + b"\0" + rule_file.text.encode() + b"\0")
    return digest.hexdigest()[:12]


def find_rule_files(path: str, include_dotfiles: bool = False) -> list[str]:
    """Every *.yaml / *.yml below ``path`` (or ``path`` itself), sorted, dot entries skipped.

    Dot entries are what a Kubernetes ConfigMap mount adds (``..data``, ``..2026_…``): reading
    them would load every domain twice.
    """
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


def read_rule_files(path: str, include_dotfiles: bool = False,
                    plans: bool = False) -> list[RuleFile]:
    """Read the rules files under ``path`` (with ``plans``: the plans files instead); an
    unreadable file is a RuleSetError, not a crash."""
    if not os.path.exists(path):
        raise RuleSetError(
            [
                RuleError(
                    path,
                    "",
                    "rules path does not exist; expected a directory of *.yaml files or one file",
                )
            ]
        )
    out: list[RuleFile] = []
    errors: list[RuleError] = []
    for file_path in find_rule_files(path, include_dotfiles):
        try:
            with open(file_path, encoding="utf-8") as fh:
                text = fh.read()
            if is_plans_document(text) == plans:
                out.append(RuleFile(file_path, text))
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(
                RuleError(
                    file_path, "", f"cannot read file: {exc}; expected a readable UTF-8 text file"
                )
            )
    if errors:
        raise RuleSetError(errors)
    return out


def load_rules(path: str, merge_domains: bool = False, include_dotfiles: bool = False) -> RuleSet:
    """Load every rules file under ``path``: the whole set, or RuleSetError with every problem."""
    return build_rules(read_rule_files(path, include_dotfiles), merge_domains)
