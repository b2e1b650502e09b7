"""Two sidecar processes on one redis-server, under concurrent acquires, releases and renewals
sent to both at once: never more than ``max`` leases held, at any time (a property test).

Checked three ways: every answer's ``active``; Redis itself, polled throughout each round; and
the test's own count of the leases it holds, which must equal what Redis holds after each
round. Acquires are exact: with no release in a round, exactly as many are allowed as there
were free slots.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.servers import RedisServer, SidecarProcess
from tests.transports.rest.kit import LOOPBACK, write_rules

pytestmark = pytest.mark.redis

MAX = 5
RULES = f"""
domain: pool
descriptors:
  - key: identifier
    rate_limit: {{algorithm: concurrency, max: {MAX}, lease_ttl: 60s}}
"""
_RUNS = itertools.count()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[RedisServer, list[SidecarProcess]]]:
    server = RedisServer().start()
    rules = write_rules(tmp_path_factory.mktemp("pair") / "rules", {"pool.yaml": RULES})
    env = {**LOOPBACK, "LOG_LEVEL": "warn", "BACKEND_TYPE": "redis", "REDIS_URL": server.url,
           "REDIS_TIMEOUT": "5s"}
    sidecars = [SidecarProcess(rules, env=env) for _ in range(2)]
    try:
        for sidecar in sidecars:
            sidecar.start()
        yield server, sidecars
    finally:
        for sidecar in sidecars:
            sidecar.stop()
        server.stop()


# One round: acquires (spread over both sidecars), releases of leases held, renewals of all.
round_ = st.tuples(st.integers(0, 12), st.integers(0, 4), st.booleans())


@settings(max_examples=20, deadline=None)
@given(rounds=st.lists(round_, min_size=1, max_size=5))
def test_never_more_than_max_held(pair: tuple[RedisServer, list[SidecarProcess]],
                                  rounds: list[tuple[int, int, bool]]) -> None:
    asyncio.run(_run(pair, rounds, f"user-{next(_RUNS)}"))


async def _run(pair: tuple[RedisServer, list[SidecarProcess]],
               rounds: list[tuple[int, int, bool]], identifier: str) -> None:
    server, sidecars = pair
    urls = [s.http_url for s in sidecars]
    key = f"pool_identifier_{identifier}_concurrency"
    client = redis.asyncio.Redis(host="127.0.0.1", port=server.port)
    held: list[str] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        call = _Caller(session, urls, identifier)
        try:
            for acquires, releases, renew in rounds:
                await _round(call, client, key, held, acquires, releases, renew)
        finally:
            await asyncio.gather(*(call.release(i, lease) for i, lease in enumerate(held)))
            await client.aclose()


async def _round(call: _Caller, client: Any, key: str, held: list[str], acquires: int,
                 releases: int, renew: bool) -> None:
    before = len(held)
    gone = held[:releases]
    kept = held[releases:]
    scores = {lease: await client.zscore(key, lease.partition(".")[0]) for lease in kept}
    watching = asyncio.Event()
    peak = asyncio.create_task(_watch(client, key, watching))
    answers = await asyncio.gather(
        *(call.acquire(i) for i in range(acquires)),
        *(call.release(i, lease) for i, lease in enumerate(gone)),
        *(call.renew(i, lease) for i, lease in enumerate(kept) if renew))
    watching.set()
    assert await peak <= MAX
    taken = [a for a in answers[:acquires] if a["allowed"]]
    released = sum(1 for status in answers[acquires:acquires + len(gone)] if status == 200)
    assert released == len(gone)  # every lease we hold is known to both sidecars
    assert all(a["active"] <= MAX for a in answers[:acquires])
    assert all(a["active"] == MAX for a in answers[:acquires] if not a["allowed"])
    # exact: as many allowed as slots were free, plus at most those freed meanwhile
    free = MAX - before
    assert min(acquires, free) <= len(taken) <= min(acquires, free + released)
    held[:] = kept + [a["lease_id"] for a in taken]
    assert await client.zcard(key) == len(held) <= MAX
    if renew:  # each renewal moved its lease's expiry on (the server's clock only goes on)
        for lease, old in scores.items():
            assert await client.zscore(key, lease.partition(".")[0]) >= old


async def _watch(client: Any, key: str, done: asyncio.Event) -> int:
    """The most leases Redis held at any poll until ``done``."""
    peak = 0
    while True:
        peak = max(peak, int(await client.zcard(key)))
        if done.is_set():
            return peak
        await asyncio.sleep(0)


class _Caller:
    """The REST calls, alternating between the two sidecars."""

    def __init__(self, session: aiohttp.ClientSession, urls: list[str], identifier: str) -> None:
        self.session = session
        self.urls = urls
        self.identifier = identifier

    async def acquire(self, i: int) -> dict[str, Any]:
        body = {"namespace": "pool", "identifier": self.identifier}
        async with self.session.post(f"{self.urls[i % 2]}/v1/leases", json=body) as resp:
            assert resp.status == 200, await resp.text()
            return dict(await resp.json())

    async def release(self, i: int, lease_id: str) -> int:
        async with self.session.delete(f"{self.urls[(i + 1) % 2]}/v1/leases/{lease_id}") as resp:
            return resp.status

    async def renew(self, i: int, lease_id: str) -> int:
        url = f"{self.urls[i % 2]}/v1/leases/{lease_id}/renew"
        async with self.session.post(url) as resp:
            assert resp.status == 200, await resp.text()
            return resp.status


def test_the_rules_file_is_what_the_pair_serves(pair: tuple[RedisServer, list[SidecarProcess]],
                                                tmp_path: Path) -> None:
    """Not vacuous: both sidecars answer for the pool, sharing one set of slots."""

    async def check() -> None:
        async with aiohttp.ClientSession() as session:
            call = _Caller(session, [s.http_url for s in pair[1]], "probe")
            answers = [await call.acquire(i) for i in range(MAX + 1)]
            assert [a["active"] for a in answers] == [1, 2, 3, 4, 5, 5]
            assert [a["allowed"] for a in answers] == [True] * MAX + [False]
            for i, a in enumerate(answers[:MAX]):
                assert await call.release(i, a["lease_id"]) == 200

    asyncio.run(check())
