"""Every algorithm on the real clock, through gRPC to a sidecar process, on the memory store and
on a real redis-server.

Per store, one sidecar process and, for each algorithm, one key called every 20 ms for 2.5 s by
its own client, all algorithms at once. Every answer is checked against what the algorithm may
answer given only when the call was sent and when it came back (tests/transports/bounds.py): a slow
machine widens what is possible, it cannot make a correct answer fail. The limits are 3 per
second, so state is written and read across many window edges and expiries; the streams start
half-way through a second, so state that expires at a whole second (rather than a window after
it was written) shows as calls allowed too early.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from tests.support.servers import RedisServer, SidecarProcess
from tests.transports.bounds import (
    Call,
    check_bucket,
    check_fixed_window,
    check_refusals_hold,
    check_sliding_log,
    check_sliding_window,
)
from tests.transports.kit import descriptor, request, write_rules

OK = rls_pb2.RateLimitResponse.OK
LIMIT, WINDOW_MS = 3, 1000.0
EVERY, SECONDS = 0.02, 2.5

RULES = "domain: clock\ndescriptors:\n" + "".join(
    f"  - key: algorithm\n    value: {name}\n    rate_limit: {{unit: second, "
    f"requests_per_unit: {LIMIT}{extra}}}\n"
    for name, extra in [
        ("fixed_window", ""),
        ("fixed_window_uncounted", ", count_rejected: false"),
        ("sliding_window", ", algorithm: sliding_window"),
        ("sliding_log", ", algorithm: sliding_log"),
        ("token_bucket", ", algorithm: token_bucket"),
        ("leaky_bucket", ", algorithm: leaky_bucket"),
    ])

Checker = Callable[[list[Call]], list[str]]

CHECKS: dict[str, Checker] = {
    # the reference's INCRBY counts refused calls too, and reports whole seconds
    "fixed_window": lambda c: check_fixed_window(c, LIMIT, WINDOW_MS, count_rejected=True),
    "fixed_window_uncounted": lambda c: check_fixed_window(c, LIMIT, WINDOW_MS, False)
    + check_refusals_hold(c),
    "sliding_window": lambda c: check_sliding_window(c, LIMIT, WINDOW_MS)
    + check_refusals_hold(c),
    "sliding_log": lambda c: check_sliding_log(c, LIMIT, WINDOW_MS) + check_refusals_hold(c),
    "token_bucket": lambda c: check_bucket(c, LIMIT, LIMIT, WINDOW_MS) + check_refusals_hold(c),
    # GCRA with the default burst of 1: a bucket of one token
    "leaky_bucket": lambda c: check_bucket(c, 1, LIMIT, WINDOW_MS) + check_refusals_hold(c),
}


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def sidecar(request: pytest.FixtureRequest,
                  tmp_path: Path) -> AsyncIterator[SidecarProcess]:
    env = {"LOG_LEVEL": "warn"}
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_clean")
        # generous: a slow round trip must not turn into the failure policy's answer
        env |= {"BACKEND_TYPE": "redis", "REDIS_URL": server.url, "REDIS_TIMEOUT": "5s"}
    write_rules(tmp_path / "rules", {"clock.yaml": RULES})
    process = SidecarProcess(tmp_path / "rules", env=env)
    await asyncio.to_thread(process.start)
    yield process
    code = process.stop()
    assert code in (0, -15), f"the sidecar exited with {code}:\n{process.log()}"


def _reset_ms(status: rls_pb2.RateLimitResponse.DescriptorStatus) -> float:
    reset = status.duration_until_reset
    return float(reset.seconds * 1000 + reset.nanos // 1_000_000)


async def _stream(stub: rls_pb2_grpc.RateLimitServiceStub, algorithm: str,
                  start: float) -> list[Call]:
    """Call every EVERY seconds from ``start`` for SECONDS; a late call is not made up for."""
    calls: list[Call] = []
    tick = 0
    while (due := start + tick * EVERY) < start + SECONDS:
        await asyncio.sleep(max(0.0, due - time.time()))
        sent = time.time()
        reply = await stub.ShouldRateLimit(
            request("clock", descriptor(("algorithm", algorithm))), timeout=10)
        answered = time.time()
        status = reply.statuses[0]
        calls.append(Call.measured(sent, answered, status.code == OK,
                                   status.limit_remaining, _reset_ms(status)))
        tick = max(tick + 1, math.ceil((time.time() - start) / EVERY))
    return calls


async def test_every_algorithm_answers_as_the_real_clock_says(
        sidecar: SidecarProcess) -> None:
    now = time.time()
    start = math.floor(now - 0.5) + 1.5  # the next half second
    async with grpc.aio.insecure_channel(sidecar.grpc_address) as channel:
        stub = rls_pb2_grpc.RateLimitServiceStub(channel)
        streams = await asyncio.gather(*(_stream(stub, name, start) for name in CHECKS))
    failures = []
    for (name, check), calls in zip(CHECKS.items(), streams, strict=True):
        allowed = sum(c.allowed for c in calls)
        # not vacuous: enough calls, and both answers given many times over
        assert len(calls) >= 40 and 5 <= allowed <= len(calls) - 10, (name, len(calls), allowed)
        failures += [f"{name}: {problem}" for problem in check(calls)]
    assert not failures, "\n".join(failures[:30])
