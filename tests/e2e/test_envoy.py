"""End to end through a real Envoy: the shipped bootstrap, the sidecar as a subprocess, Redis.

Every count runs on keys no other test touches (a fresh path under a wildcard rule, or a flushed
Redis) and inside one rate-limit window: when a window boundary passes during a run, the run is
repeated on fresh keys rather than slept across.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from tests.e2e.envoy import SHIPPED_BOOTSTRAP, EnvoyProcess, Reply, require_envoy
from tests.support import ROOT
from tests.support.ports import eventually
from tests.support.servers import RedisServer, SidecarProcess

pytestmark = pytest.mark.envoy

T = TypeVar("T")
HOUR = 3600
MINUTE = 60
RELOAD_SECONDS = 2.0  # how soon a rules change must be visible through Envoy
FAIL_OPEN_SECONDS = 1.0  # the most one request may take while Redis is down


def rules_text(limit: int) -> str:
    return f"""\
domain: example
descriptors:
  # Every path under /slow/ has a counter of its own, so a fresh path starts from zero.
  - key: path
    value: /slow/*
    rate_limit:
      unit: hour
      requests_per_unit: {limit}
"""


def write_rules(directory: Path, text: str) -> None:
    """Replace rules.yaml atomically, as a ConfigMap update or an editor's save-as does."""
    tmp = directory / ".rules.yaml.tmp"  # dotfiles are not rules files
    tmp.write_text(text)
    os.replace(tmp, directory / "rules.yaml")


def fresh_path() -> str:
    return f"/slow/{uuid.uuid4().hex[:12]}"


def in_one_window(window: int, run: Callable[[], T], reset: Callable[[], None] | None = None) -> T:
    """``run()``'s result, from a run that started and ended in the same ``window``-second
    epoch-aligned window. ``run`` must count on fresh keys (or ``reset`` must clear them)."""
    for _ in range(2):
        start = int(time.time()) // window
        result = run()
        if int(time.time()) // window == start:
            return result
        if reset is not None:
            reset()
    raise AssertionError("a window boundary passed during two consecutive runs")


def assert_headers(reply: Reply, limit: str, remaining: int, window: int,
                   t0: float, t1: float) -> None:
    """Envoy's DRAFT_VERSION_03 headers, with the reset due at the end of the window that held
    the request (the request was sent between t0 and t1, both in one window)."""
    assert reply.headers["x-ratelimit-limit"] == limit
    assert reply.headers["x-ratelimit-remaining"] == str(remaining)
    reset = int(reply.headers["x-ratelimit-reset"])
    assert window - int(t1) % window <= reset <= window - int(t0) % window


def limit_seen(envoy: EnvoyProcess) -> int:
    """The /slow/* limit as Envoy reports it on a fresh path (charges nothing that is reused)."""
    reply = envoy.request(fresh_path())
    assert reply.status == 200, reply
    return int(reply.headers["x-ratelimit-limit"].split(",")[0])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return json.loads(resp.read())


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def redis_env(server: RedisServer) -> dict[str, str]:
    # Envoy's filter here waits 0.25 s; a loaded CI box can exceed the 15 ms default.
    return {"BACKEND_TYPE": "redis", "REDIS_URL": server.url, "REDIS_TIMEOUT": "100ms"}


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(params=["fast", "grpcio"])
def transport(request: pytest.FixtureRequest) -> str:
    """Every end-to-end test runs on both gRPC transports."""
    return str(request.param)


@pytest.fixture
def start_sidecar(transport: str) -> Iterator[Callable[[Path, dict[str, str]], SidecarProcess]]:
    """Start sidecars (``python -m sidecar serve``); all are stopped at teardown."""
    started: list[SidecarProcess] = []

    def start(config: Path, env: dict[str, str]) -> SidecarProcess:
        sidecar = SidecarProcess(config, {**env, "VIVA_TRANSPORT": transport})
        started.append(sidecar)
        try:
            return sidecar.start()
        except (RuntimeError, TimeoutError) as exc:
            sidecar.stop()
            raise RuntimeError(f"{exc}; sidecar log:\n{sidecar.log()}") from exc

    yield start
    for sidecar in started:
        sidecar.stop()
        sidecar.log_path.unlink(missing_ok=True)


@pytest.fixture
def start_envoy() -> Iterator[Callable[[int], EnvoyProcess]]:
    """Start the shipped bootstrap against a sidecar's gRPC port; stopped at teardown."""
    started: list[EnvoyProcess] = []

    def start(grpc_port: int) -> EnvoyProcess:
        envoy = EnvoyProcess.shipped(grpc_port)
        started.append(envoy)
        envoy.start()
        # Open Envoy's HTTP/2 connection to the sidecar now, so no counted request pays for it.
        assert envoy.request("/").status == 200
        return envoy

    yield start
    for envoy in started:
        envoy.stop()


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "rules"
    directory.mkdir()
    write_rules(directory, rules_text(3))
    return directory


@dataclass
class Stack:
    redis: RedisServer
    sidecar: SidecarProcess
    envoy: EnvoyProcess


@pytest.fixture
def stack(redis_clean: RedisServer, rules_dir: Path,
          start_sidecar: Callable[[Path, dict[str, str]], SidecarProcess],
          start_envoy: Callable[[int], EnvoyProcess]) -> Stack:
    """Envoy → sidecar (rules_dir, limit 3 per hour on /slow/*) → the session's Redis."""
    sidecar = start_sidecar(rules_dir, redis_env(redis_clean))
    return Stack(redis_clean, sidecar, start_envoy(sidecar.grpc_port))


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own, free to be stopped."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


# -- the shipped files -------------------------------------------------------------------------


def test_shipped_bootstrap_validates() -> None:
    result = subprocess.run(
        [require_envoy(), "--mode", "validate", "-c", str(SHIPPED_BOOTSTRAP), "-l", "warning"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout


@pytest.mark.redis
def test_shipped_bootstrap_and_rules_work_together(
        redis_clean: RedisServer, tmp_path: Path,
        start_sidecar: Callable[[Path, dict[str, str]], SidecarProcess],
        start_envoy: Callable[[int], EnvoyProcess]) -> None:
    """deploy/envoy/envoy.yaml's descriptors meet config/example.yaml's rules."""
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    envoy = start_envoy(start_sidecar(config, redis_env(redis_clean)).grpc_port)

    def flush() -> None:
        client = redis_clean.client()
        client.flushall()
        client.close()

    def run() -> tuple[float, float, list[Reply], list[Reply], list[Reply], list[Reply]]:
        t0 = time.time()
        slow = [envoy.request("/slow") for _ in range(4)]
        key = {"x-api-key": "k1"}
        posts = [envoy.request("/orders", "POST", key) for _ in range(11)]
        batch = {"x-api-key": "internal-batch"}
        unlimited = [envoy.request("/orders", "POST", batch) for _ in range(11)]
        beta = [envoy.request("/", headers={"x-release-channel": "beta"}) for _ in range(6)]
        return t0, time.time(), slow, posts, unlimited, beta

    flush()
    t0, t1, slow, posts, unlimited, beta = in_one_window(MINUTE, run, flush)
    # /slow: 3 per minute. Envoy lists every limit that applied (remote_address first, as the
    # rate_limits are ordered) and reports the one with the least remaining.
    assert [r.status for r in slow] == [200, 200, 200, 429]
    for reply, remaining in zip(slow, [2, 1, 0, 0], strict=True):
        assert_headers(reply, "3, 100;w=60, 3;w=60", remaining, MINUTE, t0, t1)
    # The nested api_key → method=POST descriptor: 10 per minute per key.
    assert [r.status for r in posts] == [200] * 10 + [429]
    for reply, remaining in zip(posts, [*range(9, -1, -1), 0], strict=True):
        assert_headers(reply, "10, 100;w=60, 10;w=60", remaining, MINUTE, t0, t1)
    # internal-batch is unlimited; only the per-IP limit shows.
    assert [r.status for r in unlimited] == [200] * 11
    assert unlimited[-1].headers["x-ratelimit-limit"].startswith("100, 100;w=60")
    # The beta rule is in shadow mode: over its 5 per second, yet never enforced.
    assert [r.status for r in beta] == [200] * 6


# -- counting through Envoy --------------------------------------------------------------------


@pytest.mark.redis
def test_requests_pass_until_the_limit_then_get_429_with_headers(stack: Stack) -> None:
    def run() -> tuple[float, float, str, list[Reply], Reply]:
        path = fresh_path()
        t0 = time.time()
        replies = [stack.envoy.request(path) for _ in range(5)]
        other = stack.envoy.request(fresh_path())
        return t0, time.time(), path, replies, other

    t0, t1, path, replies, other = in_one_window(HOUR, run)
    assert [r.status for r in replies] == [200, 200, 200, 429, 429]
    for reply, remaining in zip(replies, [2, 1, 0, 0, 0], strict=True):
        assert_headers(reply, "3, 3;w=3600", remaining, HOUR, t0, t1)
    assert replies[0].body == b"ok\n"  # the backend answered
    assert "x-envoy-ratelimited" not in replies[2].headers
    assert replies[3].headers["x-envoy-ratelimited"] == "true"  # Envoy answered alone
    # Another value under the same wildcard rule counts on its own.
    assert other.status == 200
    assert_headers(other, "3, 3;w=3600", 2, HOUR, t0, t1)
    # The counter is where envoyproxy/ratelimit would keep it (the 429s are counted too).
    client = stack.redis.client()
    try:
        assert client.get(f"example_path_{path}_{int(t0) - int(t0) % HOUR}") == "5"
    finally:
        client.close()


# -- hot reload --------------------------------------------------------------------------------


@pytest.mark.redis
def test_rules_reload_while_serving_and_a_bad_version_is_refused(
        stack: Stack, rules_dir: Path) -> None:
    assert stack.sidecar.proc is not None
    pid = stack.sidecar.proc.pid
    rlconfig = f"{stack.sidecar.http_url}/rlconfig?format=json"
    assert limit_seen(stack.envoy) == 3

    write_rules(rules_dir, rules_text(5))
    eventually(lambda: limit_seen(stack.envoy) == 5, timeout=RELOAD_SECONDS)

    def count(n: int) -> list[int]:
        path = fresh_path()
        return [stack.envoy.request(path).status for _ in range(n)]

    assert in_one_window(HOUR, lambda: count(6)) == [200] * 5 + [429]

    # An invalid version (an unknown key) is reported and leaves the running rules alone.
    bad = rules_text(7).replace("requests_per_unit: 7",
                                "requests_per_unit: 7\n      requests_per_minute: 2")
    write_rules(rules_dir, bad)
    error = eventually(lambda: get_json(rlconfig)["last_reload_error"], timeout=RELOAD_SECONDS)
    assert "rules.yaml" in error
    assert "requests_per_minute" in error
    assert limit_seen(stack.envoy) == 5
    assert [e["requests_per_unit"] for e in get_json(rlconfig)["limits"]] == [5]

    # The next valid version is picked up and clears the error.
    write_rules(rules_dir, rules_text(7))
    eventually(lambda: limit_seen(stack.envoy) == 7, timeout=RELOAD_SECONDS)
    assert get_json(rlconfig)["last_reload_error"] is None
    assert stack.sidecar.proc is not None
    assert stack.sidecar.proc.pid == pid
    assert stack.sidecar.proc.poll() is None


# -- Redis outage ------------------------------------------------------------------------------


FAILED_OPEN = "cluster.backend.ratelimit.failure_mode_allowed"


def assert_failed_open(envoy: EnvoyProcess, n: int) -> None:
    """``n`` requests pass quickly, each let through by Envoy's failure_mode_deny: false after
    the rate-limit call failed (not answered OK by the sidecar)."""
    before = envoy.stat(FAILED_OPEN)
    replies = [envoy.request(fresh_path()) for _ in range(n)]
    assert [r.status for r in replies] == [200] * n
    assert max(r.seconds for r in replies) < FAIL_OPEN_SECONDS, [r.seconds for r in replies]
    assert not any("x-ratelimit-limit" in r.headers for r in replies)
    assert envoy.stat(FAILED_OPEN) - before == n


@pytest.mark.redis
def test_requests_fail_open_while_redis_is_down_and_counting_resumes(
        own_redis: RedisServer, rules_dir: Path,
        start_sidecar: Callable[[Path, dict[str, str]], SidecarProcess],
        start_envoy: Callable[[int], EnvoyProcess]) -> None:
    sidecar = start_sidecar(rules_dir, redis_env(own_redis))
    envoy = start_envoy(sidecar.grpc_port)
    health = f"{sidecar.http_url}/healthcheck"
    assert sidecar.proc is not None

    def counting() -> bool:
        return "x-ratelimit-limit" in envoy.request(fresh_path()).headers

    def count_to_429() -> list[int]:
        path = fresh_path()
        return [envoy.request(path).status for _ in range(4)]

    assert counting()

    # Redis hangs: the sidecar's Redis timeout answers UNAVAILABLE before Envoy's own timeout.
    own_redis.pause()
    try:
        assert_failed_open(envoy, 3)
    finally:
        own_redis.resume()
    eventually(counting)
    # Replies that arrive after the timeouts must not be taken for newer commands' replies.
    assert in_one_window(HOUR, count_to_429) == [200, 200, 200, 429]

    # Redis is gone: connections are refused.
    own_redis.stop()
    assert_failed_open(envoy, 3)
    assert sidecar.proc.poll() is None
    eventually(lambda: http_status(health) == 500, timeout=3)

    # Back on the same port: the sidecar reconnects by itself.
    own_redis.start()
    eventually(counting, timeout=5)
    assert in_one_window(HOUR, count_to_429) == [200, 200, 200, 429]
    eventually(lambda: http_status(health) == 200, timeout=3)
    assert sidecar.proc.poll() is None


# -- the sidecar on its own --------------------------------------------------------------------


def test_sidecar_serves_the_shipped_rules_on_the_memory_store(
        start_sidecar: Callable[[Path, dict[str, str]], SidecarProcess]) -> None:
    sidecar = start_sidecar(ROOT / "config", {"BACKEND_TYPE": "memory"})
    assert http_status(f"{sidecar.http_url}/healthcheck") == 200

    request = rls_pb2.RateLimitRequest(domain="example", descriptors=[
        ratelimit_pb2.RateLimitDescriptor(entries=[
            ratelimit_pb2.RateLimitDescriptor.Entry(key="path", value="/slow")])])
    with grpc.insecure_channel(sidecar.grpc_address) as channel:
        response = rls_pb2_grpc.RateLimitServiceStub(channel).ShouldRateLimit(request, timeout=5)
    assert response.overall_code == rls_pb2.RateLimitResponse.OK
    (status,) = response.statuses
    assert status.code == rls_pb2.RateLimitResponse.OK
    assert status.current_limit.requests_per_unit == 3
    assert status.current_limit.unit == rls_pb2.RateLimitResponse.RateLimit.MINUTE
    assert status.limit_remaining == 2


# -- algorithms beyond the fixed window --------------------------------------------------------

ALGORITHM_RULES = """\
domain: example
descriptors:
  - key: path
    value: /sliding/*
    rate_limit: {unit: hour, requests_per_unit: 3, algorithm: sliding_window}
  - key: path
    value: /tokens/*
    rate_limit: {unit: hour, requests_per_unit: 3, algorithm: token_bucket}
  - key: path
    value: /paced/*
    rate_limit: {unit: hour, requests_per_unit: 3600, algorithm: leaky_bucket}
"""


@pytest.mark.redis
def test_sliding_window_and_token_bucket_through_envoy(
        redis_clean: RedisServer, rules_dir: Path,
        start_sidecar: Callable[[Path, dict[str, str]], SidecarProcess],
        start_envoy: Callable[[int], EnvoyProcess]) -> None:
    write_rules(rules_dir, ALGORITHM_RULES)
    envoy = start_envoy(start_sidecar(rules_dir, redis_env(redis_clean)).grpc_port)
    for prefix in ("/sliding/", "/tokens/"):
        path = prefix + uuid.uuid4().hex[:8]
        replies = [envoy.request(path) for _ in range(5)]
        assert [r.status for r in replies] == [200, 200, 200, 429, 429], prefix
        remaining = [int(r.headers["x-ratelimit-remaining"]) for r in replies]
        assert remaining == [2, 1, 0, 0, 0], prefix
        assert replies[0].headers["x-ratelimit-limit"] == "3, 3;w=3600"
    # A refused token-bucket request learns when one token is back: 20 minutes at 3/hour.
    assert 1190 <= int(replies[-1].headers["x-ratelimit-reset"]) <= 1200
    client = redis_clean.client()
    try:
        assert client.hget(f"example_path_{path}_token_bucket", "t") is not None
    finally:
        client.close()
    # Leaky bucket: one a second, strictly paced: a burst of two gets 200 then 429.
    paced = "/paced/" + uuid.uuid4().hex[:8]
    assert [envoy.request(paced).status for _ in range(2)] == [200, 429]
