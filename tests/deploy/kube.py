"""Rendering the Helm chart and judging Kubernetes objects, shared by the deploy tests.

- Built-in kinds validate against the Kubernetes JSON schemas (kubernetes-validate, strict:
  unknown fields fail) for the chart's oldest supported version and the newest known.
- Prometheus Operator kinds (ServiceMonitor, PodMonitor, PrometheusRule) validate against the
  openAPIV3Schema of their CRDs, as published in the prometheus-operator Go module (fetched
  with `go mod download`, as .ci/run does), with unknown fields refused as the API server's
  strict field validation refuses them.
- EnvoyFilter (Istio) has no schema here: its structure is checked (assert_envoyfilter_shape).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from tests.deploy import envoyfilter as ef
from tests.support import ROOT
from tests.support.servers import missing

Doc = dict[str, Any]

CHART = ROOT / "charts" / "viva-rate-limiter"
# The chart's kubeVersion floor, and the newest version the validator knows.
KUBE_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())
NAMESPACE = "demo"
RELEASE = "rl"
CONTAINER = "viva-ratelimit"

# What `helm install` learns from a cluster with Istio and the Prometheus Operator; `helm
# template` is told with --api-versions.
ISTIO_API = "networking.istio.io/v1alpha3/EnvoyFilter"
MONITORING_APIS = ("monitoring.coreos.com/v1/ServiceMonitor",
                   "monitoring.coreos.com/v1/PodMonitor",
                   "monitoring.coreos.com/v1/PrometheusRule")

# The prometheus-operator release whose CRDs the monitoring objects are checked against.
PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator@v0.85.0"
CRD_FILES = {"ServiceMonitor": "monitoring.coreos.com_servicemonitors.yaml",
             "PodMonitor": "monitoring.coreos.com_podmonitors.yaml",
             "PrometheusRule": "monitoring.coreos.com_prometheusrules.yaml"}


def load_docs(text: str) -> list[Doc]:
    return [d for d in yaml.safe_load_all(text) if d]


def run_helm(helm: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120,
                          check=False, cwd=cwd)


def helm_template(helm: str, *args: str, release: str = RELEASE, chart: Path = CHART,
                  apis: tuple[str, ...] = ()) -> list[Doc]:
    """``helm template`` of the chart for the newest Kubernetes, the APIs named served."""
    flags = [f"--api-versions={api}" for api in apis]
    out = run_helm(helm, "template", release, str(chart), "--namespace", NAMESPACE,
                   "--kube-version", KUBE_VERSIONS[-1], *flags, *args)
    assert out.returncode == 0, out.stderr
    return load_docs(out.stdout)


def by_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[Doc], kind: str, name: str) -> Doc:
    (found,) = [d for d in by_kind(docs, kind) if d["metadata"]["name"] == name]
    return found


def pod_spec(workload: Doc) -> Doc:
    spec: Doc = workload["spec"]["template"]["spec"]
    return spec


def ratelimit_container(deployment: Doc) -> Doc:
    found: list[Doc] = [c for c in pod_spec(deployment)["containers"]
                        if c["name"] == CONTAINER]
    assert len(found) == 1, f"expected one {CONTAINER} container"
    return found[0]


def env_of(container: Doc) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def ratelimit_deployments(docs: list[Doc]) -> list[Doc]:
    return [d for d in by_kind(docs, "Deployment")
            if any(c["name"] == CONTAINER for c in pod_spec(d)["containers"])]


# --- schemas ---------------------------------------------------------------------------------

def assert_valid_kubernetes(docs: list[Doc]) -> None:
    for doc in docs:
        if doc["kind"] == "EnvoyFilter":
            assert_envoyfilter_shape(doc)
        elif doc["kind"] in CRD_FILES:
            assert_valid_custom(doc)
        else:
            assert_valid_builtin(doc)


def assert_valid_builtin(doc: Doc) -> None:
    for version in KUBE_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} (Kubernetes {version}): "
                        f"{path}: {exc.message}")


def assert_valid_custom(doc: Doc) -> None:
    """Against the CRD's schema for the object's apiVersion; metadata as ObjectMeta."""
    name = f"{doc['kind']}/{doc['metadata']['name']}"
    group, _, version = doc["apiVersion"].partition("/")
    schema = crd_schema(doc["kind"], group, version)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=str)
    assert not errors, f"{name}: " + "; ".join(
        f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}" for e in errors[:5])
    # The CRD leaves metadata to the API server: check it as part of a ConfigMap.
    assert_valid_builtin({"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": doc["metadata"]})


@cache
def prometheus_operator_dir() -> Path:
    go = shutil.which("go")
    if go is None:
        missing("go (to fetch the prometheus-operator CRDs)")
    out = subprocess.run([str(go), "mod", "download", "-json", PROMETHEUS_OPERATOR],
                         capture_output=True, text=True, timeout=300, check=False,
                         cwd=tempfile.gettempdir())
    assert out.returncode == 0, out.stdout + out.stderr
    return Path(json.loads(out.stdout)["Dir"])


@cache
def crd_schema(kind: str, group: str, version: str) -> Doc:
    path = prometheus_operator_dir() / "example" / "prometheus-operator-crd" / CRD_FILES[kind]
    crd = yaml.safe_load(path.read_text())
    assert crd["spec"]["group"] == group, (kind, group)
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return strict(served["schema"]["openAPIV3Schema"])


def strict(schema: Any) -> Any:
    """An OpenAPI v3 structural schema as JSON Schema that refuses unknown fields, like the
    API server with strict field validation (x-kubernetes-preserve-unknown-fields keeps them)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if "properties" in schema:
        out["properties"] = {k: strict(v) for k, v in schema["properties"].items()}
        if "additionalProperties" not in schema and \
                not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if schema.get("nullable"):
        out = {"anyOf": [{"type": "null"}, out]}
    return out


def assert_envoyfilter_shape(doc: Doc) -> None:
    """The parts of the EnvoyFilter CRD (networking.istio.io/v1alpha3) these objects use."""
    name = doc["metadata"]["name"]
    assert doc["apiVersion"] == "networking.istio.io/v1alpha3", name
    assert set(doc) <= {"apiVersion", "kind", "metadata", "spec"}, name
    spec = doc["spec"]
    assert set(spec) <= {"workloadSelector", "configPatches", "priority", "targetRefs"}, name
    labels = spec["workloadSelector"]["labels"]
    assert labels and all(isinstance(v, str) for v in labels.values()), name
    assert spec["configPatches"], f"{name}: no configPatches"
    for patch in spec["configPatches"]:
        assert set(patch) == {"applyTo", "match", "patch"}, (name, patch)
        assert patch["applyTo"] in ef.APPLY_TO, (name, patch["applyTo"])
        assert patch["match"]["context"] in ef.CONTEXTS, (name, patch["match"])
        assert patch["patch"]["operation"] in ef.OPERATIONS, (name, patch["patch"])
        assert isinstance(patch["patch"]["value"], dict), name
