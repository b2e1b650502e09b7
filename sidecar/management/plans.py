"""Plans (Free, Pro, Enterprise, …): YAML documents with a top-level ``plans:`` key, found in
the config directory beside the rules, checked and hot-reloaded exactly as the rules are.

    plans:
      free:
        name: Free                      # display name
        max_keys: 2                     # active keys per customer (omit: no cap)
        features: []                    # what the plan unlocks (ext_authz: viva-feature)
        limits:                         # the rules' rate_limit vocabulary, each with a name
          - {name: per_second, unit: second, requests_per_unit: 5,
             algorithm: token_bucket, burst: 10}
          - {name: monthly, unit: month, requests_per_unit: 1000, calendar: true}
        alerts:                         # usage.threshold webhooks (alerts/thresholds.py)
          thresholds: [0.8, 1.0]        # shares of a limit, increasing, each in (0, 1]
          limits: [monthly]             # default: quotas and windows of an hour or more
        price: {currency: EUR, base_fee: "0"}  # billing (billing/config.py)
    meters: {tokens: {aggregation: sum}}  # reported meters besides requests (meters.py)
    time_zone: UTC                      # where calendar quotas turn over (default UTC)

Every key is checked against an allow-list; problems read ``file:line: path: what; expected
…`` and a bad version never replaces a good one. A limit with ``calendar: true`` is a quota
(QUOTA_EXCEEDED), any other a rate limit (RATE_LIMITED). Overrides sent over the admin API
(``"limits": [...]`` on a customer or a key) are checked by the same code: JSON is YAML.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, NamedTuple

import yaml

from sidecar.errors import RuleError, RuleSetError
from sidecar.management.billing.config import check_meters, check_price
from sidecar.management.billing.money import CURRENCY
from sidecar.management.billing.prices import PlanPrice
from sidecar.management.meters import REQUESTS, Meter
from sidecar.model import RATE_ALGORITHMS, Algorithm, RateLimit
from sidecar.rules.checker import listing
from sidecar.rules.extensions import is_concurrency
from sidecar.rules.loader import RuleFile, read_rule_files, rules_version
from sidecar.rules.model import DescriptorNode, DomainOptions
from sidecar.rules.schema import FileChecker
from sidecar.rules.watcher import FileWatcher, LoadStatus
from sidecar.rules.yaml11 import FLOAT, INT, describe, int_value, is_null

log = logging.getLogger("sidecar.plans")

DOMAIN = "viva_keys"  # the engine domain of key verification (counters, metrics)
FAILURES_DOMAIN = "viva_verify_failures"  # failed verifications per client (verify.py)
ROOT_KEYS = ("plans", "time_zone", "meters")
PLAN_KEYS = ("name", "limits", "max_keys", "features", "alerts", "price")
ALERT_KEYS = ("thresholds", "limits")
MAX_THRESHOLDS = 10
# Limits whose count has a period a usage alert can refer to (buckets refill continuously).
WINDOWED = (Algorithm.FIXED_WINDOW, Algorithm.SLIDING_WINDOW, Algorithm.SLIDING_LOG)
ALERT_MIN_WINDOW_MS = 3_600_000  # by default, shorter windows turn over too fast to warn of
LIMIT_KEYS = ("name", "unit", "requests_per_unit", "algorithm", "burst", "window",
              "unit_multiplier", "calendar")
NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
NAME_TEXT = "1 to 64 letters, digits, '_', '.' or '-'"
MAX_LIMITS = 20
MAX_KEYS = 1_000_000


@dataclass(frozen=True, slots=True)
class PlanAlerts:
    """When to raise usage.threshold: shares of a limit (exact fractions of the YAML's
    numbers), for the named limits (None: every quota and every window of an hour or more)."""

    thresholds: tuple[Fraction, ...]
    limits: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """One plan in force: its limits (named RateLimits), features, key cap and alerts."""

    id: str
    name: str
    limits: tuple[RateLimit, ...] = ()
    features: frozenset[str] = frozenset()
    max_keys: int | None = None
    alerts: PlanAlerts | None = None
    price: PlanPrice | None = None  # None: the plan is not billed

    def alerted(self, limit: RateLimit) -> bool:
        """Whether usage.threshold watches ``limit`` (by name: a customer's override of a
        plan limit is watched as the plan's is)."""
        if self.alerts is None:
            return False
        if self.alerts.limits is not None:
            return limit.name in self.alerts.limits
        return limit.algorithm in WINDOWED and (
            limit.calendar or limit.window_length_ms >= ALERT_MIN_WINDOW_MS)


@dataclass(frozen=True)
class PlanSet:
    """Every plan of one successful load."""

    plans: dict[str, Plan]
    version: str
    loaded_at: float
    files: tuple[str, ...] = ()
    time_zone: str = "UTC"
    options: DomainOptions = field(default_factory=DomainOptions)
    meters: dict[str, Meter] = field(default_factory=dict)  # reported ones (not requests)


class _PlanChecker(FileChecker):
    """The rules' checker, walking a plans document instead of a domain."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.meters: dict[str, Meter] = {}
        # A refused request uses up none of a plan's limits (and atomic verification charges
        # all of a key's limits or none).
        self.domain_count_rejected = False

    def plans_root(self, node: yaml.Node | None) -> tuple[dict[str, Plan], str]:
        fields = self.mapping(node, "", ROOT_KEYS) or {}
        options = self.domain_options({k: v for k, v in fields.items() if k == "time_zone"})
        self.meters = check_meters(self, fields.get("meters"), lambda n: bool(NAME.match(n)))
        plans_node = fields.get("plans")
        if not isinstance(plans_node, yaml.MappingNode):
            self.fail(plans_node or node, "plans", "no plans", "a mapping of plan ids to plans")
            return {}, options.time_zone
        out: dict[str, Plan] = {}
        for key_node, value_node in plans_node.value:
            plan_id = self.string(key_node, "plans")
            if not NAME.match(plan_id):
                self.fail(key_node, f"plans.{plan_id}", f"plan id '{plan_id}' is not valid",
                          NAME_TEXT)
                continue
            if plan_id in out:
                self.fail(key_node, f"plans.{plan_id}", f"plan '{plan_id}' appears twice",
                          "each plan once")
                continue
            plan = self.plan(value_node, plan_id)
            if plan is not None:
                out[plan_id] = plan
        return out, options.time_zone

    def plan(self, node: yaml.Node, plan_id: str) -> Plan | None:
        path = f"plans.{plan_id}"
        f = self.mapping(node, path, PLAN_KEYS)
        if f is None:
            return None
        name = self.string(f.get("name"), f"{path}.name") or plan_id
        limits = self.limits(f.get("limits"), f"{path}.limits", plan_id)
        features = self.features(f.get("features"), f"{path}.features")
        max_keys = None
        if not is_null(f.get("max_keys")):
            max_keys = int_value(f["max_keys"])
            if max_keys is None or not 1 <= max_keys <= MAX_KEYS:
                self.fail(f["max_keys"], f"{path}.max_keys",
                          f"{describe(f['max_keys'])} is not a number of keys",
                          f"a whole number from 1 to {MAX_KEYS}, or no max_keys (no cap)")
                max_keys = None
        alerts = self.alerts(f.get("alerts"), f"{path}.alerts", limits)
        price = None if is_null(f.get("price")) else check_price(self, f["price"],
                                                                  f"{path}.price")
        return Plan(plan_id, name, tuple(limits), frozenset(features), max_keys, alerts, price)

    def alerts(self, node: yaml.Node | None, path: str,
               limits: list[RateLimit]) -> PlanAlerts | None:
        if is_null(node):
            return None
        f = self.mapping(node, path, ALERT_KEYS)
        if f is None:
            return None
        thresholds = self.thresholds(f.get("thresholds"), f"{path}.thresholds", node)
        watched = None if is_null(f.get("limits")) else \
            self.alert_limits(f["limits"], f"{path}.limits", limits)
        return PlanAlerts(tuple(thresholds), watched) if thresholds else None

    def thresholds(self, node: yaml.Node | None, path: str,
                   parent: yaml.Node | None) -> list[Fraction]:
        expected = "a list of 1 to 10 shares of a limit, increasing, each above 0 and at most 1"
        if not isinstance(node, yaml.SequenceNode) or not 1 <= len(node.value) <= MAX_THRESHOLDS:
            self.fail(node or parent, path, "no thresholds" if node is None else
                      f"{describe(node)} is not a list of thresholds", f"{expected}, e.g. "
                      "[0.8, 1.0]")
            return []
        out: list[Fraction] = []
        for i, item in enumerate(node.value):
            share = _share(item)
            if share is None or not 0 < share <= 1:
                self.fail(item, f"{path}[{i}]", f"{describe(item)} is not a share of a limit",
                          "a number above 0 and at most 1, e.g. 0.8")
            elif out and share <= out[-1]:
                self.fail(item, f"{path}[{i}]", f"{item.value} does not come after "
                          f"{float(out[-1]):g}", expected)
            else:
                out.append(share)
        return out if len(out) == len(node.value) else []

    def alert_limits(self, node: yaml.Node, path: str,
                     limits: list[RateLimit]) -> tuple[str, ...] | None:
        by_name = {limit.name: limit for limit in limits}
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, path, f"{describe(node)} is not a list of limit names",
                      f"names of the plan's limits ({listing(sorted(by_name)) or 'none'})")
            return None
        out: list[str] = []
        for i, item in enumerate(node.value):
            name = self.string(item, f"{path}[{i}]")
            limit = by_name.get(name)
            if limit is None:
                self.fail(item, f"{path}[{i}]", f"the plan has no limit '{name}'",
                          f"one of {listing(sorted(by_name)) or 'none'}")
            elif limit.algorithm not in WINDOWED:
                self.fail(item, f"{path}[{i}]", f"'{name}' is a {limit.algorithm.value}, "
                          "which refills continuously: its usage has no period to alert on",
                          f"a limit with algorithm {listing([a.value for a in WINDOWED])}")
            else:
                out.append(name)
        return tuple(dict.fromkeys(out))

    def limits(self, node: yaml.Node | None, path: str, scope: str) -> list[RateLimit]:
        if is_null(node):
            return []
        if not isinstance(node, yaml.SequenceNode) or len(node.value) > MAX_LIMITS:
            self.fail(node, path, "not a list of at most 20 limits",
                      "a list of limits like {name: per_second, unit: second, "
                      "requests_per_unit: 10}")
            return []
        out: list[RateLimit] = []
        seen: set[str] = set()
        for i, item in enumerate(node.value):
            limit = self.named_limit(item, f"{path}[{i}]", scope)
            if limit is not None and limit.name in seen:
                self.fail(item, f"{path}[{i}].name", f"limit '{limit.name}' appears twice",
                          "each limit name once per list")
            elif limit is not None:
                seen.add(limit.name)
                out.append(limit)
        return out

    def named_limit(self, node: yaml.Node, path: str, scope: str) -> RateLimit | None:
        errors = len(self.parsed.errors)
        f = self.mapping(node, path, LIMIT_KEYS)
        if f is not None and is_concurrency(f):
            # A verification is one request: it could only read holders, never be one.
            self.fail(f["algorithm"], f"{path}.algorithm",
                      "a plan's limits are rates, and a key verification holds no lease",
                      f"one of {', '.join(RATE_ALGORITHMS)}; concurrency limits belong in "
                      "the rules, held with /v1/leases")
            return None
        if f is None or len(self.parsed.errors) > errors:  # reported once, here
            return None
        name = self.string(f.get("name"), f"{path}.name")
        if not NAME.match(name):
            self.fail(f.get("name", node), f"{path}.name",
                      f"limit name '{name}' is not valid" if name else "limit has no name",
                      NAME_TEXT)
            return None
        full = f"{DOMAIN}.{scope}.{name}"
        flags = {"shadow_mode": False, "quota_mode": False, "detailed_metric": False}
        return self.rate_limit(node, path, full, DescriptorNode(key=name, value=""), flags)

    def features(self, node: yaml.Node | None, path: str) -> list[str]:
        if is_null(node):
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, path, "features is not a list", "a list of feature names")
            return []
        out = []
        for i, item in enumerate(node.value):
            text = self.string(item, f"{path}[{i}]")
            if not NAME.match(text):
                self.fail(item, f"{path}[{i}]", f"feature '{text}' is not valid", NAME_TEXT)
            else:
                out.append(text)
        return out


def _share(node: yaml.Node) -> Fraction | None:
    """A YAML number as an exact fraction (0.8 is 4/5, so 80 % of 5 is exactly 4)."""
    if not isinstance(node, yaml.ScalarNode) or node.tag not in (INT, FLOAT):
        return None
    try:
        return Fraction(str(node.value).replace("_", ""))
    except (ValueError, ZeroDivisionError):
        return None


class ParsedPlans(NamedTuple):
    plans: dict[str, Plan]
    time_zone: str
    meters: dict[str, Meter]
    errors: list[RuleError]


def parse_plans_file(plans_file: RuleFile) -> ParsedPlans:
    """One plans file → its plans, time zone, meters and every problem found in it."""
    checker = _PlanChecker(plans_file.name)
    try:
        documents = [d for d in yaml.compose_all(plans_file.text, Loader=yaml.SafeLoader)
                     if not is_null(d)]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        checker.fail(None, "", f"error loading plans file: {exc}", "valid YAML",
                     line=mark.line + 1 if mark is not None else None)
        return ParsedPlans({}, "UTC", {}, checker.parsed.errors)
    for extra in documents[1:]:
        checker.fail(extra, "", "a second YAML document ('---') in one file",
                     "one plans document per file")
    plans, zone = checker.plans_root(documents[0] if documents else None)
    checker.parsed.errors.sort(key=lambda e: e.line or 0)
    return ParsedPlans(plans, zone, checker.meters, checker.parsed.errors)


def build_plans(files: Iterable[RuleFile]) -> PlanSet:
    """Every plan of ``files``; RuleSetError listing every problem (all or nothing)."""
    files = list(files)
    errors: list[RuleError] = []
    plans: dict[str, Plan] = {}
    owners: dict[str, str] = {}
    zones: set[str] = set()
    meters: dict[str, Meter] = {}
    for plans_file in files:
        found, zone, declared, problems = parse_plans_file(plans_file)
        errors.extend(problems)
        zones.add(zone)
        errors.extend(_add_meters(meters, declared, plans_file.name))
        for plan_id, plan in found.items():
            if plan_id in plans:
                errors.append(RuleError(plans_file.name, f"plans.{plan_id}",
                                        f"plan '{plan_id}' is also in {owners[plan_id]}; "
                                        "expected each plan in one file"))
                continue
            owners[plan_id] = plans_file.name
            plans[plan_id] = plan
    if len(zones) > 1:
        errors.append(RuleError(files[-1].name, "time_zone", f"plans files disagree on "
                                f"time_zone ({listing(sorted(zones))}); expected one"))
    if not files:
        errors.append(RuleError("plans", "", "no plans file found; expected a YAML file with "
                                "a top-level 'plans:' key (see config/plans.yaml)"))
    errors.extend(_check_prices(plans, meters, owners))
    if errors:
        raise RuleSetError(errors)
    zone = zones.pop() if zones else "UTC"
    return PlanSet(plans, rules_version(files), time.time(), tuple(f.name for f in files),
                   zone, DomainOptions(atomic=True, count_rejected=False, time_zone=zone),
                   meters)


def _add_meters(meters: dict[str, Meter], declared: dict[str, Meter],
                file_name: str) -> list[RuleError]:
    errors = []
    for name, meter in declared.items():
        if name in meters:
            errors.append(RuleError(file_name, f"meters.{name}", f"meter '{name}' is declared "
                                    "in another plans file too; expected each meter once"))
        meters[name] = meter
    return errors


def _check_prices(plans: dict[str, Plan], meters: dict[str, Meter],
                  owners: dict[str, str]) -> list[RuleError]:
    """Across files: a price names only known meters, and every priced plan bills in one
    currency (an invoice has one, and a customer may change plans mid-period)."""
    errors = []
    currencies: dict[str, str] = {}
    for plan in plans.values():
        if plan.price is None:
            continue
        path = f"plans.{plan.id}.price"
        for name in plan.price.meters:
            if name != REQUESTS and name not in meters:
                known = ", ".join([REQUESTS, *sorted(meters)])
                errors.append(RuleError(owners[plan.id], f"{path}.meters.{name}",
                                        f"no meter '{name}' is declared; expected one of "
                                        f"{known} (declare it under the top-level 'meters:')"))
        if CURRENCY.match(plan.price.currency):  # else reported with its line already
            currencies.setdefault(plan.price.currency, plan.id)
    if len(currencies) > 1:
        first, *others = sorted(currencies.items(), key=lambda c: c[1])
        for currency, plan_id in others:
            errors.append(RuleError(owners[plan_id], f"plans.{plan_id}.price.currency",
                                    f"{currency} differs from {first[0]} of plan '{first[1]}'; "
                                    "expected one currency for every priced plan"))
    return errors


def load_plans(path: str, include_dotfiles: bool = False) -> PlanSet:
    return build_plans(read_rule_files(path, include_dotfiles, plans=True))


def check_limits(value: Any, scope: str) -> list[RateLimit]:
    """Limit overrides sent as JSON (a list of named limits), checked by the plans' checker;
    RuleSetError names the first problem's path (``limits[1].unit``)."""
    checker = _PlanChecker("limits")
    node = yaml.compose(json.dumps(value), Loader=yaml.SafeLoader)  # JSON is YAML
    limits = checker.limits(node, "limits", scope)
    if checker.parsed.errors:
        raise RuleSetError(checker.parsed.errors)
    return limits


def merge_limits(*layers: Iterable[RateLimit]) -> tuple[RateLimit, ...]:
    """Named limits, later layers winning by name (plan, then customer, then key); a new name
    is added after the others."""
    merged: dict[str, RateLimit] = {}
    for layer in layers:
        for limit in layer:
            merged[limit.name] = limit
    return tuple(merged.values())


def scoped(limit: RateLimit, scope: str) -> RateLimit:
    """``limit`` with the stats key of ``scope`` (bounded metric labels: plan and name)."""
    return replace(limit, stats_key=f"{DOMAIN}.{scope}.{limit.name}")


def is_quota(limit: RateLimit) -> bool:
    return limit.calendar


class PlansManager(FileWatcher):
    """Keeps ``current`` on the newest valid plans, as RulesManager does for the rules."""

    def __init__(self, path: str, include_dotfiles: bool = False, poll_interval: float = 5.0,
                 on_change: Callable[[PlanSet], None] | None = None,
                 on_result: Callable[[bool], None] | None = None) -> None:
        super().__init__(path, include_dotfiles, poll_interval)
        self.current: PlanSet | None = None
        self.status = LoadStatus()
        self.last_exception: RuleSetError | None = None
        self.on_change = on_change
        self.on_result = on_result
        self._attempted = ""

    def load(self) -> bool:
        self.status.last_attempt_at = time.time()
        self._seen = self._fingerprint()
        version = ""
        try:
            files = read_rule_files(self.path, self.include_dotfiles, plans=True)
            version = rules_version(files)
            if version == self._attempted:
                return self.last_exception is None
            plans = build_plans(files)
        except RuleSetError as exc:
            self._attempted = version
            self._failed(exc)
            return False
        self._attempted = version
        self.last_exception, self.status.last_error = None, ""
        if self.current is None or plans.version != self.current.version:
            self.current = plans
            self.status.successes += 1
            log.warning("loaded plans version %s: %s", plans.version, ", ".join(plans.plans))
            if self.on_change:
                self.on_change(plans)
            if self.on_result:
                self.on_result(True)
        return True

    def _failed(self, exc: RuleSetError) -> None:
        self.last_exception = exc
        self.status.errors += 1
        self.status.last_error = str(exc)
        self.status.last_error_at = time.time()
        log.error("Error loading new plans, keeping the previous ones: %s", exc)
        if self.on_result:
            self.on_result(False)


