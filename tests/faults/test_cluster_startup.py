"""A sidecar process started against a Redis Cluster that is still forming (nodes up, no slot
assigned, no peer known): its ports open at once, the failure policy answers (and health says
so) until the cluster serves, then the store connects in the background and Redis counts."""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from tests.support.ports import wait_port
from tests.support.servers import SidecarProcess
from tests.topologies import RedisCluster
from tests.transports.kit import descriptor, health_status, request, write_rules

pytestmark = pytest.mark.redis

RULES = """
domain: forming
descriptors:
  - key: user
    rate_limit: {unit: hour, requests_per_unit: 1000000}
"""

# The ports open at most this much later than those of a sidecar on the memory store started
# at the same moment (how long Python takes to start varies with the load of the machine).
LATER_THAN_MEMORY = 3.0
OVER = rls_pb2.RateLimitResponse.OVER_LIMIT
OK = rls_pb2.RateLimitResponse.OK


@pytest.fixture
def unformed() -> Iterator[RedisCluster]:
    cluster = RedisCluster(masters=3, replicas=0).start_unformed()
    yield cluster
    cluster.stop()


def _healthcheck(url: str) -> int:
    try:
        with urllib.request.urlopen(f"{url}/healthcheck", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _counted(cluster: RedisCluster) -> int:
    """The hits Redis holds for user=a, over every master."""
    total = 0
    for node in cluster.masters:
        with contextlib.closing(node.client()) as c:
            total += sum(int(c.get(k)) for k in c.keys("forming_user_a_*"))
    return total


async def _call(stub: rls_pb2_grpc.RateLimitServiceStub) -> str:
    try:
        reply = await stub.ShouldRateLimit(request("forming", descriptor(("user", "a"))),
                                           timeout=15)
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
        return "unavailable"
    return {OK: "ok", OVER: "over"}[reply.overall_code]


@pytest.mark.parametrize(("policy", "transport", "answer", "health"), [
    ("unavailable", "fast", "unavailable", "NOT_SERVING"),
    ("unavailable", "grpcio", "unavailable", "NOT_SERVING"),
    ("deny", "fast", "over", "SERVING")])
async def test_ports_open_before_the_cluster_is_formed(tmp_path: Path, unformed: RedisCluster,
                                                       policy: str, transport: str,
                                                       answer: str, health: str) -> None:
    # roomy, so that a loaded machine cannot be what keeps the store from connecting
    env = {"VIVA_FAILURE_POLICY": policy, "VIVA_TRANSPORT": transport, "REDIS_TIMEOUT": "500ms"}
    async with _started_beside_memory(tmp_path, unformed, env) as sidecar, \
            grpc.aio.insecure_channel(sidecar.grpc_address) as channel:
        stub = rls_pb2_grpc.RateLimitServiceStub(channel)
        assert await health_status(sidecar.grpc_address, "ratelimit") == health
        assert await asyncio.to_thread(_healthcheck, sidecar.http_url) == (
            200 if health == "SERVING" else 500)
        assert [await _call(stub) for _ in range(3)] == [answer] * 3
        await asyncio.to_thread(unformed.form)
        await _counted_once_formed(stub, unformed)
        await _eventually_serving(sidecar.grpc_address)


async def test_ports_open_while_the_seed_nodes_hang(tmp_path: Path,
                                                    unformed: RedisCluster) -> None:
    # Seeds that accept connections and never answer, with a long REDIS_TIMEOUT: reaching
    # the store takes that long, so it must not stand before the ports.
    for node in unformed.nodes:
        node.pause()
    async with _started_beside_memory(tmp_path, unformed, {"REDIS_TIMEOUT": "10s"}) as sidecar, \
            grpc.aio.insecure_channel(sidecar.grpc_address) as channel:
        assert await health_status(sidecar.grpc_address, "ratelimit") == "NOT_SERVING"
        for node in unformed.nodes:
            node.resume()
        await asyncio.to_thread(unformed.form)
        await _counted_once_formed(rls_pb2_grpc.RateLimitServiceStub(channel), unformed)
        await _eventually_serving(sidecar.grpc_address)


@contextlib.asynccontextmanager
async def _started_beside_memory(tmp_path: Path, cluster: RedisCluster,
                                 env: dict[str, str]) -> AsyncIterator[SidecarProcess]:
    """A sidecar on ``cluster``, started beside one on the memory store: its ports must open
    no more than LATER_THAN_MEMORY after the other's. Checked alive and stopped at the end."""
    write_rules(tmp_path / "rules", {"forming.yaml": RULES})
    sidecar = SidecarProcess(tmp_path / "rules", env={
        "REDIS_TYPE": "cluster", "REDIS_URL": cluster.startup_nodes, "LOG_LEVEL": "warn",
        **env})
    memory = SidecarProcess(tmp_path / "rules", env={"LOG_LEVEL": "warn"})
    try:
        on_cluster, on_memory = await asyncio.gather(_ports_open(sidecar), _ports_open(memory))
        assert on_cluster < on_memory + LATER_THAN_MEMORY, (on_cluster, on_memory)
        memory.stop()
        yield sidecar
        assert sidecar.proc is not None and sidecar.proc.poll() is None
    finally:
        memory.stop()
        code = sidecar.stop()
        assert code in (0, -15), f"the sidecar exited with {code}:\n{sidecar.log()}"


async def _ports_open(sidecar: SidecarProcess) -> float:
    """Start ``sidecar``; seconds until its gRPC and HTTP ports accept connections."""
    started = time.monotonic()
    sidecar.start(wait=False)
    for port in (sidecar.grpc_port, sidecar.http_port):
        await asyncio.to_thread(wait_port, port, sidecar.proc, 30.0)
    return time.monotonic() - started


async def _counted_once_formed(stub: rls_pb2_grpc.RateLimitServiceStub,
                               cluster: RedisCluster) -> None:
    """Calls come to be answered OK, and each OK was counted in the cluster (no call made
    before the cluster formed was)."""
    answers: list[str] = []
    deadline = time.monotonic() + 20
    while answers[-3:] != ["ok"] * 3:
        assert time.monotonic() < deadline, f"still {answers[-5:]} once formed"
        answers.append(await _call(stub))
        await asyncio.sleep(0.05)
    assert 3 <= answers.count("ok") <= _counted(cluster) <= len(answers)


async def _eventually_serving(address: str, timeout: float = 5.0) -> None:
    """Health follows the store probe, which runs once a second."""
    deadline = time.monotonic() + timeout
    while await health_status(address, "ratelimit") != "SERVING":
        assert time.monotonic() < deadline, "health never went back to SERVING"
        await asyncio.sleep(0.1)
