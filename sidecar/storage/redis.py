"""Counters in Redis, laid out exactly as envoyproxy/ratelimit lays them out.

Fixed windows are ``INCRBY key hits`` + ``EXPIRE key ttl`` for every counter of a request, in one
pipelined round trip (no MULTI), so this service and the reference can share one Redis while a
fleet migrates. Every redis-py exception becomes StorageError here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from sidecar.errors import SettingsError, StorageError
from sidecar.limiter.algorithms import Check, Verdict
from sidecar.storage.base import Increment
from sidecar.storage.scripts import parse_reply, script_args, script_sha, script_source


@dataclass(frozen=True)
class RedisOptions:
    """How to reach one Redis; built by settings from REDIS_* variables or flags."""

    url: str
    socket_type: str = "tcp"  # tcp | unix, for the reference's bare host:port / path form
    auth: str = ""  # "password" or "user:password"
    tls: bool = False
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_skip_verify: bool = False
    pool_size: int = 10
    timeout: float = 0.1  # seconds, connect and each command
    db: int = 0


def redis_url(opts: RedisOptions) -> str:
    """``opts.url`` as a redis://, rediss:// or unix:// URL; SettingsError when it is none.

    Accepts the reference's bare forms too: ``host:port`` and a unix socket path.
    """
    url = opts.url.strip()
    if not url:
        raise SettingsError("REDIS_URL is empty; expected host:port, a unix socket path, or a "
                            "redis://, rediss:// or unix:// URL")
    if "://" in url:
        if opts.tls and url.startswith("redis://"):
            return "rediss://" + url[len("redis://"):]
        return url
    if opts.socket_type == "unix" or url.startswith("/"):
        return f"unix://{quote(url)}?db={opts.db}"
    host, sep, port = url.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SettingsError(f"REDIS_URL {url!r} is not host:port; expected e.g. localhost:6379 "
                            "or redis://localhost:6379/0")
    return f"{'rediss' if opts.tls else 'redis'}://{host}:{port}/{opts.db}"


def pool_kwargs(opts: RedisOptions, tls: bool) -> dict[str, Any]:
    """Connection-pool arguments for ``opts``: bounded waits everywhere, no blind retries."""
    kwargs: dict[str, Any] = {
        "max_connections": max(1, opts.pool_size),
        "timeout": opts.timeout,  # wait for a free connection at most this long
        "socket_timeout": opts.timeout,
        "socket_connect_timeout": opts.timeout,
        "decode_responses": False,
        "health_check_interval": 0,
        "db": opts.db,
        # One immediate retry on a fresh connection when a pooled one turns out dead (e.g.
        # Redis restarted). Never on a timeout: the INCRBYs may have been applied already.
        "retry": Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
    }
    if opts.auth:
        user, sep, password = opts.auth.partition(":")
        kwargs.update({"username": user, "password": password} if sep else {"password": user})
    if tls:
        kwargs.update({"ssl_ca_certs": opts.tls_ca or None,
                       "ssl_certfile": opts.tls_cert or None, "ssl_keyfile": opts.tls_key or None,
                       "ssl_cert_reqs": "none" if opts.tls_skip_verify else "required",
                       "ssl_check_hostname": not opts.tls_skip_verify})
    return kwargs


def make_client(opts: RedisOptions) -> aioredis.Redis:
    """A client whose pool makes callers wait (up to the timeout) when every connection is busy,
    as the reference's pool does, instead of failing with "Too many connections"."""
    url = redis_url(opts)
    try:
        pool = aioredis.BlockingConnectionPool.from_url(
            url, **pool_kwargs(opts, url.startswith("rediss://")))
    except ValueError as exc:
        raise SettingsError(f"REDIS_URL {opts.url!r} is not a Redis URL: {exc}") from exc
    return aioredis.Redis.from_pool(pool)


class RedisStore:
    """Fixed-window counters in one standalone Redis."""

    name = "redis"

    def __init__(self, opts: RedisOptions, client: aioredis.Redis | None = None) -> None:
        self.opts = opts
        self.timeout = opts.timeout
        self.client = client if client is not None else make_client(opts)

    async def increment(self, increments: Sequence[Increment], now: float) -> list[int]:
        if not increments:
            return []
        pipe = self.client.pipeline(transaction=False)
        for key, hits, ttl in increments:
            pipe.incrby(key, hits)
            pipe.expire(key, ttl)
        replies = await self._run(pipe.execute())
        return [int(v) for v in replies[0::2]]

    async def run(self, increments: Sequence[Increment], checks: Sequence[Check], now_ms: int,
                  atomic: bool) -> tuple[list[int], list[Verdict]]:
        """INCRBY + EXPIRE per plain increment and EVALSHA per check (one for all checks when
        ``atomic``), pipelined in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for key, hits, ttl in increments:
            pipe.incrby(key, hits)
            pipe.expire(key, ttl)
        calls = [list(checks)] if atomic and checks else [[c] for c in checks]
        for group in calls:
            keys, argv = script_args(group, now_ms, atomic)
            pipe.evalsha(script_sha(), len(keys), *keys, *argv)
        replies = await self._run(pipe.execute(raise_on_error=False))
        counts = [self._reply(r) for r in replies[: 2 * len(increments): 2]]
        script_replies = replies[2 * len(increments):]
        if any(_is_noscript(r) for r in script_replies):
            script_replies = await self._reload_and_retry(calls, script_replies, now_ms, atomic)
        verdicts: list[Verdict] = []
        for reply in script_replies:
            verdicts.extend(parse_reply(self._reply(reply)))
        return counts, verdicts

    async def _reload_and_retry(self, calls: list[list[Check]], replies: list[Any], now_ms: int,
                                atomic: bool) -> list[Any]:
        """After a Redis restart or failover the script cache is empty: load the script and run
        only the calls that were refused (the others already ran)."""
        await self._run(self.client.script_load(script_source()))
        pipe = self.client.pipeline(transaction=False)
        again = [i for i, r in enumerate(replies) if _is_noscript(r)]
        for i in again:
            keys, argv = script_args(calls[i], now_ms, atomic)
            pipe.evalsha(script_sha(), len(keys), *keys, *argv)
        retried = await self._run(pipe.execute(raise_on_error=False))
        out = list(replies)
        for i, reply in zip(again, retried, strict=True):
            out[i] = reply
        return out

    @staticmethod
    def _reply(reply: Any) -> Any:
        if isinstance(reply, redis.exceptions.ResponseError):
            raise StorageError(f"redis error: {reply}", transient=False)
        return reply

    async def get(self, keys: Sequence[str], now: float) -> list[int]:
        if not keys:
            return []
        replies = await self._run(self.client.mget(list(keys)))
        return [int(v) if v is not None else 0 for v in replies]

    async def ping(self) -> None:
        await self._run(self.client.ping())

    async def close(self) -> None:
        # Closing a dead pool is not an error.
        with contextlib.suppress(redis.exceptions.RedisError, OSError):
            await self.client.aclose()

    async def _run(self, call: Any) -> Any:
        """Await one Redis call, bounded by the timeout; every failure becomes StorageError."""
        try:
            async with asyncio.timeout(self.timeout):
                return await call
        except TimeoutError as exc:
            raise StorageError(f"redis did not answer within {self.timeout * 1000:.0f} ms") \
                from exc
        except redis.exceptions.ResponseError as exc:
            raise StorageError(f"redis error: {exc}", transient=False) from exc
        except (redis.exceptions.RedisError, OSError) as exc:
            raise StorageError(f"redis unavailable: {exc}") from exc


def _is_noscript(reply: Any) -> bool:
    return isinstance(reply, redis.exceptions.NoScriptError)
