"""charts/viva-rate-limiter beyond Istio: the brief's install line, full mode, the Redis Cluster
of the release, autoscaling and disruption budgets, and the monitoring objects.

Every `helm install` line of the READMEs is rendered (`helm template`, for a cluster that
serves Istio's and the Prometheus Operator's APIs), validated (tests/deploy/kube.py: Kubernetes
schemas, CRD schemas) and linted, so the documentation cannot drift from the chart.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from tests.deploy.kube import (
    CHART,
    ISTIO_API,
    KUBE_VERSIONS,
    MONITORING_APIS,
    Doc,
    assert_valid_kubernetes,
    by_kind,
    env_of,
    helm_template,
    named,
    pod_spec,
    ratelimit_container,
    ratelimit_deployments,
    run_helm,
)
from tests.deploy.test_dashboard import exposed, label_uses, selectors
from tests.deploy.tools import require_tool
from tests.support import ROOT
from tests.support.servers import SidecarProcess

BRIEF = ("helm install viva-rate-limiter ./charts/viva-rate-limiter --set mode=full "
         "--set replicas=3 --set redis.cluster.enabled=true")
DOCUMENTED = (ROOT / "README.md", CHART / "README.md", ROOT / "docs" / "gateways.md")
ALL_APIS = (ISTIO_API, *MONITORING_APIS)
DASHBOARD = ROOT / "deploy" / "grafana" / "viva-ratelimit.json"

# Combinations of values beyond test_manifests.VARIANTS, rendered with every API served.
VARIANTS: dict[str, Doc] = {
    "full-existing-database": {"mode": "full", "database": {"existingSecret": "viva-db",
                                                            "secretKey": "dsn"},
                               "webhooks": {"existingSecret": "viva-sealing"}},
    "full-database-url": {"mode": "full",
                          "database": {"url": "postgresql://viva:pw@postgres:5432/viva"},
                          "ingress": {"className": "nginx", "host": "rates.example.com",
                                      "tls": [{"secretName": "rates-tls",
                                               "hosts": ["rates.example.com"]}]}},
    "full-without-ingress": {"mode": "full", "ingress": {"enabled": False}},
    "cluster-existing-nodes": {"redis": {"cluster": {
        "enabled": True, "nodes": ["redis-a:6379", "redis-b:6379", "redis-c:6379"]}}},
    "cluster-auth-ephemeral": {"redis": {"auth": {"password": "s3cret"}, "cluster": {
        "enabled": True, "masters": 4, "replicasPerMaster": 2,
        "persistence": {"enabled": False}}}},
    "autoscaling": {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 12}},
    "sidecar-autoscaling": {"placement": "sidecar", "autoscaling": {"enabled": True}},
    "sidecar-monitoring": {"placement": "sidecar", "redis": {"cluster": {"enabled": True}}},
    "monitoring-off": {"monitoring": {"serviceMonitor": {"enabled": False},
                                      "prometheusRule": {"enabled": False},
                                      "grafanaDashboard": {"enabled": False}}},
}


@pytest.fixture(scope="module")
def helm() -> str:
    return require_tool("helm")


@pytest.fixture(scope="module")
def render(helm: str, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], list[Doc]]:
    folder = tmp_path_factory.mktemp("chart-values")

    @cache
    def _render(variant: str) -> list[Doc]:
        values = folder / f"{variant}.yaml"
        values.write_text(yaml.safe_dump(VARIANTS[variant]))
        return helm_template(helm, "-f", str(values), apis=ALL_APIS)

    return _render


def documented_installs() -> list[list[str]]:
    """Every `helm install` command in the READMEs' sh blocks, continuation lines joined."""
    commands = []
    for path in DOCUMENTED:
        for block in re.findall(r"```sh\n(.*?)```", path.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                if line.strip().startswith("helm install"):
                    commands.append(shlex.split(line, comments=True))
    return commands


def render_install(helm: str, argv: list[str], apis: tuple[str, ...] = ALL_APIS) -> list[Doc]:
    """`helm install NAME CHART …` as `helm template` (run where the READMEs say: the root)."""
    assert argv[:2] == ["helm", "install"], argv
    flags = [f"--api-versions={api}" for api in apis]
    out = run_helm(helm, "template", *argv[2:], "--kube-version", KUBE_VERSIONS[-1], *flags,
                   cwd=ROOT)
    assert out.returncode == 0, f"{shlex.join(argv)}\n{out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


# --- every documented combination ----------------------------------------------------------

def test_the_brief_line_is_documented_verbatim() -> None:
    assert BRIEF in (ROOT / "README.md").read_text()
    assert shlex.split(BRIEF) in documented_installs()


@pytest.mark.parametrize("argv", documented_installs(), ids=shlex.join)
def test_documented_installs_render_validate_and_lint(helm: str, argv: list[str]) -> None:
    assert_valid_kubernetes(render_install(helm, argv))
    chart = next(a for a in argv[3:] if not a.startswith("-"))
    sets = [a for i, a in enumerate(argv) if i > 0 and argv[i - 1].startswith("--set")]
    lint = [w for s in sets for w in ("--set", s)]
    out = run_helm(helm, "lint", "--strict", chart, *lint, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("variant", VARIANTS)
def test_combinations_render_validate_and_lint(render: Callable[[str], list[Doc]], helm: str,
                                               variant: str, tmp_path: Path) -> None:
    assert_valid_kubernetes(render(variant))
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(VARIANTS[variant]))
    out = run_helm(helm, "lint", "--strict", str(CHART), "-f", str(values))
    assert out.returncode == 0, out.stdout + out.stderr


# --- the brief's line ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def brief(helm: str) -> list[Doc]:
    return render_install(helm, shlex.split(BRIEF))


def test_brief_full_mode_on_three_replicas(brief: list[Doc]) -> None:
    (deployment,) = ratelimit_deployments(brief)
    assert deployment["spec"]["replicas"] == 3
    env = env_of(ratelimit_container(deployment))
    assert env["VIVA_MODE"] == "full"
    ref = env["VIVA_DATABASE_URL"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == ("viva-rate-limiter-database", "url")
    assert not by_kind(brief, "Secret"), "no URL given: the Secret is the user's to create"
    service = named(brief, "Service", "viva-rate-limiter")
    (ingress,) = by_kind(brief, "Ingress")
    paths = {p["path"]: p["backend"]["service"] for rule in ingress["spec"]["rules"]
             for p in rule["http"]["paths"]}
    assert set(paths) == {"/dashboard", "/portal"}
    http = next(p for p in service["spec"]["ports"] if p["name"] == "http")
    assert all(b == {"name": "viva-rate-limiter", "port": {"name": http["name"]}}
               for b in paths.values())
    assert named(brief, "PodDisruptionBudget", "viva-rate-limiter")["spec"]["maxUnavailable"] == 1


def test_brief_deploys_a_redis_cluster_wired_into_the_sidecar(brief: list[Doc]) -> None:
    (statefulset,) = by_kind(brief, "StatefulSet")
    assert statefulset["spec"]["replicas"] == 6
    headless = named(brief, "Service", statefulset["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert headless["spec"]["selector"].items() <= pod_labels.items()
    # Every pod's stable DNS name, on the port its container listens on.
    name, service = statefulset["metadata"]["name"], headless["metadata"]["name"]
    (redis,) = pod_spec(statefulset)["containers"]
    assert {p["name"]: p["containerPort"] for p in redis["ports"]} == \
        {"redis": 6379, "cluster-bus": 16379}
    nodes = [f"{name}-{i}.{service}.default.svc.cluster.local:6379" for i in range(6)]

    env = env_of(ratelimit_container(ratelimit_deployments(brief)[0]))
    assert (env["BACKEND_TYPE"], env["REDIS_TYPE"]) == ("redis", "cluster")
    assert env["REDIS_URL"].split(",") == nodes
    (job,) = by_kind(brief, "Job")
    assert "post-install" in job["metadata"]["annotations"]["helm.sh/hook"]
    (bootstrap,) = pod_spec(job)["containers"]
    job_env = env_of(bootstrap)
    assert job_env["NODES"].split() == nodes
    assert job_env["REPLICAS"] == "1"  # 3 masters, 1 replica each
    scripts = named(brief, "ConfigMap", name)["data"]
    assert "redis-cli --cluster create" in scripts["bootstrap.sh"]
    assert "cluster-enabled yes" in scripts["redis.conf"]
    assert named(brief, "PodDisruptionBudget", name)["spec"]["maxUnavailable"] == 1


def test_brief_settings_are_the_sidecars(brief: list[Doc]) -> None:
    """Every variable the chart sets is one the sidecar reads (the start-up check is silent),
    VIVA_DATABASE_URL aside: full mode's branch of the build reads it."""
    from sidecar.envcheck import environment_warnings

    env = env_of(ratelimit_container(ratelimit_deployments(brief)[0]))
    values = {k: v for k, v in env.items() if isinstance(v, str)}
    values.pop("VIVA_DATABASE_URL", None)
    secret_fed = {k for k, v in env.items() if not isinstance(v, str)} - {"VIVA_DATABASE_URL"}
    assert environment_warnings({**values, **dict.fromkeys(secret_fed, "x")}) == []


def test_without_the_apis_no_custom_object_is_rendered(helm: str) -> None:
    """enabled: auto: a plain cluster gets no EnvoyFilter, ServiceMonitor or PrometheusRule
    (applying them would fail there), and helm template without --api-versions neither."""
    kinds = {d["kind"] for d in render_install(helm, shlex.split(BRIEF), apis=())}
    assert not kinds & {"EnvoyFilter", "ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert "ConfigMap" in kinds  # the rules and the Grafana dashboard need no CRD
    forced = helm_template(helm, "--set", "monitoring.serviceMonitor.enabled=true",
                           "--set", "monitoring.prometheusRule.enabled=true",
                           "--set", "envoyFilter.enabled=true")
    assert {"EnvoyFilter", "ServiceMonitor", "PrometheusRule"} <= {d["kind"] for d in forced}


# --- other combinations --------------------------------------------------------------------

def test_full_mode_database_secret(render: Callable[[str], list[Doc]]) -> None:
    env = env_of(ratelimit_container(ratelimit_deployments(
        render("full-existing-database"))[0]))
    assert env["VIVA_DATABASE_URL"]["secretKeyRef"] == {"name": "viva-db", "key": "dsn"}
    assert env["VIVA_SECRET_KEY"]["secretKeyRef"] == {"name": "viva-sealing", "key": "key"}
    docs = render("full-database-url")
    assert "VIVA_SECRET_KEY" not in env_of(ratelimit_container(ratelimit_deployments(docs)[0]))
    ref = env_of(ratelimit_container(ratelimit_deployments(docs)[0]))["VIVA_DATABASE_URL"]
    secret = named(docs, "Secret", ref["secretKeyRef"]["name"])
    assert secret["stringData"][ref["secretKeyRef"]["key"]] == \
        "postgresql://viva:pw@postgres:5432/viva"
    (ingress,) = by_kind(docs, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["rules"][0]["host"] == "rates.example.com"
    assert ingress["spec"]["tls"][0]["secretName"] == "rates-tls"
    assert not by_kind(render("full-without-ingress"), "Ingress")


def test_standalone_has_no_database_and_no_ingress(helm: str) -> None:
    docs = helm_template(helm)
    env = env_of(ratelimit_container(ratelimit_deployments(docs)[0]))
    assert env["VIVA_MODE"] == "standalone" and "VIVA_DATABASE_URL" not in env
    assert not by_kind(docs, "Ingress")


def test_an_existing_cluster_is_used_not_deployed(render: Callable[[str], list[Doc]]) -> None:
    docs = render("cluster-existing-nodes")
    assert not by_kind(docs, "StatefulSet") and not by_kind(docs, "Job")
    env = env_of(ratelimit_container(ratelimit_deployments(docs)[0]))
    assert (env["REDIS_TYPE"], env["REDIS_URL"]) == (
        "cluster", "redis-a:6379,redis-b:6379,redis-c:6379")


def test_cluster_size_auth_and_ephemeral_storage(render: Callable[[str], list[Doc]]) -> None:
    docs = render("cluster-auth-ephemeral")
    (statefulset,) = by_kind(docs, "StatefulSet")
    assert statefulset["spec"]["replicas"] == 12  # 4 masters x (1 + 2 replicas)
    assert "volumeClaimTemplates" not in statefulset["spec"]
    volumes = {v["name"]: v for v in pod_spec(statefulset)["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}
    secret = by_kind(docs, "Secret")[0]["metadata"]["name"]
    (redis,) = pod_spec(statefulset)["containers"]
    for variable in ("REDIS_PASSWORD", "REDISCLI_AUTH"):
        assert env_of(redis)[variable]["secretKeyRef"]["name"] == secret
    (job,) = by_kind(docs, "Job")
    assert env_of(pod_spec(job)["containers"][0])["REDISCLI_AUTH"]["secretKeyRef"]["name"] \
        == secret
    assert env_of(pod_spec(job)["containers"][0])["REPLICAS"] == "2"
    sidecar_env = env_of(ratelimit_container(ratelimit_deployments(docs)[0]))
    assert sidecar_env["REDIS_AUTH"]["secretKeyRef"]["name"] == secret
    assert len(sidecar_env["REDIS_URL"].split(",")) == 12


@pytest.mark.parametrize(("variant", "target"), [("autoscaling", "rl-viva-rate-limiter"),
                                                 ("sidecar-autoscaling", "httpbin")])
def test_autoscaling_owns_the_replica_count(render: Callable[[str], list[Doc]], variant: str,
                                            target: str) -> None:
    docs = render(variant)
    (hpa,) = by_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": target}
    deployment = named(docs, "Deployment", target)
    assert "replicas" not in deployment["spec"], "the HPA's count would be reset on upgrade"
    assert ratelimit_container(deployment)
    if variant == "autoscaling":
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
        assert by_kind(docs, "PodDisruptionBudget")


def test_chart_objects_never_get_service_links(render: Callable[[str], list[Doc]]) -> None:
    """Kubernetes would give every pod <SERVICE>_PORT… variables for the release's own
    Services (VIVA_RATE_LIMITER_…, REDIS_…), which look like settings."""
    for variant in ("sidecar-monitoring", "cluster-auth-ephemeral", "full-database-url"):
        for workload in [*by_kind(render(variant), "Deployment"),
                         *by_kind(render(variant), "StatefulSet"),
                         *by_kind(render(variant), "Job")]:
            assert pod_spec(workload)["enableServiceLinks"] is False, workload["metadata"]


@pytest.mark.parametrize(("values", "problem"), [
    ({"mode": "full", "placement": "sidecar"}, "mode=full needs placement=service"),
    ({"redis": {"enabled": True, "cluster": {"enabled": True}}},
     "redis.enabled and redis.cluster.enabled are both true"),
    ({"redis": {"cluster": {"enabled": True, "nodes": ["redis-a"]}}}, "redis.cluster.nodes.0"),
    ({"redis": {"cluster": {"masters": 2}}}, "redis.cluster.masters"),
    ({"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}},
     "autoscaling.maxReplicas 2 is below autoscaling.minReplicas 5"),
    ({"placement": "sidecar", "workload": {"create": False}, "autoscaling": {"enabled": True}},
     "needs workload.create=true"),
    ({"monitoring": {"prometheusRule": {"enabled": "yes"}}},
     "monitoring.prometheusRule.enabled"),
    ({"database": {"url": "viva.db"}}, "database.url"),
])
def test_bad_combinations_are_refused(helm: str, tmp_path: Path, values: Doc,
                                      problem: str) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    out = run_helm(helm, "template", "rl", str(CHART), "--kube-version", KUBE_VERSIONS[-1],
                   "-f", str(path))
    assert out.returncode != 0
    assert problem in out.stderr.replace("/", "."), out.stderr


# --- monitoring ----------------------------------------------------------------------------

def test_service_monitor_scrapes_the_debug_port(brief: list[Doc]) -> None:
    (monitor,) = by_kind(brief, "ServiceMonitor")
    service = named(brief, "Service", "viva-rate-limiter")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= \
        service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    debug = next(p for p in service["spec"]["ports"] if p["name"] == endpoint["port"])
    (deployment,) = ratelimit_deployments(brief)
    assert debug["targetPort"] == "rl-debug"
    assert env_of(ratelimit_container(deployment))["DEBUG_PORT"] == str(debug["port"])
    assert endpoint["path"] == "/metrics"


def test_pod_monitor_for_sidecars(render: Callable[[str], list[Doc]]) -> None:
    docs = render("sidecar-monitoring")
    assert not by_kind(docs, "ServiceMonitor")
    (monitor,) = by_kind(docs, "PodMonitor")
    (deployment,) = ratelimit_deployments(docs)
    assert monitor["spec"]["selector"]["matchLabels"].items() <= \
        deployment["spec"]["template"]["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in {p["name"] for p in ratelimit_container(deployment)["ports"]}


def test_monitoring_can_be_turned_off(render: Callable[[str], list[Doc]]) -> None:
    kinds = {d["kind"] for d in render("monitoring-off")}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert [c["metadata"]["name"] for c in by_kind(render("monitoring-off"), "ConfigMap")] == \
        ["rl-viva-rate-limiter-rules"]


def test_grafana_dashboard_configmap(brief: list[Doc]) -> None:
    configmap = named(brief, "ConfigMap", "viva-rate-limiter-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    (text,) = configmap["data"].values()
    assert json.loads(text) == json.loads(DASHBOARD.read_text())


def alert_rules(docs: list[Doc]) -> list[Doc]:
    (rule,) = by_kind(docs, "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_alert_expressions_are_promql(brief: list[Doc]) -> None:
    rules = alert_rules(brief)
    assert len(rules) >= 6
    for rule in rules:
        node = promql_parser.parse(rule["expr"])
        assert selectors(node), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        for selector in selectors(node):
            matchers = {m.name: m.value for m in selector.matchers.matchers}
            # Only this release's pods: Prometheus' labels for the ServiceMonitor's targets.
            assert matchers["namespace"] == "default", rule["alert"]
            assert matchers["job"] == "viva-rate-limiter", rule["alert"]


@pytest.fixture(scope="module")
def full_exposition(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """/metrics of a real full-mode sidecar on Redis after a few calls (store, breaker and
    full mode's families; the standalone ones are all there too)."""
    import urllib.request

    # A generous REDIS_TIMEOUT: the first calls open the connection and load the scripts, which
    # on a busy machine takes longer than the default 15 ms (this fixture is not about timeouts).
    data = tmp_path_factory.mktemp("full-metrics")
    sidecar = SidecarProcess(ROOT / "config", env={
        "REDIS_URL": redis_server.url, "REDIS_TIMEOUT": "2s", "MODE": "full",
        "VIVA_DATA_DIR": str(data)}).start()
    try:
        body = json.dumps({"domain": "example", "descriptors": [
            {"entries": [{"key": "path", "value": "/slow"}]}]}).encode()
        for _ in range(4):
            request = urllib.request.Request(f"{sidecar.http_url}/json", data=body)
            try:
                urllib.request.urlopen(request, timeout=5).close()
            except urllib.error.HTTPError as exc:
                assert exc.code == 429
        with urllib.request.urlopen(f"{sidecar.http_url}/metrics", timeout=5) as response:
            return str(response.read().decode())
    finally:
        sidecar.stop()


def families(text: str) -> set[str]:
    """Every sample name the exposition declares (# TYPE), samples or not yet."""
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif kind == "counter" and not name.endswith("_total"):
            names.add(f"{name}_total")
        else:
            names.add(name)
    return names


@pytest.mark.redis
def test_alerts_query_what_the_sidecar_exposes(brief: list[Doc], full_exposition: str) -> None:
    declared, samples = families(full_exposition), exposed(full_exposition)
    for rule in alert_rules(brief):
        node = promql_parser.parse(rule["expr"])
        for selector in selectors(node):
            assert str(selector.name) in declared, (rule["alert"], selector.name)
        for metric, label in label_uses(node):
            if metric in samples:  # (a family with no sample yet shows no label names)
                assert label in samples[metric] | {"namespace", "job", "instance", "pod"}, \
                    (rule["alert"], metric, label)


def test_full_mode_alerts_only_in_full_mode(brief: list[Doc], helm: str) -> None:
    (rule,) = by_kind(brief, "PrometheusRule")
    groups = {g["name"]: [r["alert"] for r in g["rules"]] for g in rule["spec"]["groups"]}
    assert groups["viva-rate-limiter-full"] == [
        "VivaWebhookOutboxGrowing", "VivaWebhookOutboxStale", "VivaWebhookDeliveriesFailing",
        "VivaWebhookDeliveriesGivenUp", "VivaUsageFlushLag"]
    exprs = " ".join(r["expr"] for g in rule["spec"]["groups"] for r in g["rules"])
    assert "viva_usage_flush_lag_seconds" in exprs  # the name usage metering exposes
    standalone = helm_template(helm, "--set", "monitoring.prometheusRule.enabled=true",
                               apis=ALL_APIS)
    (plain,) = by_kind(standalone, "PrometheusRule")
    assert [g["name"] for g in plain["spec"]["groups"]] == ["viva-rate-limiter"]
