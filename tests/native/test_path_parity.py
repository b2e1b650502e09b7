"""The whole native path against the whole Python path, over the wire: random rule sets, engine
options and request streams, sent as gRPC calls to the fast transport with the Python
connection and the Python engine on one side, and with the native connection whose engine
answers inside Rust on the other (one fake clock, one fixed jitter sequence, the local cache
on or off). Every byte written back (answers, errors, headers) must be equal, and so must the
metrics both sides export."""

from __future__ import annotations

import asyncio
from types import ModuleType
from typing import Any

from envoy.service.ratelimit.v3 import rls_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.h2 import frames as fr
from sidecar.h2.connection import Connection
from sidecar.h2.native_connection import NativeConnection
from sidecar.limiter.engine import Engine
from sidecar.limiter.local_cache import LocalCache
from sidecar.limiter.native import NativeEngineAdapter
from sidecar.limiter.options import EngineOptions
from sidecar.model import Descriptor
from sidecar.observability.health import Health
from sidecar.observability.metrics import Metrics
from sidecar.rules.matcher import override_stats_key
from sidecar.service import RateLimitService
from sidecar.storage.memory import MemoryStore
from sidecar.transports.fast import export_native_counts, rls_server
from tests.conftest import FakeClock
from tests.h2.conftest import answered_in_rust
from tests.h2.test_fuzz import FakeTransport
from tests.h2.wire import grpc_body, request_headers
from tests.native.kit import T0_MS, Call, FixedRandom, Scenario, engine_options, scenarios
from tests.native.wire_harness import PARITY_OPTIONS, first_difference
from tests.transports.test_observability import sample

JITTER = st.lists(st.integers(0, 10_000), min_size=1, max_size=4)


def on_the_wire(call: Call) -> bytes | None:
    """``call`` as RateLimitRequest bytes; None when Envoy could not send it (usage reported
    after the fact, a limit other than Envoy's override)."""
    if call.charge_always:
        return None
    request = rls_pb2.RateLimitRequest(domain=call.domain, hits_addend=call.hits_addend)
    for d in call.descriptors:
        wire = request.descriptors.add()
        for key, value in d.entries:
            wire.entries.add(key=key, value=value)
        if d.hits_addend is not None:
            wire.hits_addend.value = d.hits_addend
        if d.limit is not None:
            if d.limit.stats_key != override_stats_key("d", d.entries):
                return None
            wire.limit.requests_per_unit = d.limit.requests_per_unit
            wire.limit.unit = int(d.limit.unit)
    return request.SerializeToString()  # type: ignore[no-any-return]


def request_frames(sid: int, message: bytes) -> bytes:
    from sidecar.h2.hpack import encode_block

    block = encode_block([(n.encode(), v.encode()) for n, v in request_headers()])
    return fr.headers(sid, block, False, fr.DEFAULT_MAX_FRAME) + fr.data(
        sid, grpc_body(message), True)


def serve(native: ModuleType | None, scenario: Scenario, options: EngineOptions,
          jitter: list[int], local_cache: bool, clock: FakeClock) -> tuple[Any, Metrics]:
    metrics = Metrics()
    health = Health()
    if native is None:
        engine: Any = Engine(MemoryStore(), options, metrics, clock, FixedRandom(jitter),
                             local_cache=LocalCache(1 << 24, metrics.local_cache_hit)
                             if local_cache else None)
        engine.set_rules(scenario.rules)
        return rls_server(RateLimitService(engine, metrics), health, PARITY_OPTIONS), metrics
    adapter = NativeEngineAdapter(native, options, clock, jitter=jitter,
                                  local_cache_bytes=1 << 24 if local_cache else 0)
    adapter.set_rules(scenario.rules)
    fast = native.FastService(adapter.engine, services=["", "ratelimit"], clock=clock)
    service = RateLimitService(adapter, metrics)
    metrics.add_source(lambda: adapter.export_stats(metrics))
    metrics.add_source(export_native_counts(native, fast, service))
    server = rls_server(service, health, PARITY_OPTIONS, native=native, native_service=fast)
    answered_in_rust(server)
    return server, metrics


def converse(native: ModuleType | None, scenario: Scenario, options: EngineOptions,
             jitter: list[int], local_cache: bool, start_ms: int) -> tuple[bytes, bytes]:
    """What one connection wrote for the scenario's stream, one call per read, and the
    metrics exposition afterwards."""
    clock = FakeClock(start_ms / 1000)
    loop = asyncio.new_event_loop()

    async def run() -> tuple[bytes, bytes]:
        owner, metrics = serve(native, scenario, options, jitter, local_cache, clock)
        connection: Any = NativeConnection(owner, owner.native) if native is not None \
            else Connection(owner)
        transport = FakeTransport()
        connection.connection_made(transport)
        connection.data_received(fr.PREFACE + fr.settings({}))
        sid = 1
        for call in scenario.stream:
            clock.advance(call.step_ms / 1000)
            message = on_the_wire(call)
            if message is None:
                continue
            connection.data_received(request_frames(sid, message))
            sid += 2
            for _ in range(3):  # the Python connection answers from a task
                await asyncio.sleep(0)
        connection.connection_lost(None)
        return bytes(transport.out), metrics.exposition()

    try:
        return loop.run_until_complete(asyncio.wait_for(run(), 30))
    finally:
        loop.close()


METRICS = ("ratelimit_service_rate_limit_total_hits_total",
           "ratelimit_service_rate_limit_over_limit_total",
           "ratelimit_service_rate_limit_near_limit_total",
           "ratelimit_service_rate_limit_within_limit_total",
           "ratelimit_service_rate_limit_shadow_mode_total",
           "ratelimit_service_rate_limit_over_limit_with_local_cache_total",
           "ratelimit_service_global_shadow_mode_total",
           "ratelimit_service_rate_limit_domain_not_found_total",
           "viva_ratelimit_local_cache_hits_total",
           "ratelimit_service_total_requests_total",
           "ratelimit_service_response_time_seconds_count",
           "ratelimit_service_should_rate_limit_error_total")


def series(exposition: bytes) -> dict[str, float]:
    """The non-zero samples of METRICS by their line's name and labels (a rule series the
    Python engine recorded 0 hits in, a peek, is exposed at 0 there and not at all natively)."""
    out = {}
    for line in exposition.decode().splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in METRICS and (value := sample(line, name)):
            out[line.rsplit(" ", 1)[0]] = value
    return out


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios(whole_seconds=True), options=engine_options(), jitter=JITTER,
       local_cache=st.booleans(), start=st.integers(0, 400 * 86_400))
def test_same_bytes_and_metrics_on_both_paths(native: ModuleType, scenario: Scenario,
                                              options: EngineOptions, jitter: list[int],
                                              local_cache: bool, start: int) -> None:
    start_ms = T0_MS + start * 1000
    python, python_metrics = converse(None, scenario, options, jitter, local_cache, start_ms)
    rust, rust_metrics = converse(native, scenario, options, jitter, local_cache, start_ms)
    assert rust == python, first_difference(python, rust)
    assert series(rust_metrics) == series(python_metrics)


def test_descriptors_survive_the_wire() -> None:
    call = Call(0, "d", (Descriptor((("a", "x"),), 2, None),), 1, False)
    message = on_the_wire(call)
    assert message is not None
    request = rls_pb2.RateLimitRequest.FromString(message)
    assert (request.domain, request.hits_addend) == ("d", 1)
    assert request.descriptors[0].hits_addend.value == 2
