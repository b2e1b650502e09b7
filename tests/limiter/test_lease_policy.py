"""Leases when the store fails: the domain's failure policy, against a Redis that is really not
there (a closed loopback port) or that goes away and comes back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from sidecar.errors import LeaseNotFound, StorageError
from sidecar.limiter.engine import Engine
from sidecar.limiter.lease_ids import encode_id
from sidecar.limiter.leases import Leases
from sidecar.limiter.policy import FailureHandler
from sidecar.model import FailurePolicy
from sidecar.storage.memory import MemoryStore
from sidecar.storage.redis.options import RedisOptions
from sidecar.storage.redis.store import RedisStore
from tests.conftest import FakeClock
from tests.limiter.kit import make_rules
from tests.support.ports import free_port
from tests.support.servers import RedisServer

pytestmark = pytest.mark.redis


def rules(policy: str) -> str:
    return f"""
domain: {policy}
failure_policy: {policy}
descriptors:
  - key: user
    rate_limit: {{algorithm: concurrency, max: 2, lease_ttl: 60s}}
  - key: trial
    shadow_mode: true
    rate_limit: {{algorithm: concurrency, max: 1, lease_ttl: 60s}}
"""


DEFAULT = "domain: plain\ndescriptors:\n  - key: user\n" \
          "    rate_limit: {algorithm: concurrency, max: 2, lease_ttl: 60s}\n"
USER = [(("user", "u1"),)]


def make_leases(store: RedisStore, clock: FakeClock, fallback: MemoryStore) -> Leases:
    engine = Engine(store, clock=clock,
                    policy=FailureHandler(FailurePolicy.UNAVAILABLE, fallback))
    engine.set_rules(make_rules(DEFAULT, *(rules(p) for p in ("allow", "deny", "local"))))
    return Leases(engine)


@pytest.fixture
def fallback() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def down(clock: FakeClock, fallback: MemoryStore) -> AsyncIterator[Leases]:
    store = RedisStore(RedisOptions(url=f"redis://127.0.0.1:{free_port()}/0", timeout=0.5))
    yield make_leases(store, clock, fallback)
    await store.close()


def some_id(domain: str) -> str:
    return encode_id("A" * 24, domain, USER, None)


async def test_unavailable_raises_for_every_operation(down: Leases) -> None:
    with pytest.raises(StorageError):
        await down.acquire("plain", USER)
    with pytest.raises(StorageError):
        await down.renew(some_id("plain"))
    with pytest.raises(StorageError):
        await down.release(some_id("plain"))


async def test_allow_allows_without_a_lease(down: Leases, clock: FakeClock) -> None:
    for _ in range(3):
        decision = await down.acquire("allow", USER)
        assert decision.allowed and decision.lease_id is None
        status = decision.statuses[0]
        assert status.active is None and status.limit is not None
    renewed = await down.renew(some_id("allow"))  # the holder keeps going
    assert renewed.allowed and renewed.statuses[0].expires_at_ms == clock() * 1000 + 60_000
    assert (await down.release(some_id("allow"))).allowed


async def test_deny_refuses_new_holders_only(down: Leases) -> None:
    refused = await down.acquire("deny", USER)
    assert not refused.allowed and refused.lease_id is None
    assert not refused.statuses[0].allowed
    shadow = await down.acquire("deny", [(("trial", "t"),)])
    assert shadow.allowed and shadow.lease_id is None
    assert (await down.renew(some_id("deny"))).allowed
    assert (await down.release(some_id("deny"))).allowed


async def test_local_holds_the_slots_in_the_fallback(down: Leases,
                                                     fallback: MemoryStore) -> None:
    first = await down.acquire("local", USER)
    second = await down.acquire("local", USER)
    assert first.allowed and second.allowed and second.statuses[0].active == 2
    assert not (await down.acquire("local", USER)).allowed
    await down.release(first.lease_id or "")
    assert (await down.acquire("local", USER)).allowed
    # a lease the fallback never saw (held in Redis before it failed) is adopted on renewal
    adopted = await down.renew(some_id("local"))
    assert adopted.allowed and adopted.statuses[0].active == 3  # over max: it was held
    assert (await down.release(some_id("local"))).statuses[0].active == 2
    # a release of a lease Redis holds is done: it expires there with its TTL
    assert (await down.release(encode_id("C" * 24, "local", USER, None))).allowed


async def test_local_through_an_outage_and_back(clock: FakeClock,
                                                fallback: MemoryStore) -> None:
    server = RedisServer().start()
    store = RedisStore(RedisOptions(url=server.url, timeout=0.5))
    leases = make_leases(store, clock, fallback)
    try:
        before = await leases.acquire("local", USER)  # held in Redis
        server.stop()
        during = await leases.acquire("local", USER)  # held in the fallback
        assert during.allowed and during.statuses[0].active == 1
        assert (await leases.renew(before.lease_id or "")).allowed  # adopted by the fallback
        server.start()  # empty: no persistence
        await _until_reachable(store)
        # Redis does not know either lease: both are found in the fallback
        assert (await leases.renew(during.lease_id or "")).allowed
        assert (await leases.release(before.lease_id or "")).allowed
        assert (await leases.release(during.lease_id or "")).allowed
        with pytest.raises(LeaseNotFound):  # Redis is back: it knows, and so does the fallback
            await leases.release(during.lease_id or "")
        after = await leases.acquire("local", USER)  # back in Redis
        client = server.client()
        assert client.zcard("local_user_u1_concurrency") == 1
        client.close()
        assert after.allowed
    finally:
        await store.close()
        server.stop()


async def _until_reachable(store: RedisStore) -> None:
    """The breaker may be open after the outage: it lets a probe through after its cooldown."""
    for _ in range(100):
        try:
            await store.ping()
            return
        except StorageError:
            await asyncio.sleep(0.1)
    raise AssertionError("redis did not come back")
