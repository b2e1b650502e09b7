"""The native engine's Redis batches on a real redis-server decide exactly as the Python engine
on its RedisStore: the same random rule sets and request streams, one fake clock, one fixed
jitter sequence, each side in a database of its own. The native pipeline is also byte for byte
the one redis-py packs for the commands the Python store sends, and a Redis that cannot be
reached is answered by the same failure policies."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.connection import Connection

from sidecar.errors import StorageError
from sidecar.limiter.engine import Engine
from sidecar.limiter.local_cache import LocalCache
from sidecar.limiter.native import NativeEngineAdapter, PlannedBatch
from sidecar.limiter.options import EngineOptions
from sidecar.limiter.policy import FailureHandler
from sidecar.model import FailurePolicy
from sidecar.storage.memory import MemoryStore
from sidecar.storage.redis.options import RedisOptions
from sidecar.storage.redis.scripts import script_sha, script_source
from sidecar.storage.redis.store import RedisStore
from tests.conftest import FakeClock
from tests.limiter.kit import desc, make_rules
from tests.native.kit import T0_MS, FixedRandom, Scenario, engine_options, scenarios
from tests.support.ports import free_port
from tests.support.servers import RedisServer

pytestmark = pytest.mark.redis

# Every TTL at least a minute, so nothing expires (in Redis' real time) during an example.
JITTER = st.lists(st.integers(60, 299), min_size=1, max_size=4)
PYTHON_DB, NATIVE_DB = 0, 1


class RespClient:
    """A bare socket to redis-server that sends a batch's pipelines and reads its replies."""

    def __init__(self, native: ModuleType, port: int, db: int) -> None:
        self.native = native
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""
        self.round_trip(b"*2\r\n$6\r\nSELECT\r\n$1\r\n%d\r\n" % db, 1)

    def round_trip(self, commands: bytes, expected: int) -> bytes:
        self.sock.sendall(commands)
        while (end := self.native.reply_end(self.buf, expected)) is None:
            chunk = self.sock.recv(65536)
            assert chunk, "redis-server closed the connection"
            self.buf += chunk
        replies, self.buf = self.buf[:end], self.buf[end:]
        return replies

    def run(self, planned: PlannedBatch) -> list[bytes]:
        """Every round trip of the batch; the pipelines sent, in order."""
        sent = []
        while (commands := planned.batch.commands) is not None:
            sent.append(commands)
            planned.batch.feed(self.round_trip(commands, planned.batch.expected))
        return sent

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def server(redis_server: RedisServer) -> Iterator[RedisServer]:
    yield redis_server


def packed(commands: Sequence[tuple[Any, ...]]) -> bytes:
    """The bytes redis-py writes for ``commands`` as one pipeline."""
    return b"".join(Connection().pack_commands(commands))


class Side:
    """One engine of the comparison: the Python one on RedisStore, recording what it sends."""

    def __init__(self, server: RedisServer, options: EngineOptions, jitter: list[int],
                 local_cache: bool, clock: FakeClock) -> None:
        self.store = RedisStore(RedisOptions(url=f"{server.url[:-1]}{PYTHON_DB}", timeout=5.0))
        self.sent: list[tuple[Any, ...]] = []
        send = self.store._send

        async def recording(commands: Sequence[tuple[Any, ...]]) -> list[Any]:
            self.sent.extend(commands)
            return await send(commands)

        self.store._send = recording
        cache = LocalCache(1 << 24) if local_cache else None
        self.engine = Engine(self.store, options, clock=clock, rng=FixedRandom(jitter),
                             local_cache=cache)


def native_side(native: ModuleType, options: EngineOptions, jitter: list[int],
                local_cache: bool, clock: FakeClock, **extra: Any) -> NativeEngineAdapter:
    return NativeEngineAdapter(native, options, clock, jitter=jitter,
                               local_cache_bytes=1 << 24 if local_cache else 0,
                               script_sha=script_sha(), script_source=script_source(), **extra)


def outcome(result: Any) -> Any:
    return (type(result), str(result)) if isinstance(result, Exception) else result


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(scenario=scenarios(whole_seconds=False, short_ok=False), options=engine_options(),
       jitter=JITTER, local_cache=st.booleans(), forget_script=st.booleans())
def test_same_decisions_and_commands_on_redis(native: ModuleType, server: RedisServer,
                                              scenario: Scenario, options: EngineOptions,
                                              jitter: list[int], local_cache: bool,
                                              forget_script: bool) -> None:
    options = EngineOptions(**{**options.__dict__, "expiration_jitter_max_seconds": 300})
    admin = server.client()
    admin.flushall()
    if forget_script:  # as after a restart: the native batch must load it again
        admin.script_flush()
    admin.close()
    asyncio.run(_compare_stream(native, server, scenario, options, jitter, local_cache))


async def _compare_stream(native: ModuleType, server: RedisServer, scenario: Scenario,
                          options: EngineOptions, jitter: list[int], local_cache: bool) -> None:
    clock = FakeClock(T0_MS / 1000)
    python = Side(server, options, jitter, local_cache, clock)
    ours = native_side(native, options, jitter, local_cache, clock)
    python.engine.set_rules(scenario.rules)
    ours.set_rules(scenario.rules)
    client = RespClient(native, server.port, NATIVE_DB)
    try:
        for step, call in enumerate(scenario.stream):
            clock.advance(call.step_ms / 1000)
            python.sent.clear()
            try:
                expected: Any = await python.engine.should_rate_limit(
                    call.domain, list(call.descriptors), call.hits_addend,
                    charge_always=call.charge_always)
            except Exception as exc:
                expected = exc
            planned = ours.redis_batch([(call.domain, call.descriptors, call.hits_addend,
                                         call.charge_always)])
            pipelines = client.run(planned)
            got = ours.decisions(planned)[0]
            assert outcome(got) == outcome(expected), (step, call)
            # the charge: not stop-increment's MGET, nor a NOSCRIPT retry (SCRIPT LOAD …)
            charges = [p for p in pipelines if p.split(b"\r\n")[2] not in (b"MGET", b"SCRIPT")]
            assert b"".join(charges[:1]) == packed(python.sent), (step, call)
    finally:
        client.close()
        await python.store.close()


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(scenario=scenarios(whole_seconds=False, short_ok=False), options=engine_options(),
       jitter=JITTER, sizes=st.lists(st.integers(1, 4), max_size=8))
def test_a_batch_of_requests_decides_as_concurrent_python_requests(
        native: ModuleType, server: RedisServer, scenario: Scenario, options: EngineOptions,
        jitter: list[int], sizes: list[int]) -> None:
    # stop-increment mode reads counters in a round trip of its own per Python request, and
    # concurrent Python requests record their refusals in the local cache in the order they
    # resume (a batch's followers before its leader), neither of which is fixed; the
    # single-request property covers both.
    options = EngineOptions(**{**options.__dict__, "expiration_jitter_max_seconds": 300,
                               "stop_increment_when_over_limit": False})
    admin = server.client()
    admin.flushall()
    admin.close()
    asyncio.run(_compare_batches(native, server, scenario, options, jitter, False, sizes))


async def _compare_batches(native: ModuleType, server: RedisServer, scenario: Scenario,
                           options: EngineOptions, jitter: list[int], local_cache: bool,
                           sizes: list[int]) -> None:
    clock = FakeClock(T0_MS / 1000)
    python = Side(server, options, jitter, local_cache, clock)
    ours = native_side(native, options, jitter, local_cache, clock)
    python.engine.set_rules(scenario.rules)
    ours.set_rules(scenario.rules)
    client = RespClient(native, server.port, NATIVE_DB)
    stream = list(scenario.stream)
    try:
        for size in sizes or [len(stream)]:
            group, stream = stream[:size], stream[size:]
            if not group:
                break
            clock.advance(group[0].step_ms / 1000)
            expected = await asyncio.gather(*(
                python.engine.should_rate_limit(c.domain, list(c.descriptors), c.hits_addend,
                                                charge_always=c.charge_always)
                for c in group), return_exceptions=True)
            planned = ours.redis_batch([(c.domain, c.descriptors, c.hits_addend,
                                         c.charge_always) for c in group])
            client.run(planned)
            got = ours.decisions(planned)
            assert [outcome(g) for g in got] == [outcome(e) for e in expected], group
    finally:
        client.close()
        await python.store.close()


@pytest.mark.parametrize("policy", ["allow", "deny", "local", "unavailable"])
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(scenario=scenarios(whole_seconds=True, short_ok=False), options=engine_options(),
       jitter=JITTER)
def test_an_unreachable_redis_is_answered_by_the_same_failure_policy(
        native: ModuleType, policy: str, scenario: Scenario, options: EngineOptions,
        jitter: list[int]) -> None:
    asyncio.run(_compare_failures(native, policy, scenario, options, jitter))


async def _compare_failures(native: ModuleType, policy: str, scenario: Scenario,
                            options: EngineOptions, jitter: list[int]) -> None:
    clock = FakeClock(T0_MS / 1000)
    dead = free_port()  # nothing listens there
    store = RedisStore(RedisOptions(url=f"redis://127.0.0.1:{dead}/0", timeout=2.0,
                                    breaker_failures=1_000_000))
    python = Engine(store, options, clock=clock, rng=FixedRandom(jitter),
                    policy=FailureHandler(FailurePolicy(policy), fallback=MemoryStore()))
    ours = native_side(native, options, jitter, False, clock, failure_policy=policy)
    python.set_rules(scenario.rules)
    ours.set_rules(scenario.rules)
    try:
        for step, call in enumerate(scenario.stream):
            clock.advance(call.step_ms / 1000)
            try:
                expected: Any = await python.should_rate_limit(
                    call.domain, list(call.descriptors), call.hits_addend,
                    charge_always=call.charge_always)
            except Exception as exc:
                expected = exc
            planned = ours.redis_batch([(call.domain, call.descriptors, call.hits_addend,
                                         call.charge_always)])
            while planned.batch.commands is not None:
                try:
                    socket.create_connection(("127.0.0.1", dead), timeout=2).close()
                except OSError as exc:
                    planned.batch.fail(f"redis 127.0.0.1:{dead} unavailable: {exc}", True)
            got = ours.decisions(planned)[0]
            if isinstance(expected, StorageError):
                assert isinstance(got, StorageError) and got.transient, (step, call)
            else:
                assert outcome(got) == outcome(expected), (step, call)
    finally:
        await store.close()


def test_the_native_pipeline_is_what_redis_py_packs(native: ModuleType) -> None:
    """A hand-written case, readable on its own: INCRBY + EXPIRE and EVALSHA's layout."""
    rules = make_rules("""
domain: d
descriptors:
  - key: plain
    rate_limit: {unit: minute, requests_per_unit: 5}
  - key: tokens
    rate_limit: {unit: minute, requests_per_unit: 5, algorithm: token_bucket, burst: 7}
""")
    clock = FakeClock(1_000_000.5)
    ours = native_side(native, EngineOptions(expiration_jitter_max_seconds=300), [42], False,
                       clock)
    ours.set_rules(rules)
    planned = ours.redis_batch([("d", [desc(("plain", "x")), desc(("tokens", "y"), hits=3)], 0,
                                 False)])
    sha = script_sha()
    assert planned.batch.commands == packed([
        ("INCRBY", "d_plain_x_999960", 1), ("EXPIRE", "d_plain_x_999960", 102),
        ("EVALSHA", sha, 1, "d_tokens_y_token_bucket", 1_000_000_500, 0, "token_bucket", 5,
         "60000", 7, 3, 0, 97000, "1000060500")])
    assert planned.batch.expected == 3


def test_redis_client_sees_what_the_native_batch_wrote(native: ModuleType,
                                                       server: RedisServer) -> None:
    """The keys and values a native batch leaves in Redis are the reference's layout."""
    admin = server.client()
    admin.flushall()
    clock = FakeClock(1_000_000)
    ours = native_side(native, EngineOptions(expiration_jitter_max_seconds=0), [0], False,
                       clock)
    ours.set_rules(make_rules("""
domain: d
descriptors:
  - key: k
    rate_limit: {unit: hour, requests_per_unit: 5}
"""))
    client = RespClient(native, server.port, NATIVE_DB)
    try:
        for _ in range(2):
            planned = ours.redis_batch([("d", [desc(("k", "v"))], 2, False)])
            client.run(planned)
        reader = redis.Redis(host="127.0.0.1", port=server.port, db=NATIVE_DB)
        assert reader.get("d_k_v_997200") == b"4"
        assert 0 < reader.ttl("d_k_v_997200") <= 3600
        reader.close()
    finally:
        client.close()
        admin.close()
