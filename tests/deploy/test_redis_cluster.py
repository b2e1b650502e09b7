"""The chart's in-release Redis Cluster, replayed for real: the brief's `helm install` renders a
StatefulSet of 6 nodes, a bootstrap Job and a sidecar wired to them; here the same scripts and
settings run on loopback.

No Kubernetes runs here, so, as tests/deploy/test_image.py replays the Dockerfile, this test
takes the rendered objects and runs what their containers would: each node is the ConfigMap's
node.sh with its redis.conf and the StatefulSet's arguments; then the Job's bootstrap.sh with
the Job's environment; then the sidecar with the Deployment's environment. The only changes are
the ones a machine without pods needs, each said where it is made: ports, data directories,
the bind address, and pod DNS names mapped to 127.0.0.1:<port>.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.kube import (
    Doc,
    by_kind,
    env_of,
    named,
    pod_spec,
    ratelimit_container,
    ratelimit_deployments,
)
from tests.deploy.test_chart import BRIEF, render_install
from tests.deploy.tools import require_tool
from tests.support import ROOT
from tests.support.ports import eventually, free_port, wait_port
from tests.support.processes import stop_process
from tests.support.servers import SidecarProcess, missing, redis_binary

pytestmark = pytest.mark.redis


@dataclass
class Rendered:
    scripts: dict[str, str]
    node: Doc  # the StatefulSet's redis container
    size: int
    bootstrap_env: dict[str, str]
    sidecar_env: dict[str, str]


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    docs = render_install(require_tool("helm"), shlex.split(BRIEF), apis=())
    (statefulset,) = by_kind(docs, "StatefulSet")
    (job,) = by_kind(docs, "Job")
    (node,) = pod_spec(statefulset)["containers"]
    sidecar_env = env_of(ratelimit_container(ratelimit_deployments(docs)[0]))
    return Rendered(
        scripts=named(docs, "ConfigMap", statefulset["metadata"]["name"])["data"],
        node=node, size=statefulset["spec"]["replicas"],
        bootstrap_env={k: v for k, v in env_of(pod_spec(job)["containers"][0]).items()
                       if isinstance(v, str)},
        sidecar_env={k: v for k, v in sidecar_env.items() if isinstance(v, str)})


def tool_dir(tmp: Path) -> Path:
    """redis-server and redis-cli as the image names them (Valkey's binaries serve too)."""
    server = redis_binary()
    cli = shutil.which("redis-cli") or (
        server and shutil.which("valkey-cli", path=str(Path(server).parent)))
    if server is None or not cli:
        missing("redis-server and redis-cli")
    folder = tmp / "bin"
    folder.mkdir()
    (folder / "redis-server").symlink_to(str(server))
    (folder / "redis-cli").symlink_to(str(cli))
    return folder


class LocalCluster:
    """The StatefulSet's pods as processes: node.sh with the ConfigMap's redis.conf."""

    def __init__(self, rendered: Rendered, tmp: Path) -> None:
        self.rendered = rendered
        self.tmp = tmp
        self.bin = tool_dir(tmp)
        self.ports: list[int] = []
        self.used: list[int] = []  # node and cluster-bus ports
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = {"PATH": f"{self.bin}:{os.environ['PATH']}"}

    def start(self) -> LocalCluster:
        scripts = self.tmp / "etc-redis"
        scripts.mkdir()
        for name, text in self.rendered.scripts.items():
            (scripts / name).write_text(text)
        node = self.rendered.node
        assert node["command"] == ["/bin/sh", "/etc/redis/node.sh"]
        for index in range(self.rendered.size):
            self.spawn(index, scripts, node)
        for port, proc in zip(self.ports, self.procs, strict=True):
            wait_port(port, timeout=20, proc=proc)
        return self

    def spawn(self, index: int, scripts: Path, node: Doc) -> None:
        port, bus = self.distinct_port(), self.distinct_port()
        self.ports.append(port)
        data = self.tmp / f"data-{index}"
        data.mkdir()
        conf = (scripts / "redis.conf").read_text()
        # Replay changes: this node's port and data directory; loopback only.
        assert "port 6379" in conf and "bind * -::*" in conf and "/data" in conf
        conf = conf.replace("port 6379", f"port {port}").replace("/data", str(data))
        conf = conf.replace("bind * -::*", "bind 127.0.0.1")
        (data / "redis.conf").write_text(conf)
        env = {**self.env, **{e["name"]: e["value"] for e in node["env"] if "value" in e},
               "REDIS_CONF": str(data / "redis.conf"),
               # Replay change: the pod's DNS name is this machine's loopback address.
               "ANNOUNCE_HOST": "127.0.0.1"}
        argv = ["/bin/sh", str(scripts / "node.sh"), *node["args"], "--cluster-port", str(bus),
                "--logfile", str(data / "redis.log")]
        self.procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.STDOUT))

    def distinct_port(self) -> int:
        while (port := free_port()) in self.used:
            pass
        self.used.append(port)
        return port

    def address_map(self, names: list[str]) -> dict[str, str]:
        """The rendered node names (pod DNS name:6379) → this machine's nodes, in order."""
        assert len(names) == len(self.ports)
        return {name: f"127.0.0.1:{port}" for name, port in zip(names, self.ports, strict=True)}

    def bootstrap(self) -> subprocess.CompletedProcess[str]:
        names = self.rendered.bootstrap_env["NODES"].split()
        nodes = self.address_map(names)
        env = {**self.env, **self.rendered.bootstrap_env,
               "NODES": " ".join(nodes[n] for n in names), "WAIT": "60"}
        return subprocess.run(["/bin/sh", str(self.tmp / "etc-redis" / "bootstrap.sh")],
                              env=env, capture_output=True, text=True, timeout=180,
                              check=False)

    def cli(self, port: int, *args: str) -> str:
        out = subprocess.run([str(self.bin / "redis-cli"), "-p", str(port), *args],
                             capture_output=True, text=True, timeout=30, check=True)
        return out.stdout

    def stop(self) -> None:
        for proc in self.procs:
            stop_process(proc)


@pytest.fixture(scope="module")
def cluster(rendered: Rendered, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[LocalCluster]:
    local = LocalCluster(rendered, tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield local.start()
    finally:
        local.stop()


def sidecar_for(cluster: LocalCluster, rendered: Rendered) -> SidecarProcess:
    """The Deployment's container: its environment, the node names mapped to this machine."""
    env = dict(rendered.sidecar_env)
    assert (env["BACKEND_TYPE"], env["REDIS_TYPE"]) == ("redis", "cluster")
    nodes = cluster.address_map(env["REDIS_URL"].split(","))
    env["REDIS_URL"] = ",".join(nodes.values())
    # The pod's paths and ports are the test's, and it counts in standalone mode (full mode
    # would also need the chart's database, which this test does not start).
    for name in ("VIVA_CONFIG_DIR", "PORT", "GRPC_PORT", "DEBUG_PORT", "VIVA_MODE"):
        env.pop(name)
    env["REDIS_TIMEOUT"] = "2s"  # a loaded test machine, not a pod's 15 ms budget
    return SidecarProcess(ROOT / "config", env=env)


def test_pods_then_the_job_then_counters_in_the_cluster(cluster: LocalCluster,
                                                        rendered: Rendered) -> None:
    """As on install: the sidecar and the nodes start together, unready until the
    post-install Job has formed the cluster; then the sidecar counts there."""
    sidecar = sidecar_for(cluster, rendered).start()
    try:
        assert get(f"{sidecar.http_url}/healthcheck") == 500, "no cluster yet: not ready"
        first = cluster.bootstrap()
        assert first.returncode == 0, first.stdout + first.stderr
        assert "cluster_state:ok" in first.stdout
        eventually(lambda: get(f"{sidecar.http_url}/healthcheck") == 200, timeout=30)
        body = json.dumps({"domain": "example", "descriptors": [
            {"entries": [{"key": "path", "value": "/slow"}]}]}).encode()
        codes = [post(f"{sidecar.http_url}/json", body) for _ in range(4)]
        assert codes == [200, 200, 200, 429], sidecar.log()
    finally:
        sidecar.stop()
    masters = [p for p in cluster.ports if cluster.cli(p, "role").startswith("master")]
    assert sum(int(cluster.cli(p, "dbsize")) for p in masters) >= 1
    # …and, replication being asynchronous, soon on that master's replica too.
    eventually(lambda: sum(int(cluster.cli(p, "dbsize")) for p in cluster.ports) >= 2,
               timeout=15)


def test_the_formed_cluster_and_a_second_job_run(cluster: LocalCluster) -> None:
    if "cluster_state:ok" not in cluster.cli(cluster.ports[0], "cluster", "info"):
        assert cluster.bootstrap().returncode == 0
    info = dict(line.split(":", 1) for line in
                cluster.cli(cluster.ports[0], "cluster", "info").split() if ":" in line)
    assert (info["cluster_state"], info["cluster_known_nodes"], info["cluster_size"]) == (
        "ok", "6", "3")
    roles = [cluster.cli(p, "role").split()[0] for p in cluster.ports]
    assert sorted(roles) == ["master"] * 3 + ["slave"] * 3
    # Clients are sent to the announced name, not to an address that changes with the pod.
    assert "hostname\n127.0.0.1" in cluster.cli(cluster.ports[0], "cluster", "shards")
    # A post-upgrade run: nothing to do, and it says so.
    again = cluster.bootstrap()
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already formed" in again.stdout


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def post(url: str, body: bytes) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code
