"""redis-py clients for each REDIS_TYPE, with bounded waits everywhere.

A standalone client whose pool makes callers wait (up to the timeout) for a free connection, a
Sentinel-managed one that follows failovers, a Cluster client with redis-py's own retries off
(topology.py refreshes the slot map instead). Every setting comes from RedisOptions.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as rex
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

from sidecar.errors import SettingsError
from sidecar.storage.redis.options import (
    RedisOptions,
    cluster_nodes,
    redis_url,
    sentinel_address,
)


def _credentials(auth: str) -> dict[str, Any]:
    """REDIS_AUTH's two forms: ``password`` or ``user:password`` (an ACL user)."""
    if not auth:
        return {}
    user, sep, password = auth.partition(":")
    return {"username": user, "password": password} if sep else {"password": user}


def _tls_kwargs(opts: RedisOptions) -> dict[str, Any]:
    return {"ssl_ca_certs": opts.tls_ca or None, "ssl_certfile": opts.tls_cert or None,
            "ssl_keyfile": opts.tls_key or None,
            "ssl_cert_reqs": "none" if opts.tls_skip_verify else "required",
            "ssl_check_hostname": not opts.tls_skip_verify}


def _socket_kwargs(opts: RedisOptions) -> dict[str, Any]:
    """Bounded waits everywhere, raw bytes, no background health checks."""
    return {"socket_timeout": opts.timeout, "socket_connect_timeout": opts.timeout,
            "decode_responses": False, "health_check_interval": 0}


def pool_kwargs(opts: RedisOptions, tls: bool) -> dict[str, Any]:
    """Connection-pool arguments for a standalone or Sentinel-managed Redis."""
    kwargs: dict[str, Any] = {
        **_socket_kwargs(opts),
        "max_connections": max(1, opts.pool_size),
        "timeout": opts.timeout,  # wait for a free connection at most this long
        "db": opts.db,
        # One immediate retry on a fresh connection when a pooled one turns out dead (e.g.
        # Redis restarted). Never on a timeout: the INCRBYs may have been applied already.
        "retry": Retry(NoBackoff(), 1, supported_errors=(rex.ConnectionError,)),
        **_credentials(opts.auth),
    }
    if tls:
        kwargs.update(_tls_kwargs(opts))
    return kwargs


def make_client(opts: RedisOptions) -> aioredis.Redis:
    """A standalone client whose pool makes callers wait (up to the timeout) when every
    connection is busy, as the reference's pool does, instead of failing at once."""
    url = redis_url(opts)
    try:
        pool = aioredis.BlockingConnectionPool.from_url(
            url, **pool_kwargs(opts, url.startswith("rediss://")))
    except ValueError as exc:
        raise SettingsError(f"REDIS_URL {opts.url!r} is not a Redis URL: {exc}") from exc
    return aioredis.Redis.from_pool(pool)


class BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """The Sentinel-managed pool (asks the sentinels where the master is, reconnects after a
    failover) with the blocking pool's bounded wait for a free connection."""


def make_sentinel_client(opts: RedisOptions) -> tuple[aioredis.Redis, Sentinel]:
    """A client of the master the sentinels name, and the sentinels' client (to close with
    it); REDIS_SENTINEL_AUTH logs into the sentinels, REDIS_AUTH into the data nodes."""
    name, sentinels = sentinel_address(opts)
    tls = _tls_kwargs(opts) if opts.tls else {}
    sentinel_kwargs = {**_socket_kwargs(opts), **_credentials(opts.sentinel_auth), **tls}
    if opts.tls:
        sentinel_kwargs["ssl"] = True
    manager = Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs)
    kwargs = pool_kwargs(opts, opts.tls)
    if opts.tls:
        kwargs["ssl"] = True
    client: aioredis.Redis = manager.master_for(name, redis_class=aioredis.Redis,
                                                connection_pool_class=BlockingSentinelPool,
                                                **kwargs)
    return client, manager


def make_cluster_client(opts: RedisOptions) -> RedisCluster:
    """redis-py's RedisCluster, with its own retries off: a retry there closes every
    connection and sleeps 250 ms; here a failed round trip fails fast and the slot map is
    refreshed in the background instead (ClusterTopology)."""
    if opts.db:
        raise SettingsError(f"VIVA_REDIS_DB={opts.db}: a Redis Cluster has only database 0")
    kwargs: dict[str, Any] = {**_socket_kwargs(opts), **_credentials(opts.auth)}
    if opts.tls:
        kwargs.update(ssl=True, **_tls_kwargs(opts))
    return RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in cluster_nodes(opts)],
        max_connections=max(1, opts.pool_size), retry=Retry(NoBackoff(), 0),
        require_full_coverage=False, **kwargs)
