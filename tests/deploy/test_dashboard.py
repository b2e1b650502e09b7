"""deploy/grafana/viva-ratelimit.json: a well-formed dashboard whose every query parses as
PromQL (promql-parser) and names only metrics, and labels, that a running sidecar exposes."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
import promql_parser
import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from tests.support import ROOT
from tests.support.servers import SidecarProcess

DASHBOARD = ROOT / "deploy" / "grafana" / "viva-ratelimit.json"
# What Grafana puts in place of its variables before the query reaches Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h",
                     "$domain": ".*", "${domain}": ".*"}
# Labels Prometheus adds when it scrapes.
SCRAPE_LABELS = {"instance", "job", "namespace", "pod"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def queries(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in panels(dashboard) for t in p["targets"]]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            # label_values(<metric>, <label>) is Grafana's, not PromQL: keep the selector.
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", text)
            exprs.append(f"count by ({match.group(2)}) ({match.group(1)})" if match else text)
    return exprs


def parse(expr: str) -> Any:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"an unknown Grafana variable in {expr}"
    return promql_parser.parse(expr)


def selectors(node: Any) -> list[Any]:
    found: list[Any] = []
    promql_parser.walk(node, lambda n: found.append(n)
                       if isinstance(n, promql_parser.VectorSelector) else None)
    return found


def label_uses(node: Any) -> list[tuple[str, str]]:
    """(metric, label) for every `by (...)` label and every matcher, under their selectors."""
    uses: list[tuple[str, str]] = []

    def visit(n: Any) -> None:
        if isinstance(n, promql_parser.AggregateExpr) and n.modifier is not None:
            for selector in selectors(n.expr):
                uses.extend((str(selector.name), label) for label in n.modifier.labels)
        if isinstance(n, promql_parser.VectorSelector):
            uses.extend((str(n.name), m.name) for m in n.matchers.matchers
                        if m.name != "__name__")

    promql_parser.walk(node, visit)
    return uses


def test_dashboard_is_well_formed(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "domain"} <= variables
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
    for panel in panels(dashboard):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_queries_are_promql(dashboard: dict[str, Any]) -> None:
    for expr in queries(dashboard):
        assert selectors(parse(expr)), f"no metric in {expr}"


def test_required_views(dashboard: dict[str, Any]) -> None:
    """Decisions by domain, over-limit ratio, latency percentiles, errors, reloads."""
    text = "\n".join(queries(dashboard))
    for kind in ("total_hits", "over_limit", "within_limit", "near_limit", "shadow_mode"):
        assert f"sum by (domain) (rate(ratelimit_service_rate_limit_{kind}_total" in text
    assert re.search(r"over_limit_total[^/]+\)\s*/\s*sum by \(domain\) \(rate\("
                     r"ratelimit_service_rate_limit_total_hits_total", text)
    for q in ("0.5", "0.9", "0.99"):
        assert f"histogram_quantile({q}, sum by (le" in text
    assert "sum by (err_type) (rate(ratelimit_service_should_rate_limit_error_total" in text
    for metric in ("config_load_success_total", "config_load_error_total",
                   "viva_ratelimit_config_info"):
        assert metric in text


# --- against a running sidecar ------------------------------------------------------------

def call(stub: Any, domain: str, entries: list[tuple[str, str]], hits: int = 0) -> None:
    descriptor = ratelimit_pb2.RateLimitDescriptor(
        entries=[ratelimit_pb2.RateLimitDescriptor.Entry(key=k, value=v) for k, v in entries])
    request = rls_pb2.RateLimitRequest(domain=domain, descriptors=[descriptor],
                                       hits_addend=hits)
    try:
        stub.ShouldRateLimit(request, timeout=5)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc


@pytest.fixture(scope="module")
def exposition(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """/metrics of a real sidecar on the example rules after traffic of every kind."""
    sidecar = SidecarProcess(ROOT / "config").start()
    try:
        with grpc.insecure_channel(sidecar.grpc_address) as channel:
            stub = rls_pb2_grpc.RateLimitServiceStub(channel)
            for _ in range(4):  # 3 per minute: within, near, then over
                call(stub, "example", [("path", "/slow")])
            call(stub, "example", [("header_match", "beta")], hits=10)  # shadow mode
            call(stub, "no-such-domain", [("path", "/")])  # domain not found
            call(stub, "", [("path", "/")])  # an error (INVALID_ARGUMENT)
        with urllib.request.urlopen(f"{sidecar.http_url}/metrics", timeout=5) as response:
            yield response.read().decode()
    finally:
        sidecar.stop()


def exposed(text: str) -> dict[str, set[str]]:
    """Sample name → its label names, for every sample in the exposition."""
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return samples


def test_every_metric_exists(dashboard: dict[str, Any], exposition: str) -> None:
    samples = exposed(exposition)
    used = {s.name for expr in queries(dashboard) for s in selectors(parse(expr))}
    assert used, "no metric found in the dashboard"
    absent = sorted(used - samples.keys())
    assert not absent, f"the dashboard queries metrics the sidecar does not expose: {absent}"


def test_every_label_exists(dashboard: dict[str, Any], exposition: str) -> None:
    samples = exposed(exposition)
    for expr in queries(dashboard):
        for metric, label in label_uses(parse(expr)):
            assert label in samples.get(metric, set()) | SCRAPE_LABELS, \
                f"{metric} has no label {label!r} (query: {expr})"

