"""--workers N: processes sharing the ports, counting in one Redis, metrics summed over all."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from tests.support import ROOT
from tests.support.ports import eventually
from tests.support.servers import RedisServer, SidecarProcess

pytestmark = pytest.mark.redis

RULES = """\
domain: w
descriptors:
  - key: user
    rate_limit: {unit: hour, requests_per_unit: 30}
"""


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def total_hits(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.search(r'^ratelimit_service_rate_limit_total_hits_total\{[^}]*key1="user"[^}]*\}'
                      r" (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_workers_share_ports_count_in_redis_and_sum_metrics(
        tmp_path: Path, redis_clean: RedisServer) -> None:
    (tmp_path / "rules.yaml").write_text(RULES)
    sidecar = SidecarProcess(tmp_path, env={"BACKEND_TYPE": "redis", "REDIS_URL": redis_clean.url,
                                            "REDIS_TIMEOUT": "1s"},
                             args=["--workers", "2"]).start()
    try:
        assert sidecar.proc is not None
        assert eventually(lambda: len(children_of(sidecar.proc.pid)) == 2, timeout=10)
        codes = []
        for _ in range(40):  # a channel per call: connections spread over both workers
            with grpc.insecure_channel(sidecar.grpc_address) as channel:
                stub = rls_pb2_grpc.RateLimitServiceStub(channel)
                desc = ratelimit_pb2.RateLimitDescriptor(entries=[{"key": "user", "value": "a"}])
                request = rls_pb2.RateLimitRequest(domain="w", descriptors=[desc])
                codes.append(stub.ShouldRateLimit(request, timeout=5).overall_code)
        assert codes == [1] * 30 + [2] * 10  # one budget, whichever worker answered
        # Every scrape, whichever worker answers it, sums both workers' counts (counts kept in
        # Rust, on the native path, reach a worker's metrics within a second).
        assert eventually(lambda: total_hits(sidecar.http_port) == 40.0, timeout=5)
        assert {total_hits(sidecar.http_port) for _ in range(6)} == {40.0}
    finally:
        assert sidecar.stop() == 0


def test_more_than_one_worker_needs_redis(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(RULES)
    result = subprocess.run([sys.executable, "-m", "sidecar", "serve", "--config", str(tmp_path),
                             "--workers", "2"], capture_output=True, text=True, cwd=ROOT,
                            timeout=30)
    assert result.returncode == 2
    assert "VIVA_WORKERS=2 needs BACKEND_TYPE=redis" in result.stderr
