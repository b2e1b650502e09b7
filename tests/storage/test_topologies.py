"""Smoke tests of the real Redis Cluster / Sentinel topologies in tests/topologies.py.

redis-py only: these check the harness, not the sidecar.
"""

from __future__ import annotations

import contextlib
import os
import time

import pytest
import redis
from redis.sentinel import Sentinel

from tests import topologies
from tests.topologies import RedisCluster, RedisSentinel

pytestmark = pytest.mark.redis

# Harmless once conftest.py imports them too (see the tests/topologies.py docstring).
redis_cluster = topologies.redis_cluster
redis_sentinel = topologies.redis_sentinel

INCR_BOTH = """
local a = redis.call('INCRBY', KEYS[1], ARGV[1])
local b = redis.call('INCRBY', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], 60000)
redis.call('PEXPIRE', KEYS[2], 60000)
return {a, b}
"""


def test_cluster_addresses(redis_cluster: RedisCluster) -> None:
    assert len(redis_cluster.masters) == 3
    assert len(redis_cluster.replicas) == 3
    addresses = redis_cluster.startup_nodes.split(",")
    assert addresses == [f"127.0.0.1:{n.port}" for n in redis_cluster.nodes]
    for master in redis_cluster.masters:
        assert [r.master_id for r in redis_cluster.replicas_of(master)] == [master.node_id]


def test_cluster_spreads_keys_over_all_masters(redis_cluster: RedisCluster) -> None:
    client = redis_cluster.client()
    try:
        for i in range(100):
            client.set(f"viva:spread:{i}", i)
        assert client.get("viva:spread:42") == "42"
    finally:
        client.close()
    sizes = []
    for master in redis_cluster.masters:
        with contextlib.closing(master.client()) as c:
            sizes.append(c.dbsize())
    assert all(size > 0 for size in sizes), sizes
    assert sum(sizes) == 100


def test_cluster_hash_tagged_multi_key_eval(redis_cluster: RedisCluster) -> None:
    client = redis_cluster.client()
    try:
        keys = ["{viva:tag}:second", "{viva:tag}:minute"]
        assert client.eval(INCR_BOTH, 2, *keys, 3) == [3, 3]
        assert client.eval(INCR_BOTH, 2, *keys, 2) == [5, 5]
        # Both keys live on the one master that owns the tag's slot.
        owner = redis_cluster.node_for_key(keys[0])
        with contextlib.closing(owner.client()) as c:
            assert c.mget(keys) == ["5", "5"]
        with pytest.raises(redis.ResponseError, match="same slot"), \
                contextlib.closing(owner.client()) as c:
            c.eval(INCR_BOTH, 2, "viva:a", "viva:b", 1)
    finally:
        client.close()


def test_cluster_replica_takes_over_a_killed_master(redis_cluster: RedisCluster) -> None:
    client = redis_cluster.client()
    try:
        key = "{viva:failover}:counter"
        assert client.incr(key) == 1
        victim = redis_cluster.node_for_key(key)
        with contextlib.closing(victim.client()) as c:
            assert c.wait(1, 2000) == 1  # the increment reached the replica
        victim.kill()
        started = time.monotonic()
        promoted = redis_cluster.wait_failover(victim, timeout=10)
        assert time.monotonic() - started < 8
        assert promoted.role == "master"
        assert redis_cluster.node_for_key(key) is promoted
        assert client.incr(key) == 2  # redis-py follows the MOVED to the new owner
    finally:
        client.close()
    assert redis_cluster.health_problem() is not None  # the next test gets a fresh cluster


def test_sentinel_addresses(redis_sentinel: RedisSentinel) -> None:
    ports = [s.port for s in redis_sentinel.sentinels]
    assert redis_sentinel.master_name == "mymaster"
    assert redis_sentinel.sentinel_addresses == ",".join(f"127.0.0.1:{p}" for p in ports)
    assert redis_sentinel.reference_url == "mymaster," + redis_sentinel.sentinel_addresses
    sentinel = Sentinel(redis_sentinel.sentinel_hosts, socket_timeout=1)
    try:
        assert sentinel.discover_master("mymaster") == ("127.0.0.1", redis_sentinel.master.port)
    finally:
        for s in sentinel.sentinels:
            s.close()


def test_sentinel_failover_moves_writes_to_the_new_master(
        redis_sentinel: RedisSentinel) -> None:
    sentinel = redis_sentinel.client()
    master = sentinel.master_for("mymaster", decode_responses=True)
    try:
        assert master.incr("viva:sentinel:counter") == 1
        with contextlib.closing(redis_sentinel.master.client()) as c:
            assert c.wait(1, 2000) == 1
        old_port = redis_sentinel.master.port
        redis_sentinel.kill_master()
        started = time.monotonic()
        host, port = redis_sentinel.wait_failover(timeout=10)
        elapsed = time.monotonic() - started
        assert elapsed < 5, f"failover took {elapsed:.1f}s"
        assert port != old_port
        assert redis_sentinel.master.port == port
        # The same client re-resolves the master through the sentinels.
        assert master.incr("viva:sentinel:counter") == 2
        with contextlib.closing(redis_sentinel.master.client()) as c:
            assert c.get("viva:sentinel:counter") == "2"
            assert c.info("replication")["role"] == "master"
        assert sentinel.discover_master("mymaster") == (host, port)
    finally:
        master.close()
        for s in sentinel.sentinels:
            s.close()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_stop_leaves_no_process_even_when_paused() -> None:
    topology = RedisSentinel().start()
    pids = [n.proc.pid for n in [topology.master, topology.replica, *topology.sentinels]
            if n.proc is not None]
    topology.replica.pause()
    topology.sentinels[0].pause()
    topology.stop()
    assert all(_gone(pid) for pid in pids)
    assert not topology.dir.exists()
