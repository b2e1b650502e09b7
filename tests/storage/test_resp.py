"""RespConnection, the native engine's link to a standalone Redis, on real servers: address
forms, pipelined round trips, AUTH (password, ACL user), the DB index, TLS, timeouts, refused
connections and reconnecting after Redis comes back."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import redis

from sidecar.errors import SettingsError, StorageError
from sidecar.storage.redis.options import RedisOptions
from sidecar.storage.redis.resp import Address, RespConnection, address_of, command
from tests.h2.conftest import native_module
from tests.storage.test_connect import protected, tls_redis  # noqa: F401  (fixtures)
from tests.support.ports import free_port
from tests.support.servers import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def native() -> ModuleType:
    return native_module()


def connect(native: ModuleType, **options: object) -> RespConnection:
    opts = RedisOptions(**{"timeout": 2.0, **options})  # type: ignore[arg-type]
    return RespConnection(opts, native.reply_end)


@pytest.mark.parametrize(("url", "extra", "expected"), [
    ("127.0.0.1:6380", {}, Address("127.0.0.1", 6380, False, "", "", 0)),
    ("127.0.0.1:6380", {"auth": "pw", "db": 2}, Address("127.0.0.1", 6380, False, "", "pw", 2)),
    ("[::1]:6380", {"auth": "app:pw", "tls": True},
     Address("::1", 6380, True, "app", "pw", 0)),
    ("/run/redis.sock", {}, Address("/run/redis.sock", 0, False, "", "", 0)),
    ("redis://u:p%40ss@example.org/3", {"auth": "ignored"},
     Address("example.org", 6379, False, "u", "p@ss", 3)),
    ("rediss://example.org:7000", {}, Address("example.org", 7000, True, "", "", 0)),
    ("unix:///run/r.sock?db=4", {}, Address("/run/r.sock", 0, False, "", "", 4)),
])
def test_address_forms(url: str, extra: dict[str, object], expected: Address) -> None:
    assert address_of(RedisOptions(url=url, **extra)) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(("url", "problem"), [
    ("localhost", "is not host:port"),
    ("redis://h/x", "database 'x' is not a number"),
    ("http://h:1", "is not a Redis URL"),
])
def test_bad_addresses_are_settings_errors(url: str, problem: str) -> None:
    with pytest.raises(SettingsError, match=problem):
        address_of(RedisOptions(url=url))


async def test_pipelined_round_trips_come_back_in_order(native: ModuleType,
                                                        redis_clean: RedisServer) -> None:
    link = connect(native, url=f"127.0.0.1:{redis_clean.port}")
    try:
        await link.ping()
        replies = await asyncio.gather(*(
            link.round_trip(command(b"INCRBY", b"viva:resp", b"%d" % n) * 2, 2)
            for n in range(1, 21)))
        # Each pipeline's two INCRBYs, in the order the pipelines were sent.
        total = 0
        for n, reply in enumerate(replies, 1):
            total += n
            first = total
            total += n
            assert reply == b":%d\r\n:%d\r\n" % (first, total)
    finally:
        await link.close()


async def test_password_acl_user_and_db(native: ModuleType,
                                        protected: RedisServer) -> None:  # noqa: F811
    url = f"127.0.0.1:{protected.port}"
    for auth in ("s3cret", "app:apppw"):
        link = connect(native, url=url, auth=auth, db=5)
        try:
            await link.round_trip(command(b"SET", b"viva:db", b"1"), 1)
        finally:
            await link.close()
    with contextlib.closing(redis.Redis(port=protected.port, password="s3cret", db=5)) as c:
        assert c.get("viva:db") == b"1"
    for auth in ("app:wrong", ""):
        link = connect(native, url=url, auth=auth)
        try:
            with pytest.raises(StorageError) as caught:
                await link.ping()
            assert not caught.value.transient or "NOAUTH" in str(caught.value)
        finally:
            await link.close()


async def test_tls(native: ModuleType,
                   tls_redis: tuple[RedisServer, Path]) -> None:  # noqa: F811
    server, certs = tls_redis
    base = {"url": f"127.0.0.1:{server.port}", "tls": True,
            "tls_cert": str(certs / "client.crt"), "tls_key": str(certs / "client.key")}

    async def works(**extra: object) -> bool:
        link = connect(native, **{**base, **extra})
        try:
            await link.ping()
        except StorageError:
            return False
        finally:
            await link.close()
        return True

    assert await works(tls_ca=str(certs / "ca.crt"))
    assert not await works()  # the server's CA is not trusted
    assert await works(tls_skip_verify=True)
    assert not await works(tls_ca=str(certs / "ca.crt"), tls_cert="", tls_key="")


async def elapsed(call: Callable[[], object]) -> tuple[BaseException | None, float]:
    started = time.monotonic()
    try:
        await call()  # type: ignore[misc]
    except StorageError as exc:
        return exc, time.monotonic() - started
    return None, time.monotonic() - started


async def test_a_hung_redis_times_out_and_the_link_recovers(native: ModuleType) -> None:
    server = RedisServer().start()
    link = connect(native, url=f"127.0.0.1:{server.port}", timeout=0.1)
    try:
        await link.ping()
        server.pause()
        try:
            waiting = [asyncio.ensure_future(link.ping()) for _ in range(3)]
            error, took = await elapsed(link.ping)
            assert error is not None and "did not answer within 100 ms" in str(error)
            assert 0.09 <= took < 2.0
            # The others on that connection fail with it, none later than their own timeout.
            for outcome in await asyncio.gather(*waiting, return_exceptions=True):
                assert isinstance(outcome, StorageError)
        finally:
            server.resume()
        error, _ = await elapsed(link.ping)  # a new connection
        assert error is None
    finally:
        await link.close()
        server.stop()


async def test_refused_then_reconnects_after_a_restart(native: ModuleType) -> None:
    port = free_port()
    link = connect(native, url=f"127.0.0.1:{port}", timeout=0.5)
    try:
        error, _ = await elapsed(link.ping)
        assert error is not None and error.transient and "cannot connect" in str(error)
        server = RedisServer(port=port).start()
        try:
            assert (await elapsed(link.ping))[0] is None
            server.stop()
            error, _ = await elapsed(link.ping)
            assert error is not None and error.transient
            server.start()
            assert (await elapsed(link.ping))[0] is None
        finally:
            server.stop()
    finally:
        await link.close()

