"""The Lua scripts and the Python functions decide identically, on a real Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.model import RATE_ALGORITHMS
from sidecar.storage.algorithms import Check, Rate, run_checks
from sidecar.storage.redis.scripts import parse_reply, script_args, script_source
from tests.support.servers import RedisServer

HOUR = 3_600_000.0
pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def lua(redis_server: RedisServer) -> Iterator[tuple[redis.Redis, object]]:
    client = redis.Redis(host="127.0.0.1", port=redis_server.port)
    yield client, client.register_script(script_source())
    client.close()


def python_side(states: dict[str, list[float] | None], checks: list[Check], now: int,
                atomic: bool) -> list[tuple[bool, int, float, int]]:
    current = [states.get(c.key) for c in checks]
    new, verdicts = run_checks(current, checks, float(now), atomic)
    for c, s in zip(checks, new, strict=True):
        if s is not None:
            states[c.key] = s
    return [tuple(v) for v in verdicts]  # type: ignore[misc]


# (time step, hits, a second descriptor in an atomic request, charged always: /v1/report)
step = st.tuples(st.integers(0, 400_000), st.integers(0, 5), st.booleans(), st.booleans())


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(algorithm=st.sampled_from(RATE_ALGORITHMS), limit=st.integers(1, 12),
       burst=st.integers(1, 12), count_rejected=st.booleans(),
       steps=st.lists(step, min_size=1, max_size=40))
def test_same_decisions_on_memory_and_redis(lua: tuple[redis.Redis, object], algorithm: str,
                                            limit: int, burst: int, count_rejected: bool,
                                            steps: list[tuple[int, int, bool, bool]]) -> None:
    client, script = lua
    client.flushall()
    lim = Rate(limit, HOUR, burst, count_rejected and algorithm in ("fixed_window",
                                                                      "sliding_window"))
    states: dict[str, list[float] | None] = {}
    now = 1_700_000_000_000
    for dt, hits, second, always in steps:
        now += dt
        window_end = now - now % int(HOUR) + HOUR
        key = f"{algorithm}_k_{now - now % int(HOUR)}" if algorithm == "fixed_window" else \
            f"{algorithm}_k"
        checks = [Check(key, algorithm, lim._replace(always=always), hits, 2 * HOUR,
                        window_end)]
        if second:  # a second descriptor in an atomic request
            checks.append(Check("tb_other", "token_bucket", Rate(2, HOUR, 2, False), 1,
                                2 * HOUR, window_end))
        expected = python_side(states, checks, now, atomic=second)
        keys, argv = script_args(checks, now, atomic=second)
        got = [tuple(v) for v in parse_reply(script(keys=keys, args=argv))]  # type: ignore[operator]
        assert got == expected, (algorithm, now, hits)
