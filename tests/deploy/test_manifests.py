"""deploy/istio and the Helm chart on Istio: what an Istio user applies.

- Kubernetes objects validate offline (tests/deploy/kube.py: kubernetes-validate, strict) for
  the chart's oldest supported version and the newest known.
- The chart renders (real helm, for a cluster serving Istio's API) with its defaults and every
  placement / Redis variant, and lints.
- EnvoyFilter is a CRD without a schema here: its structure is checked, and the Envoy objects in
  its patches are put into a complete bootstrap that the real Envoy validates and, for
  deploy/istio, runs against a real sidecar loaded with the ConfigMap's rules.

The brief's install line, full mode, the Redis Cluster and the monitoring objects:
test_chart.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

import pytest
import yaml

from tests.deploy import envoyfilter as ef
from tests.deploy.kube import (
    CHART,
    CONTAINER,
    ISTIO_API,
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    Doc,
    assert_valid_kubernetes,
    by_kind,
    env_of,
    helm_template,
    load_docs,
    pod_spec,
    ratelimit_container,
    ratelimit_deployments,
    run_helm,
)
from tests.deploy.tools import require_envoy, require_tool
from tests.support import ROOT
from tests.support.ports import free_port, wait_port
from tests.support.processes import stop_process
from tests.support.servers import SidecarProcess

ISTIO = ROOT / "deploy" / "istio"
SENTINEL_URL = "mymaster,sentinel-0.sentinel:26379,sentinel-1.sentinel:26379"
CLUSTER_URL = "redis-0.redis:6379,redis-1.redis:6379,redis-2.redis:6379"

# Chart values per variant (merged over values.yaml by helm), rendered for a cluster with Istio.
VARIANTS: dict[str, Doc] = {
    "default": {},
    "sidecar": {"placement": "sidecar"},
    "sidecar-redis-single": {"placement": "sidecar",
                             "redis": {"enabled": True, "url": "redis://redis:6379/0",
                                       "auth": {"password": "s3cret"}}},
    "sidecar-redis-sentinel": {"placement": "sidecar",
                               "redis": {"enabled": True, "type": "sentinel",
                                         "url": SENTINEL_URL,
                                         "auth": {"existingSecret": "redis-auth"}}},
    "sidecar-redis-cluster": {"placement": "sidecar",
                              "redis": {"enabled": True, "type": "cluster", "url": CLUSTER_URL,
                                        "tls": True}},
    "sidecar-existing-workload": {"placement": "sidecar", "workload": {"create": False}},
    "service-redis-single": {"replicas": 3,
                             "redis": {"enabled": True, "url": "redis:6379",
                                       "auth": {"existingSecret": "redis-auth",
                                                "secretKey": "redis-password"}}},
    "service-redis-sentinel": {"redis": {"enabled": True, "type": "sentinel",
                                         "url": SENTINEL_URL,
                                         "auth": {"password": "s3cret"}}},
    "service-redis-cluster": {"replicas": 1,
                              "redis": {"enabled": True, "type": "cluster",
                                        "url": CLUSTER_URL}},
    "no-envoyfilter": {"placement": "sidecar", "envoyFilter": {"enabled": False}},
    "custom-rules": {
        "placement": "sidecar",
        "rules": [{"name": "api.yaml",
                   "content": "domain: api\ndescriptors:\n  - key: path\n"
                              "    rate_limit: {unit: second, requests_per_unit: 5}\n"}],
        "envoyFilter": {"domain": "api", "rateLimits": [{"actions": [{"request_headers": {
            "header_name": ":path", "descriptor_key": "path"}}]}]},
        "ports": {"http": 18080, "grpc": 18081, "debug": 16070},
        "env": {"SHADOW_MODE": True, "NEAR_LIMIT_RATIO": 0.9}},
}
SIDECARS = [v for v, values in VARIANTS.items() if values.get("placement") == "sidecar"]
SERVICES = [v for v in VARIANTS if v not in SIDECARS]


def istio_docs() -> list[Doc]:
    return [d for path in sorted(ISTIO.glob("*.yaml")) for d in load_docs(path.read_text())]


@pytest.fixture(scope="session")
def helm() -> str:
    return require_tool("helm")


@pytest.fixture(scope="session")
def render(helm: str, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], list[Doc]]:
    """Render a variant once per session: ``helm template`` with its values file."""
    folder = tmp_path_factory.mktemp("helm-values")

    @cache
    def _render(variant: str) -> list[Doc]:
        values = folder / f"{variant}.yaml"
        values.write_text(yaml.safe_dump(VARIANTS[variant]))
        return helm_template(helm, "-f", str(values), apis=(ISTIO_API,))

    return _render


# --- Kubernetes schemas --------------------------------------------------------------------

def test_istio_manifests_validate() -> None:
    docs = istio_docs()
    assert {d["kind"] for d in docs} == {"ConfigMap", "Deployment", "Service", "EnvoyFilter"}
    assert_valid_kubernetes(docs)


@pytest.mark.parametrize("variant", VARIANTS)
def test_chart_renders_valid_objects(render: Callable[[str], list[Doc]], variant: str) -> None:
    docs = render(variant)
    assert rules_of(docs), "no rules ConfigMap"
    assert_valid_kubernetes(docs)


def test_chart_lints_strictly(helm: str, tmp_path: Path) -> None:
    for variant, values in VARIANTS.items():
        path = tmp_path / f"{variant}.yaml"
        path.write_text(yaml.safe_dump(values))
        out = run_helm(helm, "lint", "--strict", str(CHART), "-f", str(path))
        assert out.returncode == 0, f"{variant}: {out.stdout}{out.stderr}"


@pytest.mark.parametrize(("values", "problem"), [
    ({"mode": "sidecar"}, "mode"),
    ({"placement": "standalone"}, "placement"),
    ({"redis": {"type": "sentinels"}}, "redis.type"),
    ({"envoyFilter": {"domain": "nope"}}, 'envoyFilter.domain "nope" is not the domain'),
    ({"placement": "sidecar", "workload": {"port": 8080}},
     "workload.port 8080 is also the rate-limit container's http"),
    ({"rules": [{"name": "a.yaml", "content": {"domain": "a"}},
                {"name": "a.yaml", "content": {"domain": "b"}}],
      "envoyFilter": {"domain": "a"}}, '"a.yaml" is used twice'),
    ({"rules": [{"name": "notes.txt", "content": "x"}]}, "rules.0.name"),
])
def test_chart_rejects_bad_values(helm: str, tmp_path: Path, values: Doc, problem: str) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    out = run_helm(helm, "template", RELEASE, str(CHART), "--kube-version", KUBE_VERSIONS[-1],
                   f"--api-versions={ISTIO_API}", "-f", str(path))
    assert out.returncode != 0
    assert problem in out.stderr.replace("/", ".")


# --- what the objects say ------------------------------------------------------------------

def assert_sidecar_wiring(docs: list[Doc]) -> None:
    """The rate-limit container next to the app, the rules mounted as a directory, and the
    EnvoyFilter pointing at that pod and that container's gRPC port."""
    configmaps = {c["metadata"]["name"] for c in by_kind(docs, "ConfigMap")}
    (deployment,) = ratelimit_deployments(docs)
    container = ratelimit_container(deployment)
    env = env_of(container)
    assert env["RUNTIME_IGNOREDOTFILES"] == "true"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    (mount,) = [m for m in mounts.values() if m["mountPath"] == env["VIVA_CONFIG_DIR"]]
    assert "subPath" not in mount and "subPathExpr" not in mount, "subPath never updates"
    assert volumes[mount["name"]]["configMap"]["name"] in configmaps
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] in {p["name"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthcheck"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    non_root = [container["securityContext"].get("runAsNonRoot"),
                pod_spec(deployment)["securityContext"].get("runAsNonRoot")]
    assert True in non_root and False not in non_root

    filters = by_kind(docs, "EnvoyFilter")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    for item in filters:
        selector = item["spec"]["workloadSelector"]["labels"]
        assert selector.items() <= pod_labels.items(), "the EnvoyFilter selects another pod"
    cluster = ef.only_patch(filters, "CLUSTER")
    assert cluster["patch"]["operation"] == "ADD"
    assert cluster["patch"]["value"]["name"] == ef.rate_limit_cluster_name(filters)
    address = cluster["patch"]["value"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    socket = address["endpoint"]["address"]["socket_address"]
    grpc_port = int(env.get("GRPC_PORT", 8081))
    assert (socket["address"], socket["port_value"]) == ("127.0.0.1", grpc_port)
    assert grpc_port in {p["containerPort"] for p in container["ports"]}

    # The route patch targets the inbound virtual host of a Service port of this pod.
    vhost = ef.only_patch(filters, "HTTP_ROUTE")["match"]["routeConfiguration"]["vhost"]["name"]
    ports = {f"inbound|http|{p['port']}" for s in by_kind(docs, "Service")
             if s["spec"]["selector"].items() <= pod_labels.items() for p in s["spec"]["ports"]}
    assert vhost in ports


def test_istio_sidecar_wiring() -> None:
    assert_sidecar_wiring(istio_docs())


@pytest.mark.parametrize("variant", [v for v in SIDECARS if v not in (
    "sidecar-existing-workload", "no-envoyfilter")])
def test_chart_sidecar_wiring(render: Callable[[str], list[Doc]], variant: str) -> None:
    docs = render(variant)
    assert_sidecar_wiring(docs)
    env = env_of(ratelimit_container(ratelimit_deployments(docs)[0]))
    assert env["GRPC_HOST"] == "127.0.0.1", "only the pod's own Envoy may call it"


@pytest.mark.parametrize("variant", SERVICES)
def test_chart_service_objects(render: Callable[[str], list[Doc]], variant: str) -> None:
    docs = render(variant)
    (deployment,) = ratelimit_deployments(docs)
    assert [c["name"] for c in pod_spec(deployment)["containers"]] == [CONTAINER]
    assert deployment["spec"]["replicas"] == VARIANTS[variant].get("replicas", 2)
    assert "GRPC_HOST" not in env_of(ratelimit_container(deployment))
    (service,) = by_kind(docs, "Service")
    assert service["spec"]["selector"].items() <= \
        deployment["spec"]["template"]["metadata"]["labels"].items()
    grpc = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
    assert grpc["appProtocol"] == "grpc"  # Istio then speaks HTTP/2 to it
    pdbs = by_kind(docs, "PodDisruptionBudget")
    assert len(pdbs) == (1 if deployment["spec"]["replicas"] > 1 else 0)

    filters = by_kind(docs, "EnvoyFilter")
    assert not ef.patches(filters, "CLUSTER"), "a shared service is Istio's outbound cluster"
    fqdn = f"{service['metadata']['name']}.{NAMESPACE}.svc.cluster.local"
    assert ef.rate_limit_cluster_name(filters) == f"outbound|{grpc['port']}||{fqdn}"


@pytest.mark.parametrize("variant", [v for v in VARIANTS if "redis" in v])
def test_chart_redis_settings(render: Callable[[str], list[Doc]], variant: str) -> None:
    docs = render(variant)
    redis = VARIANTS[variant]["redis"]
    env = env_of(ratelimit_container(ratelimit_deployments(docs)[0]))
    assert env["BACKEND_TYPE"] == "redis"
    assert env["REDIS_TYPE"] == redis.get("type", "single")
    assert env["REDIS_URL"] == redis["url"]
    assert env["REDIS_TLS"] == json.dumps(redis.get("tls", False))
    auth = redis.get("auth", {})
    secrets = {s["metadata"]["name"]: s for s in by_kind(docs, "Secret")}
    if not auth:
        assert "REDIS_AUTH" not in env and not secrets
        return
    ref = env["REDIS_AUTH"]["secretKeyRef"]
    assert ref["key"] == auth.get("secretKey", "password")
    if "existingSecret" in auth:
        assert ref["name"] == auth["existingSecret"] and not secrets
    else:
        assert secrets[ref["name"]]["stringData"][ref["key"]] == auth["password"]


def test_chart_memory_store_by_default(render: Callable[[str], list[Doc]]) -> None:
    env = env_of(ratelimit_container(ratelimit_deployments(render("default"))[0]))
    assert env["BACKEND_TYPE"] == "memory"
    assert not any(name.startswith("REDIS_") for name in env)


def test_chart_custom_ports_and_settings(render: Callable[[str], list[Doc]]) -> None:
    docs = render("custom-rules")
    env = env_of(ratelimit_container(ratelimit_deployments(docs)[0]))
    assert (env["PORT"], env["GRPC_PORT"], env["DEBUG_PORT"]) == ("18080", "18081", "16070")
    assert (env["SHADOW_MODE"], env["NEAR_LIMIT_RATIO"]) == ("true", "0.9")


def test_chart_without_workload_or_envoyfilter(render: Callable[[str], list[Doc]]) -> None:
    kinds = {d["kind"] for d in render("sidecar-existing-workload")}
    assert kinds == {"ConfigMap", "EnvoyFilter"}  # the rules and the Grafana dashboard
    assert "EnvoyFilter" not in {d["kind"] for d in render("no-envoyfilter")}


def test_chart_notes_patch_for_an_existing_workload(helm: str, tmp_path: Path) -> None:
    """With workload.create=false the install notes print the container and volume to add to
    the user's own Deployment; that patch must make a valid Deployment. (helm template does not
    render NOTES.txt, so a copy of the chart renders it into a ConfigMap.)"""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "_notes.tpl").write_text(
        '{{- define "test.notes" }}' + notes + "{{- end }}")
    (chart / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data: {notes: {{ include "test.notes" . | quote }}}\n')
    out = run_helm(helm, "template", RELEASE, str(chart), "--namespace", NAMESPACE,
                   "--kube-version", KUBE_VERSIONS[-1], "--set", "placement=sidecar",
                   "--set", "workload.create=false", "--show-only", "templates/notes.yaml")
    assert out.returncode == 0, out.stderr
    text = yaml.safe_load(out.stdout)["data"]["notes"]
    patch = yaml.safe_load(text[text.index("spec:\n"):text.index("\nCounters are")])
    deployment: Doc = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app"},
        "spec": {"selector": {"matchLabels": {"app": "app"}}, "template": {
            "metadata": {"labels": {"app": "app"}},
            "spec": {"containers": [{"name": "app", "image": "app:1"}],
                     "securityContext": {}}}}}
    pod = pod_spec(deployment)
    pod["containers"] += patch["spec"]["template"]["spec"]["containers"]
    pod["volumes"] = patch["spec"]["template"]["spec"]["volumes"]
    assert_valid_kubernetes([deployment])
    container = ratelimit_container(deployment)
    assert container["volumeMounts"][0]["name"] == pod["volumes"][0]["name"]
    assert pod["volumes"][0]["configMap"]["name"] == f"{RELEASE}-viva-rate-limiter-rules"


# --- rules and descriptors -----------------------------------------------------------------

def rules_of(docs: list[Doc]) -> dict[str, str]:
    (configmap,) = [c for c in by_kind(docs, "ConfigMap")
                    if c["metadata"]["name"].endswith("-rules")
                    or c["metadata"]["name"] == "httpbin-ratelimit-config"]
    return dict(configmap["data"])


def assert_rules_load(files: dict[str, str], folder: Path) -> None:
    for name, text in files.items():
        (folder / name).write_text(text)
    out = subprocess.run([sys.executable, "-m", "sidecar", "validate", str(folder)],
                         capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)
    assert out.returncode == 0, out.stderr


def assert_descriptors_match_rules(docs: list[Doc]) -> None:
    """The filter's domain has rules, and every descriptor the route actions build reaches a
    rate_limit in them (else that descriptor could never be limited)."""
    filters = by_kind(docs, "EnvoyFilter")
    http_filter = ef.only_patch(filters, "HTTP_FILTER")
    assert http_filter["patch"]["operation"] == "INSERT_BEFORE"
    sub_filter = http_filter["match"]["listener"]["filterChain"]["filter"]["subFilter"]
    assert sub_filter["name"] == ef.ROUTER
    domain = http_filter["patch"]["value"]["typed_config"]["domain"]
    rules = [yaml.safe_load(text) for text in rules_of(docs).values()]
    (domain_rules,) = [r for r in rules if r["domain"] == domain]
    paths = ef.rule_paths(domain_rules["descriptors"])
    route = ef.only_patch(filters, "HTTP_ROUTE")
    assert route["patch"]["operation"] == "MERGE"
    for item in route["patch"]["value"]["route"]["rate_limits"]:
        keys = tuple(ef.descriptor_keys(item))
        assert keys in paths, f"descriptor {keys} matches no rule of domain {domain}: {paths}"


def test_istio_rules_load_and_match_descriptors(tmp_path: Path) -> None:
    docs = istio_docs()
    assert_rules_load(rules_of(docs), tmp_path)
    assert_descriptors_match_rules(docs)


@pytest.mark.parametrize("variant", ["default", "sidecar", "custom-rules"])
def test_chart_rules_load_and_match_descriptors(render: Callable[[str], list[Doc]],
                                                variant: str, tmp_path: Path) -> None:
    docs = render(variant)
    assert_rules_load(rules_of(docs), tmp_path)
    assert_descriptors_match_rules(docs)


def test_chart_default_rules_are_the_example_rules(render: Callable[[str], list[Doc]]) -> None:
    (text,) = rules_of(render("default")).values()
    assert yaml.safe_load(text) == yaml.safe_load((ROOT / "config" / "example.yaml").read_text())


# --- the real Envoy ------------------------------------------------------------------------

def envoy_validate(envoy: str, bootstrap: Doc, path: Path) -> None:
    path.write_text(json.dumps(bootstrap, indent=1))
    out = subprocess.run([envoy, "--mode", "validate", "-c", str(path), "--log-level", "warn"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, f"envoy rejected the patched config:\n{out.stdout}{out.stderr}"


@pytest.mark.envoy
def test_envoy_accepts_istio_patches(tmp_path: Path) -> None:
    envoy_validate(require_envoy(), ef.bootstrap_from(by_kind(istio_docs(), "EnvoyFilter")),
                   tmp_path / "bootstrap.json")


@pytest.mark.envoy
@pytest.mark.parametrize("variant", ["default", "sidecar", "custom-rules"])
def test_envoy_accepts_chart_patches(render: Callable[[str], list[Doc]], variant: str,
                                     tmp_path: Path) -> None:
    filters = by_kind(render(variant), "EnvoyFilter")
    envoy_validate(require_envoy(), ef.bootstrap_from(filters), tmp_path / "bootstrap.json")


@pytest.fixture
def istio_sidecar(tmp_path: Path) -> Iterator[SidecarProcess]:
    """A real sidecar serving the ConfigMap's rules, as the pod's container would."""
    rules = tmp_path / "rules"
    rules.mkdir()
    for name, text in rules_of(istio_docs()).items():
        (rules / name).write_text(text)
    sidecar = SidecarProcess(rules).start()
    yield sidecar
    sidecar.stop()


def get(url: str, headers: dict[str, str], method: str = "GET") -> int:
    request = urllib.request.Request(url, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.envoy
def test_envoy_with_istio_patches_enforces_configmap_rules(
        istio_sidecar: SidecarProcess, tmp_path: Path) -> None:
    """Envoy with the patches, calling the sidecar with the ConfigMap's rules: the descriptors
    the route actions build are the ones the rules limit."""
    envoy = require_envoy()
    listen, app, admin = free_port(), free_port(), free_port()
    bootstrap = ef.bootstrap_from(by_kind(istio_docs(), "EnvoyFilter"), listen_port=listen,
                                  app_port=app, admin_port=admin,
                                  rls_port=istio_sidecar.grpc_port)
    bootstrap["static_resources"]["listeners"].append(stub_app_listener(app))
    config = tmp_path / "envoy.json"
    config.write_text(json.dumps(bootstrap))
    log = (tmp_path / "envoy.log").open("wb")
    proc = subprocess.Popen([envoy, "-c", str(config), "--use-dynamic-base-id",
                             "--log-level", "warn"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(admin, timeout=20, proc=proc)
        wait_port(listen, timeout=20, proc=proc)
        base = f"http://127.0.0.1:{listen}"
        # ("path", "/delay/1"): 3 per minute.
        assert [get(f"{base}/delay/1", {}) for _ in range(4)] == [200, 200, 200, 429]
        # ("api_key", k), ("method", "POST"): 10 per minute per key; another key is separate.
        posts = [get(f"{base}/post", {"x-api-key": "k1"}, "POST") for _ in range(11)]
        assert posts == [200] * 10 + [429]
        assert get(f"{base}/post", {"x-api-key": "k2"}, "POST") == 200
        # ("header_match", "beta") is in shadow mode: over its 5/s, still allowed.
        beta = [get(f"{base}/get", {"x-release-channel": "beta"}) for _ in range(8)]
        assert beta == [200] * 8
    finally:
        stop_process(proc)
        log.close()


def stub_app_listener(port: int) -> Doc:
    """The app: answers 200 to everything."""
    hcm = {"@type": ef.HCM_TYPE, "stat_prefix": "app",
           "route_config": {"virtual_hosts": [{"name": "app", "domains": ["*"], "routes": [{
               "match": {"prefix": "/"},
               "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}}]}]},
           "http_filters": [{"name": ef.ROUTER, "typed_config": {"@type": ef.ROUTER_TYPE}}]}
    return {"name": "app", "address": {"socket_address": {"address": "127.0.0.1",
                                                          "port_value": port}},
            "filter_chains": [{"filters": [{"name": ef.HCM, "typed_config": hcm}]}]}
