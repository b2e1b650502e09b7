"""Every Prometheus metric the sidecar exposes, declared once, in one registry per process.

Per-rule counters keep the reference's Prometheus names and labels (domain, key1, key2) so its
dashboards and alerts work unchanged. Labels carry descriptor values only where a rule opted in
(detailed_metric / value_to_metric) or Envoy sent a limit override, as in the reference.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from sidecar import __version__

CONTENT_TYPE = CONTENT_TYPE_LATEST
MAX_RULE_SERIES = 10_000  # distinct (domain, stats key) label sets per process
OVERFLOW_LABEL = "__overflow__"
MAX_UNKNOWN_DOMAINS = 1_000
_BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                    0.25, 0.5, 1.0)


class Metrics:
    """The registry and its metrics; also the engine's RuleStats sink."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        rule = ("domain", "key1", "key2")
        self.total_hits = Counter("ratelimit_service_rate_limit_total_hits",
                                  "Hits counted against a rule", rule, registry=r)
        self.over_limit = Counter("ratelimit_service_rate_limit_over_limit",
                                  "Hits over a rule's limit", rule, registry=r)
        self.near_limit = Counter("ratelimit_service_rate_limit_near_limit",
                                  "Hits above NEAR_LIMIT_RATIO of a rule's limit", rule,
                                  registry=r)
        self.within_limit = Counter("ratelimit_service_rate_limit_within_limit",
                                    "Hits within a rule's limit", rule, registry=r)
        self.shadow_mode = Counter("ratelimit_service_rate_limit_shadow_mode",
                                   "Over-limit hits allowed by the rule's shadow_mode", rule,
                                   registry=r)
        # The reference's over_limit_with_local_cache stat (it has no Prometheus mapping).
        self.over_limit_local_cache = Counter(
            "ratelimit_service_rate_limit_over_limit_with_local_cache",
            "Over-limit hits answered from the local over-limit cache, without Redis", rule,
            registry=r)
        self.domain_not_found_total = Counter("ratelimit_service_rate_limit_domain_not_found",
                                              "Descriptors for a domain with no rules",
                                              ("domain",), registry=r)
        self.global_shadow_mode = Counter("ratelimit_service_global_shadow_mode",
                                          "Requests allowed only because SHADOW_MODE is on",
                                          registry=r)
        self.errors = Counter("ratelimit_service_should_rate_limit_error",
                              "Requests answered with an error", ("err_type",), registry=r)
        self.requests = Counter("ratelimit_service_total_requests", "Requests received",
                                ("grpc_method",), registry=r)
        self.response_time = Histogram("ratelimit_service_response_time_seconds",
                                       "Time to answer a request", ("grpc_method",),
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.config_load_success = Counter("ratelimit_service_config_load_success",
                                           "Successful rules loads", registry=r)
        self.config_load_error = Counter("ratelimit_service_config_load_error",
                                         "Failed rules loads (previous rules kept)", registry=r)
        # With worker processes (PROMETHEUS_MULTIPROC_DIR set) gauges say how to combine the
        # workers' values; without, prometheus-client ignores multiprocess_mode.
        self.config_info = Gauge("viva_ratelimit_config_info",
                                 "The active rules version (value 1)", ("version",), registry=r,
                                 multiprocess_mode="livemax")
        self.config_loaded_at = Gauge("viva_ratelimit_config_last_load_timestamp_seconds",
                                      "When the active rules were loaded", registry=r,
                                      multiprocess_mode="livemax")
        self.build_info = Gauge("viva_ratelimit_build_info", "Version of the sidecar",
                                ("version",), registry=r, multiprocess_mode="livemax")
        self.build_info.labels(__version__).set(1)
        self.in_flight = Gauge("viva_ratelimit_in_flight_requests",
                               "Requests being answered now", ("transport",), registry=r,
                               multiprocess_mode="livesum")
        self._version = ""
        self.series_folded = Counter("viva_ratelimit_metric_series_folded",
                                     "Per-rule hits counted under the overflow series because "
                                     "the series limit was reached", registry=r)
        self.store_latency = Histogram("viva_ratelimit_store_latency_seconds",
                                       "Time of one counter-store round trip", ("store", "op"),
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.store_errors = Counter("viva_ratelimit_store_errors",
                                    "Counter-store calls that failed", ("store", "kind"),
                                    registry=r)
        # Store failures: breakers (0 closed, 1 half-open, 2 open) and policy decisions.
        self.breaker_state = Gauge("viva_ratelimit_store_breaker_state",
                                   "Circuit breaker per Redis endpoint: 0 closed, 1 half-open "
                                   "(probing), 2 open (failing fast)", ("endpoint",),
                                   registry=r, multiprocess_mode="livemax")
        self.breaker_opened = Counter("viva_ratelimit_store_breaker_opened",
                                      "Times a Redis endpoint's circuit breaker opened",
                                      ("endpoint",), registry=r)
        self.policy_decisions = Counter("viva_ratelimit_failure_policy_decisions",
                                        "Requests answered by the failure policy because the "
                                        "counter store failed", ("domain", "policy"),
                                        registry=r)
        self.local_cache_hits = Counter("viva_ratelimit_local_cache_hits",
                                        "Descriptors answered over-limit from the local cache",
                                        registry=r)
        # Concurrency limits (limiter/leases.py), per rule with the rule counters' labels.
        self.leases_active_gauge = Gauge(
            "viva_ratelimit_leases_active", "Leases held now per concurrency rule, as this "
            "sidecar knows them: those it granted or renewed, until released through it or "
            "expired", rule, registry=r, multiprocess_mode="livesum")
        self.lease_acquires = Counter(
            "viva_ratelimit_lease_acquires", "Lease acquisitions per concurrency rule, by "
            "outcome: allowed, refused (max leases held there, or on another descriptor of "
            "the same lease), shadow (allowed over max by shadow_mode)", (*rule, "outcome"),
            registry=r)
        self._children: dict[tuple[str, str], tuple[Counter, ...]] = {}
        self._lease_labels: dict[tuple[str, str], tuple[str, str, str]] = {}
        self.max_series = MAX_RULE_SERIES
        self._unknown_domains: set[str] = set()
        self._sources: list[Callable[[], None]] = []

    def record(self, domain: str, stats_key: str, total: int, over: int, near: int,
               within: int, shadow: int) -> None:
        bound = self._children.get((domain, stats_key))
        if bound is None:
            bound = self._bind(domain, stats_key)
        if total:
            bound[0].inc(total)
        if over:
            bound[1].inc(over)
        if near:
            bound[2].inc(near)
        if within:
            bound[3].inc(within)
        if shadow:
            bound[4].inc(shadow)

    def _bind(self, domain: str, stats_key: str) -> tuple[Counter, ...]:
        labels = _rule_labels(domain, stats_key)
        if len(self._children) >= self.max_series:
            # Values in labels (detailed_metric, value_to_metric, Envoy's limit overrides) could
            # otherwise grow the series without bound (the reference's issues #275, #1132):
            # past the cap, new series share one overflow series per domain.
            self.series_folded.inc()
            labels = (domain, OVERFLOW_LABEL, "")
            return tuple(m.labels(*labels) for m in self._rule_metrics())
        bound = tuple(m.labels(*labels) for m in self._rule_metrics())
        self._children[(domain, stats_key)] = bound
        return bound

    def _rule_metrics(self) -> tuple[Counter, ...]:
        return (self.total_hits, self.over_limit, self.near_limit, self.within_limit,
                self.shadow_mode, self.over_limit_local_cache)

    def lease_acquired(self, domain: str, stats_key: str, outcome: str) -> None:
        self.lease_acquires.labels(*self._lease_rule(domain, stats_key), outcome).inc()

    def leases_active(self, domain: str, stats_key: str, count: int) -> None:
        self.leases_active_gauge.labels(*self._lease_rule(domain, stats_key)).set(count)

    def _lease_rule(self, domain: str, stats_key: str) -> tuple[str, str, str]:
        """The labels of a concurrency rule, capped as the rule counters' are."""
        labels = self._lease_labels.get((domain, stats_key))
        if labels is None:
            if len(self._lease_labels) >= self.max_series:
                self.series_folded.inc()
                return (domain, OVERFLOW_LABEL, "")
            labels = self._lease_labels[(domain, stats_key)] = _rule_labels(domain, stats_key)
        return labels

    def local_cache_hit(self, domain: str, stats_key: str, hits: int) -> None:
        """A descriptor answered from the local over-limit cache (its over_limit is recorded
        by ``record`` as for any refusal)."""
        self.over_limit_with_local_cache(domain, stats_key, hits)
        self.local_cache_hits.inc()

    def over_limit_with_local_cache(self, domain: str, stats_key: str, hits: int) -> None:
        bound = self._children.get((domain, stats_key)) or self._bind(domain, stats_key)
        if hits:
            bound[5].inc(hits)

    def local_cache_hits_counted(self, descriptors: int) -> None:
        """``descriptors`` answered from the local cache, counted elsewhere (natively)."""
        self.local_cache_hits.inc(descriptors)

    def breaker_changed(self, endpoint: str, state: str) -> None:
        self.breaker_state.labels(endpoint).set(_BREAKER_STATES.get(state, 0))
        if state == "open":
            self.breaker_opened.labels(endpoint).inc()

    def policy_decision(self, domain: str, policy: str, count: int = 1) -> None:
        self.policy_decisions.labels(domain, policy).inc(count)

    def domain_not_found(self, domain: str) -> None:
        # The domain comes from the caller: bound the label values it can create.
        if domain not in self._unknown_domains:
            if len(self._unknown_domains) >= MAX_UNKNOWN_DOMAINS:
                domain = OVERFLOW_LABEL
            else:
                self._unknown_domains.add(domain)
        self.domain_not_found_total.labels(domain).inc()

    def global_shadow(self) -> None:
        self.global_shadow_mode.inc()

    def rules_loaded(self, ok: bool, version: str = "", loaded_at: float = 0.0) -> None:
        if not ok:
            self.config_load_error.inc()
            return
        self.config_load_success.inc()
        if self._version and self._version != version:
            # 0 before clearing: with workers, the value stays in this process' file.
            self.config_info.labels(self._version).set(0)
            self.config_info.remove(self._version)
        self._version = version
        self.config_info.labels(version).set(1)
        self.config_loaded_at.set(loaded_at)

    def add_source(self, export: Callable[[], None]) -> None:
        """``export`` adds counts kept elsewhere (the native engine's and wire's) into these
        metrics; it runs before every exposition and on ``export_sources``."""
        self._sources.append(export)

    def export_sources(self) -> None:
        for export in self._sources:
            export()

    def exposition(self) -> bytes:
        """This process' metrics, or, with worker processes, every worker's combined."""
        self.export_sources()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            combined = CollectorRegistry()
            multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
            return generate_latest(combined)
        return generate_latest(self.registry)


def add_observations(child: Any, buckets: Sequence[int], total: float) -> None:
    """Observations counted elsewhere, added to one histogram child in bulk: ``buckets`` per
    upper bound of the histogram (not cumulative, the last one above them all), ``total`` their
    sum. prometheus-client has no public call for this; its child keeps exactly these values
    (what ``observe`` increments), so they are incremented the same way.
    (tests/transports/test_observability.py checks the exposition this gives.)"""
    if len(buckets) != len(child._buckets):
        raise ValueError(f"{len(buckets)} buckets for a histogram of {len(child._buckets)}")
    for value, count in zip(child._buckets, buckets, strict=True):
        if count:
            value.inc(count)
    if total:
        child._sum.inc(total)


def _rule_labels(domain: str, stats_key: str) -> tuple[str, str, str]:
    """(domain, key1, key2): the reference's labels of a rule, from its stats key."""
    rest = stats_key[len(domain) + 1:] if stats_key.startswith(domain + ".") else stats_key
    key1, _, key2 = rest.partition(".")
    return (domain, key1, key2)
