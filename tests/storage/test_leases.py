"""Lease operations on every store (memory, Redis, Redis Cluster), and the Lua scripts against
their Python twin (storage/leases.py) on random operation sequences."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.storage.base import Store
from sidecar.storage.leases import LeaseKind, LeaseOp, LeaseState, run_lease
from sidecar.storage.memory import MemoryStore
from sidecar.storage.redis.options import RedisOptions
from sidecar.storage.redis.store import RedisStore
from tests.support.servers import RedisServer
from tests.topologies import RedisCluster

ACQUIRE, RENEW, RELEASE = LeaseKind.ACQUIRE, LeaseKind.RENEW, LeaseKind.RELEASE
HOUR = 3_600_000
KEY = "ws_identifier_u_concurrency"


class Backend:
    """A store, its clock for the memory store, and a look inside (``server.client()``)."""

    def __init__(self, store: Store, server: Any) -> None:
        self.store = store
        self.server = server
        self.now_ms = 1_000_000_000

    async def run(self, *ops: LeaseOp) -> list[LeaseState]:
        return await self.store.lease(list(ops), self.now_ms)

    def held(self, key: str) -> int:
        if self.server is None:
            assert isinstance(self.store, MemoryStore)
            entry = self.store._counters.get(key)
            return len(entry[0]) if entry is not None else 0
        with contextlib.closing(self._client(key)) as client:
            return int(client.zcard(key))

    def pttl(self, key: str) -> int:
        with contextlib.closing(self._client(key)) as client:
            return int(client.pttl(key))

    def _client(self, key: str) -> Any:
        if isinstance(self.server, RedisCluster):
            return self.server.node_for_key(key).client()
        return self.server.client()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis),
                        pytest.param("cluster", marks=pytest.mark.redis)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        b = Backend(MemoryStore(), None)
    elif request.param == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        b = Backend(RedisStore(RedisOptions(url=cluster.startup_nodes, type="cluster",
                                            timeout=2.0)), cluster)
    else:
        server: RedisServer = request.getfixturevalue("redis_clean")
        b = Backend(RedisStore(RedisOptions(url=server.url, timeout=2.0)), server)
    yield b
    await b.store.close()


def acquire(token: str, limit: int = 3, ttl_ms: int = HOUR, key: str = KEY,
            force: bool = False) -> LeaseOp:
    return LeaseOp(ACQUIRE, key, token, ttl_ms, limit, force)


async def test_acquire_up_to_max_then_refuse(backend: Backend) -> None:
    states = [(await backend.run(acquire(f"t{i}")))[0] for i in range(4)]
    assert [(s.ok, s.active) for s in states] == [(True, 1), (True, 2), (True, 3), (False, 3)]
    assert all(s.expires_ms == s.now_ms + HOUR for s in states[:3])
    refused = states[3]
    assert refused.expires_ms == 0 and refused.earliest_ms == states[0].expires_ms
    assert backend.held(KEY) == 3


async def test_release_and_renew(backend: Backend) -> None:
    await backend.run(acquire("a"), acquire("b"))
    (released,) = await backend.run(LeaseOp(RELEASE, KEY, "a"))
    assert (released.ok, released.active, released.expires_ms) == (True, 1, 0)
    (again,) = await backend.run(LeaseOp(RELEASE, KEY, "a"))
    assert (again.ok, again.active) == (False, 1)
    (renewed,) = await backend.run(LeaseOp(RENEW, KEY, "b", 2 * HOUR))
    assert renewed.ok and renewed.expires_ms == renewed.now_ms + 2 * HOUR
    (unknown,) = await backend.run(LeaseOp(RENEW, KEY, "a", HOUR))
    assert (unknown.ok, unknown.expires_ms, unknown.active) == (False, 0, 1)
    (last,) = await backend.run(LeaseOp(RELEASE, KEY, "b"))
    assert (last.ok, last.active, last.earliest_ms) == (True, 0, 0)
    assert backend.held(KEY) == 0


async def test_shadow_mode_takes_a_slot_over_max(backend: Backend) -> None:
    states = await backend.run(acquire("a", limit=1), acquire("b", limit=1, force=True))
    assert [(s.ok, s.active) for s in states] == [(True, 1), (True, 2)]


async def test_one_call_many_keys(backend: Backend) -> None:
    """Keys in many hash slots: a Cluster sends each to its node, in one round trip each."""
    keys = [f"ws_region_r{i}_concurrency" for i in range(12)]
    states = await backend.run(*(acquire("x", limit=1, key=k) for k in keys))
    assert all(s.ok and s.active == 1 for s in states)
    states = await backend.run(*(acquire("y", limit=1, key=k) for k in keys))
    assert not any(s.ok for s in states)
    assert [backend.held(k) for k in keys] == [1] * 12


@pytest.mark.redis
@pytest.mark.parametrize("backend", ["redis", "cluster"], indirect=True)
async def test_the_set_lives_as_long_as_its_longest_lease(backend: Backend) -> None:
    # The set outlives its longest lease by the scripts' one-second clean-up margin (the set's
    # own expiry must never drop a lease its scores still hold), and no longer.
    await backend.run(acquire("short", ttl_ms=60_000), acquire("long", ttl_ms=HOUR))
    assert HOUR - 5000 < backend.pttl(KEY) <= HOUR + 1000
    await backend.run(LeaseOp(RELEASE, KEY, "long"))
    assert 55_000 < backend.pttl(KEY) <= 61_000
    await backend.run(LeaseOp(RELEASE, KEY, "short"))
    assert backend.pttl(KEY) == -2  # the last lease gone: the key is gone


@pytest.mark.redis
@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_leases_expire_on_the_servers_clock(backend: Backend) -> None:
    """Real time: a 300 ms lease is held until its expiry and dropped by the next script."""
    (first,) = await backend.run(acquire("a", limit=1, ttl_ms=300))
    sent = time.monotonic()
    (second,) = await backend.run(acquire("b", limit=1, ttl_ms=300))
    if time.monotonic() - sent < 0.25:  # still well inside the first lease's 300 ms
        assert not second.ok
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        (state,) = await backend.run(acquire("c", limit=1, ttl_ms=HOUR))
        if state.ok:
            assert state.now_ms >= first.expires_ms  # never before the expiry
            assert backend.held(KEY) == 1
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the expired lease was never dropped")


@pytest.mark.redis
@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_a_server_that_forgot_the_scripts_gets_them_again(backend: Backend) -> None:
    await backend.run(acquire("a"))
    with contextlib.closing(backend.server.client()) as client:
        client.script_flush()
    states = await backend.run(acquire("b"), LeaseOp(RENEW, KEY, "a", HOUR),
                               LeaseOp(RELEASE, KEY, "b"))
    assert [s.ok for s in states] == [True, True, True]


# -- the scripts and their Python twin -------------------------------------------------------

op = st.tuples(st.sampled_from(list(LeaseKind)), st.integers(0, 5), st.integers(1, 40),
               st.integers(1, 4), st.booleans(), st.sampled_from(["k1", "k2"]))


@pytest.mark.redis
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op, min_size=1, max_size=30))
def test_lua_and_python_agree(redis_server: RedisServer,
                              ops: list[tuple[LeaseKind, int, int, int, bool, str]]) -> None:
    """Each operation runs in Redis, then in Python at the clock the script read: the answers
    are equal to the millisecond, expiries included (TTLs of a few ms expire mid-sequence)."""
    asyncio.run(_agree(redis_server, ops))


async def _agree(server: RedisServer, ops: list[tuple[LeaseKind, int, int, int, bool, str]]
                 ) -> None:
    store = RedisStore(RedisOptions(url=server.url, timeout=2.0))
    tables: dict[str, dict[str, int]] = {}
    try:
        with contextlib.closing(server.client()) as client:
            client.delete("k1", "k2")
        for kind, token, ttl, limit, force, key in ops:
            lease_op = LeaseOp(kind, key, f"t{token}", ttl, limit, force)
            (got,) = await store.lease([lease_op], 0)
            expected = run_lease(tables.setdefault(key, {}), lease_op, got.now_ms)
            assert got == expected, (lease_op, tables[key])
    finally:
        await store.close()
