"""Redis killed, hung (SIGSTOP) and restarted under a steady stream of checks.

For every failure policy, in-process (the Python engine and the native one): during the
outage each answer is what the policy says, no call waits past REDIS_TIMEOUT (+ a small margin;
once the breaker opens, not even that), and after recovery Redis counts again, one by one.
Over gRPC, against a real sidecar process: UNAVAILABLE fast during the outage, health
NOT_SERVING then SERVING, the process never dies; and with ``allow`` it stays SERVING and
answers OK throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from sidecar.errors import StorageError
from sidecar.limiter.engine import Engine
from sidecar.limiter.native import NativeEngineAdapter
from sidecar.limiter.native_redis import NativeRedis
from sidecar.limiter.options import EngineOptions
from sidecar.limiter.policy import FailureHandler
from sidecar.limiter.statuses import NullStats
from sidecar.model import Code
from sidecar.storage.memory import MemoryStore
from sidecar.storage.redis.breaker import Breaker
from sidecar.storage.redis.options import RedisOptions
from sidecar.storage.redis.resp import RespConnection
from sidecar.storage.redis.scripts import script_sha, script_source
from sidecar.storage.redis.store import RedisStore
from tests.h2.conftest import native_module
from tests.limiter.kit import desc, make_rules
from tests.support.servers import RedisServer, SidecarProcess
from tests.transports.kit import RULES, descriptor, health_status, request, write_rules

pytestmark = pytest.mark.redis

TIMEOUT = 0.05  # REDIS_TIMEOUT of these tests
MARGIN = 0.3  # scheduling noise on a busy 2-core test machine (seen: 141 ms over under load);
# still far below what a caller would wait without the timeout (seconds)
COOLDOWN = 0.2  # VIVA_BREAKER_COOLDOWN: recovery is noticed this fast

ENGINE_RULES = """
domain: d
descriptors:
  - key: user
    rate_limit: {unit: hour, requests_per_unit: 100000}
  - key: tokens
    rate_limit: {unit: hour, requests_per_unit: 100000, algorithm: token_bucket}
"""

# What each policy answers while Redis is away.
EXPECTED = {"unavailable": "error", "allow": "ok", "deny": "over", "local": "ok"}


@dataclass
class Sample:
    latency: float
    outcome: str  # ok | over | error
    by_policy: bool  # answered by the failure policy, not by Redis


class Fault:
    """Breaks a RedisServer one way and mends it."""

    def __init__(self, server: RedisServer, kind: str) -> None:
        self.server = server
        self.kind = kind

    def apply(self) -> None:
        proc = self.server.proc
        assert proc is not None
        if self.kind == "pause":
            self.server.pause()
        elif self.kind == "kill":
            proc.kill()  # SIGKILL: connections vanish, the port refuses
            proc.wait()
        else:  # restart: a clean shutdown, then (in mend) a new process on the same port
            self.server.stop()

    def mend(self) -> None:
        if self.kind == "pause":
            self.server.resume()
        else:
            self.server.start()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["python", "native"])
def engine_kind(request: pytest.FixtureRequest) -> str:
    """The Python engine on RedisStore, or the native one on its own Redis link."""
    if request.param == "native":
        native_module()
    return str(request.param)


@contextlib.asynccontextmanager
async def engine_on(server: RedisServer, policy: str,
                    kind: str = "python") -> AsyncIterator[tuple[Any, list[str]]]:
    if kind == "native":
        async with native_engine_on(server, policy) as found:
            yield found
        return
    decided: list[str] = []
    store = RedisStore(RedisOptions(url=server.url, timeout=TIMEOUT, breaker_cooldown=COOLDOWN))
    engine = Engine(store, EngineOptions(expiration_jitter_max_seconds=0),
                    policy=FailureHandler(policy, MemoryStore(), lambda _d, p: decided.append(p)))
    engine.set_rules(make_rules(ENGINE_RULES))
    try:
        yield engine, decided
    finally:
        await store.close()


class PolicyCount(NullStats):
    """The native engine's failure-policy decisions, as the Python engine's listener sees
    them."""

    def __init__(self, decided: list[str]) -> None:
        self.decided = decided

    def over_limit_with_local_cache(self, domain: str, stats_key: str, hits: int) -> None:
        return None

    def local_cache_hits_counted(self, descriptors: int) -> None:
        return None

    def policy_decision(self, domain: str, policy: str, count: int = 1) -> None:
        self.decided.extend([policy] * count)


class CountedNative:
    """The native engine; its decisions exported after each call."""

    def __init__(self, engine: NativeEngineAdapter, decided: list[str]) -> None:
        self.engine = engine
        self.sink = PolicyCount(decided)

    async def should_rate_limit(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await self.engine.should_rate_limit(*args, **kwargs)
        finally:
            self.engine.export_stats(self.sink)


@contextlib.asynccontextmanager
async def native_engine_on(server: RedisServer,
                           policy: str) -> AsyncIterator[tuple[Any, list[str]]]:
    native = native_module()
    decided: list[str] = []
    opts = RedisOptions(url=server.url, timeout=TIMEOUT, breaker_cooldown=COOLDOWN)
    engine = NativeEngineAdapter(native, EngineOptions(expiration_jitter_max_seconds=0),
                                 failure_policy=policy, script_sha=script_sha(),
                                 script_source=script_source())
    redis = NativeRedis(engine.engine, RespConnection(opts, native.reply_end),
                        Breaker(opts.label, opts.breaker_failures, opts.breaker_cooldown),
                        lambda: engine.compiled)
    engine.attach_redis(redis)
    engine.set_rules(make_rules(ENGINE_RULES))
    try:
        yield CountedNative(engine, decided), decided
    finally:
        await redis.close()


async def stream(call: Callable[[], Awaitable[Sample]], seconds: float = 0.0,
                 until: Callable[[list[Sample]], bool] | None = None,
                 limit: float = 10.0) -> list[Sample]:
    """Calls one after another every ~2 ms for ``seconds``, or until ``until`` holds."""
    samples: list[Sample] = []
    started = time.monotonic()
    while True:
        samples.append(await call())
        elapsed = time.monotonic() - started
        if until is None and elapsed >= seconds:
            return samples
        if until is not None and until(samples):
            return samples
        assert elapsed < limit, f"no recovery after {limit}s: {samples[-5:]}"
        await asyncio.sleep(0.002)


def engine_call(engine: Any, decided: list[str]) -> Callable[[], Awaitable[Sample]]:
    async def call() -> Sample:
        before = len(decided)
        started = time.monotonic()
        try:
            d = await engine.should_rate_limit("d", [desc(("user", "u")), desc(("tokens", "u"))])
            outcome = "ok" if d.overall == Code.OK else "over"
        except StorageError:
            outcome = "error"
        return Sample(time.monotonic() - started, outcome, len(decided) > before)

    return call


def recovered(samples: list[Sample], n: int = 20) -> bool:
    tail = samples[-n:]
    return len(tail) == n and all(s.outcome == "ok" and not s.by_policy for s in tail)


@pytest.mark.parametrize("fault", ["kill", "pause", "restart"])
@pytest.mark.parametrize("policy", ["unavailable", "allow", "deny", "local"])
async def test_engine_rides_out_redis_faults(own_redis: RedisServer, policy: str,
                                             fault: str, engine_kind: str) -> None:
    breaker = Fault(own_redis, fault)
    async with engine_on(own_redis, policy, engine_kind) as (engine, decided):
        call = engine_call(engine, decided)
        healthy = await stream(call, 0.2)
        assert all(s.outcome == "ok" and not s.by_policy for s in healthy)
        breaker.apply()
        try:
            outage = await stream(call, 0.6)
        finally:
            breaker.mend()
        assert {s.outcome for s in outage} == {EXPECTED[policy]}, [s.outcome for s in outage]
        assert all(s.by_policy for s in outage)
        assert set(decided) == {policy}
        after = await stream(call, until=recovered)
        worst = max(s.latency for s in healthy + outage + after)
        assert worst < TIMEOUT + MARGIN, f"a call waited {worst * 1000:.0f} ms"
        if fault == "pause":  # the hung calls ran out their timeout, the rest failed fast
            assert sum(s.latency >= TIMEOUT * 0.9 for s in outage) <= 6
        # counting resumes on Redis, one request at a time
        remaining = []
        for _ in range(5):
            d = await engine.should_rate_limit("d", [desc(("user", "u"))])
            remaining.append(d.statuses[0].remaining)
        assert [a - b for a, b in itertools.pairwise(remaining)] == [1] * 4
        client = own_redis.client()
        try:
            (key,) = client.keys("d_user_u_*")
            assert int(client.get(key)) == 100000 - remaining[-1]
        finally:
            client.close()


# -- a real sidecar process over gRPC ---------------------------------------------------------


def sidecar_env(server: RedisServer, policy: str) -> dict[str, str]:
    return {"BACKEND_TYPE": "redis", "REDIS_URL": f"127.0.0.1:{server.port}",
            "REDIS_TIMEOUT": f"{TIMEOUT * 1000:.0f}ms", "VIVA_FAILURE_POLICY": policy,
            "VIVA_BREAKER_COOLDOWN": f"{COOLDOWN * 1000:.0f}ms", "LOG_LEVEL": "warn"}


def grpc_call(stub: object) -> Callable[[], Awaitable[Sample]]:
    async def call() -> Sample:
        started = time.monotonic()
        try:
            reply = await stub.ShouldRateLimit(  # type: ignore[attr-defined]
                request("test-domain", descriptor(("two", "x")), descriptor(("free", "y"))),
                timeout=2)
            outcome = "ok" if reply.overall_code == 1 else "over"
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
            outcome = "error"
        return Sample(time.monotonic() - started, outcome, outcome == "error")

    return call


async def wait_health(address: str, expected: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while (found := await health_status(address, "ratelimit")) != expected:
        assert time.monotonic() < deadline, f"health stayed {found}, expected {expected}"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def sidecar_process(tmp_path: Path, server: RedisServer,
                          policy: str) -> AsyncIterator[tuple[SidecarProcess, object]]:
    rules = tmp_path / "rules"
    write_rules(rules, {"rules.yaml": RULES.replace("requests_per_unit: 2}",
                                                    "requests_per_unit: 1000000}")})
    sidecar = SidecarProcess(rules, env=sidecar_env(server, policy)).start()
    try:
        async with grpc.aio.insecure_channel(sidecar.grpc_address) as channel:
            from envoy.service.ratelimit.v3 import rls_pb2_grpc

            yield sidecar, rls_pb2_grpc.RateLimitServiceStub(channel)
    finally:
        code = sidecar.stop()
        assert code in (0, -15), f"the sidecar exited with {code}:\n{sidecar.log()}"


@pytest.mark.parametrize("fault", ["kill", "pause"])
async def test_sidecar_process_unavailable_fast_then_serving(tmp_path: Path,
                                                             own_redis: RedisServer,
                                                             fault: str) -> None:
    async with sidecar_process(tmp_path, own_redis, "unavailable") as (sidecar, stub):
        call = grpc_call(stub)
        await wait_health(sidecar.grpc_address, "SERVING")
        healthy = await stream(call, 0.3)
        assert {s.outcome for s in healthy} == {"ok"}
        breaker = Fault(own_redis, fault)
        breaker.apply()
        try:
            outage = await stream(call, 0.6)
            await wait_health(sidecar.grpc_address, "NOT_SERVING")  # the 1 s store probe
            outage += await stream(call, 0.2)
            assert sidecar.proc is not None and sidecar.proc.poll() is None
        finally:
            breaker.mend()
        assert {s.outcome for s in outage} == {"error"}
        await wait_health(sidecar.grpc_address, "SERVING")
        after = await stream(call, until=lambda s: len(s) >= 20 and all(
            x.outcome == "ok" for x in s[-20:]))
        worst = max(s.latency for s in outage + after)
        # gRPC adds its own ~1-2 ms per call on top of the store's bound
        assert worst < TIMEOUT + MARGIN + 0.02, f"a call waited {worst * 1000:.0f} ms"


async def test_sidecar_process_allow_stays_serving(tmp_path: Path,
                                                   own_redis: RedisServer) -> None:
    async with sidecar_process(tmp_path, own_redis, "allow") as (sidecar, stub):
        call = grpc_call(stub)
        await wait_health(sidecar.grpc_address, "SERVING")
        own_redis.stop()
        try:
            outage = await stream(call, 1.5)  # longer than the store probe's period
            assert await health_status(sidecar.grpc_address, "ratelimit") == "SERVING"
        finally:
            own_redis.start()
        assert {s.outcome for s in outage} == {"ok"}
        assert max(s.latency for s in outage) < TIMEOUT + MARGIN + 0.02
        metrics = await asyncio.to_thread(_metrics, sidecar.http_url)
        assert 'viva_ratelimit_failure_policy_decisions_total{domain="test-domain",' \
               'policy="allow"}' in metrics
        assert "counter store is unreachable" in sidecar.log()


def _metrics(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        return str(response.read().decode())
