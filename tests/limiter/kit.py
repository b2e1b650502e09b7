"""Shared pieces for engine-level tests: rules from YAML text, descriptors, a recording stats sink.

EXAMPLE_RULES is this project's own fixture for the reference's Envoy scripts (domain ``rl``):
TC-34 (trigger), TC-35 (shadow), TC-36 (replaces), TC-38/39 (quota).
"""

from __future__ import annotations

import textwrap
from collections import Counter, defaultdict
from typing import Any

from sidecar.model import Descriptor, Unit
from sidecar.rules.loader import RuleFile, build_rules
from sidecar.rules.model import RuleSet
from sidecar.transports.rls_proto import envoy_override

BASIC_RULES = """
domain: test-domain
descriptors:
  - key: key1
    value: value1
    descriptors:
      - key: subkey1
        rate_limit: {unit: second, requests_per_unit: 5}
      - key: subkey1
        value: subvalue1
        rate_limit: {unit: second, requests_per_unit: 10}
  - key: key2
    rate_limit: {unit: minute, requests_per_unit: 20}
  - key: key2
    value: value2
    rate_limit: {unit: minute, requests_per_unit: 30}
  - key: key2
    value: value3
  - key: key3
    rate_limit: {unit: hour, requests_per_unit: 10}
  - key: key4
    rate_limit: {unit: day, requests_per_unit: 1, name: key4_rate_limit}
  - key: key6
    rate_limit: {unlimited: true}
  - key: three
    rate_limit: {unit: minute, requests_per_unit: 3}
  - key: shadowed
    shadow_mode: true
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: quota_a
    quota_mode: true
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: quota_b
    quota_mode: true
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: files
    value: files/*
    share_threshold: true
    rate_limit: {unit: minute, requests_per_unit: 100}
"""

EXAMPLE_RULES = """
domain: rl
descriptors:
  - key: category
    value: account
    rate_limit:
      replaces: [{name: bkthomps}, {name: fake_name}]
      unit: minute
      requests_per_unit: 4
  - key: source_cluster
    value: proxy
    descriptors:
      - key: destination_cluster
        value: bkthomps
        rate_limit:
          replaces: [{name: bkthomps}]
          unit: minute
          requests_per_unit: 2
      - key: destination_cluster
        value: mock
        rate_limit: {unit: minute, requests_per_unit: 1}
      - key: destination_cluster
        value: override
        rate_limit:
          replaces: [{name: banned_limit}]
          unit: minute
          requests_per_unit: 2
      - key: destination_cluster
        value: fake
        rate_limit: {name: fake_name, unit: minute, requests_per_unit: 2}
  - key: foo
    rate_limit: {unit: minute, requests_per_unit: 2}
    descriptors:
      - key: bar
        rate_limit: {unit: minute, requests_per_unit: 3}
      - key: bar
        value: bkthomps
        rate_limit: {name: bkthomps, unit: minute, requests_per_unit: 1}
      - key: bar
        value: banned
        rate_limit: {name: banned_limit, unit: minute, requests_per_unit: 0}
      - key: baz
        value: not-so-shady
        rate_limit: {unit: minute, requests_per_unit: 3}
      - key: baz
        value: shady
        shadow_mode: true
        rate_limit: {unit: minute, requests_per_unit: 3}
  - key: service
    value: service_1
    quota_mode: true
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: service
    value: service_2
    quota_mode: true
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: qux
    rate_limit: {unlimited: true, name: qux_unlimited}
"""


def make_rules(*texts: str) -> RuleSet:
    """A RuleSet from YAML texts (one file each)."""
    files = [RuleFile(f"rules{i}.yaml", textwrap.dedent(t)) for i, t in enumerate(texts)]
    return build_rules(files)


def desc(*pairs: tuple[str, str], hits: int | None = None,
         limit: tuple[int, Unit] | None = None, domain: str = "test-domain") -> Descriptor:
    """One request descriptor: ``desc(("k", "v"), ("k2", "v2"), hits=0)``; ``limit`` is Envoy's
    override (requests_per_unit, unit), made into a RateLimit as the RLS adapter makes it for a
    request to ``domain``."""
    entries = tuple(pairs)
    explicit = envoy_override(domain, entries, *limit) if limit is not None else None
    return Descriptor(entries, hits, explicit)


class RecordingStats:
    """A RuleStats sink that keeps every counter, keyed by stats key."""

    def __init__(self) -> None:
        self.rules: dict[str, Counter[str]] = defaultdict(Counter)
        self.domains: dict[str, str] = {}
        self.not_found: Counter[str] = Counter()
        self.global_shadow_count = 0

    def record(self, domain: str, stats_key: str, total: int, over: int, near: int,
               within: int, shadow: int) -> None:
        self.domains[stats_key] = domain
        self.rules[stats_key].update(total=total, over=over, near=near, within=within,
                                     shadow=shadow)

    def domain_not_found(self, domain: str) -> None:
        self.not_found[domain] += 1

    def global_shadow(self) -> None:
        self.global_shadow_count += 1

    def of(self, stats_key: str) -> dict[str, Any]:
        """The counters of one stats key, zeros included."""
        c = self.rules[stats_key]
        return {k: c[k] for k in ("total", "over", "near", "within", "shadow")}
