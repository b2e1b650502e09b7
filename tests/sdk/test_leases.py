"""The Python SDK's leases against real sidecar processes (memory and Redis): ``with`` and
``async with``, renewals in the background, release on exit, refusals, failure modes, and a
holder process killed while it holds its slot."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest
from viva_ratelimit_client import (
    AsyncClient,
    AsyncLease,
    Client,
    InvalidRequest,
    Lease,
    LeaseRefused,
    LeaseResult,
    RetryPolicy,
    SidecarUnavailable,
)

from tests.support import ROOT
from tests.support.ports import free_port
from tests.support.processes import stop_process
from tests.support.servers import RedisServer
from tests.transports.rest.kit import LOOPBACK, RestSidecar, write_rules

RULES = """
domain: ws
descriptors:
  - key: identifier
    rate_limit: {algorithm: concurrency, max: 5, lease_ttl: 60s}
  - key: short
    rate_limit: {algorithm: concurrency, max: 1, lease_ttl: 2s}
  - key: region
    rate_limit: {algorithm: concurrency, max: 2, lease_ttl: 60s}
"""


@pytest.fixture(scope="module", params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def url(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = dict(LOOPBACK)
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        env |= {"BACKEND_TYPE": "redis", "REDIS_URL": server.url, "REDIS_TIMEOUT": "5s"}
    rules = write_rules(tmp_path_factory.mktemp("sdk-leases") / "rules", {"ws.yaml": RULES})
    process = RestSidecar(rules, env=env).start()
    yield process.http_url
    process.stop()


@pytest.fixture
def client(url: str) -> Iterator[Client]:
    with Client(url, timeout=10) as c:
        yield c


def test_five_held_the_sixth_refused_exit_releases(client: Client, user: str) -> None:
    with contextlib.ExitStack() as stack:
        leases = [stack.enter_context(client.lease(user, "ws")) for _ in range(5)]
        assert [lease.result.active for lease in leases if lease.result] == [1, 2, 3, 4, 5]
        assert all(lease.held and lease.id for lease in leases)
        with pytest.raises(LeaseRefused) as refused, client.lease(user, "ws"):
            pytest.fail("the sixth holder got in")
        result = refused.value.result
        assert (result.allowed, result.active, result.limit, result.lease_id) == (
            False, 5, 5, None)
        assert 1 <= (result.retry_after_seconds or 0) <= 60
        assert str(refused.value) == ("lease refused: 5 of 5 held for 'identifier'; a slot "
                                      f"frees within {result.retry_after_seconds} s")
    assert not any(lease.held for lease in leases)
    # every one was released on the way out: five slots again
    taken = [client.acquire_lease(user, "ws") for _ in range(5)]
    assert all(taken) and taken[-1].active == 5
    for lease in taken:
        assert client.release_lease(lease.lease_id or "").released


def test_an_exception_in_the_block_still_releases(client: Client, user: str) -> None:
    with pytest.raises(ZeroDivisionError), client.lease(user, "ws", ttl=30):
        1 / 0  # noqa: B018
    assert client.acquire_lease(user, "ws").active == 1


async def test_async_with(url: str, user: str) -> None:
    async with AsyncClient(url, timeout=10) as limiter:
        async with limiter.lease(user, "ws") as first, limiter.lease(user, "ws") as second:
            assert isinstance(first, AsyncLease) and first.held
            assert second.result is not None and second.result.active == 2
            peek = await limiter.peek(user, "ws")  # a check reads the slots, takes none
            assert (peek.limit, peek.remaining) == (5, 3)
        assert (await limiter.acquire_lease(user, "ws")).active == 1


def test_descriptors(client: Client, user: str) -> None:
    both = [{"identifier": user}, {"region": user}]
    with client.lease(None, "ws", descriptors=both) as lease:
        assert lease.result is not None
        assert [r.active for r in lease.result.results] == [1, 1]
        with client.lease(None, "ws", descriptors=both):
            with pytest.raises(LeaseRefused):  # region's 2 are held: all or nothing
                client.lease(None, "ws", descriptors=both).acquire()
            assert client.acquire_lease(user, "ws").active == 3  # its identifier slot freed


@pytest.mark.parametrize("url", ["memory"], indirect=True)  # the store's part: test_leases.py
def test_renewals_keep_the_slot_beyond_its_ttl(client: Client, user: str) -> None:
    """ttl 2 s, renewed every 0.1 s: lost only if the machine stalled for 1.9 s."""
    short = [{"short": user}]
    with client.lease(None, "ws", descriptors=short, renew_every=0.1) as lease:
        assert lease.result is not None and lease.result.ttl_seconds == 2.0
        first_expiry = lease.result.expires_at
        time.sleep(3)  # one and a half times its time to live
        assert lease.held and not lease.lost
        assert lease.result.expires_at is not None and first_expiry is not None
        assert lease.result.expires_at > first_expiry
        assert not client.acquire_lease(None, "ws", descriptors=short).allowed
    assert client.acquire_lease(None, "ws", descriptors=short).allowed


@pytest.mark.redis
@pytest.mark.parametrize("url", ["redis"], indirect=True)
async def test_async_renewals_too(url: str, user: str) -> None:
    short = [{"short": user}]
    async with AsyncClient(url, timeout=10) as limiter:
        async with limiter.lease(None, "ws", descriptors=short, renew_every=0.1) as lease:
            first = lease.result
            await asyncio.sleep(3)
            assert lease.held and lease.result is not first
            assert not (await limiter.acquire_lease(None, "ws", descriptors=short)).allowed
        assert (await limiter.acquire_lease(None, "ws", descriptors=short)).allowed


def test_a_lease_released_behind_its_back_is_lost(client: Client, user: str) -> None:
    lost: list[Lease] = []
    with client.lease(user, "ws", renew_every=0.05, on_lost=lost.append) as lease:
        assert client.release_lease(lease.id or "").released
        deadline = time.monotonic() + 10
        while not lease.lost and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lease.lost and not lease.held and lost == [lease]
    assert client.acquire_lease(user, "ws").active == 1


def test_the_manual_calls(client: Client, user: str) -> None:
    lease = client.acquire_lease(user, "ws", ttl=10)
    assert lease and lease.ttl_seconds == 10.0 and lease.lease_id
    renewed = client.renew_lease(lease.lease_id, ttl=20)
    assert renewed and renewed.ttl_seconds == 20.0 and renewed.lease_id == lease.lease_id
    released = client.release_lease(lease.lease_id)
    assert (released.released, released.active, released.limit) == (True, 0, 5)
    assert client.renew_lease(lease.lease_id) == LeaseResult(allowed=False)
    assert not client.release_lease(lease.lease_id)
    with pytest.raises(InvalidRequest) as info:
        client.acquire_lease(user, "ws", ttl=61)  # the sidecar's 400: the rule allows 60
    assert info.value.field == "ttl"
    for bad in (0, -1, "5", True):
        with pytest.raises(InvalidRequest):
            client.acquire_lease(user, "ws", ttl=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest):
        client.renew_lease("")


def test_no_concurrency_limit_holds_nothing(client: Client, user: str) -> None:
    with client.lease(user, "nowhere") as lease:
        assert lease.result is not None and lease.result.allowed
        assert lease.id is None and not lease.held


# -- the sidecar out of reach --------------------------------------------------------------


def closed(mode: str) -> Client:
    return Client(f"127.0.0.1:{free_port()}", timeout=1, failure_mode=mode,  # type: ignore[arg-type]
                  retry=RetryPolicy(attempts=2, backoff=0.01))


def test_fail_open_runs_the_block_holding_nothing(user: str) -> None:
    with closed("open") as limiter, limiter.lease(user, "ws") as lease:
        assert lease.result is not None and lease.result.error is not None
        assert lease.result.attempts == 2
        assert lease.result.allowed and not lease.held


def test_fail_closed_refuses(user: str) -> None:
    with closed("closed") as limiter:
        with pytest.raises(LeaseRefused, match="could not be asked") as info, \
                limiter.lease(user, "ws"):
            pytest.fail("ran without a lease")
        assert info.value.result.attempts == 2
        assert not limiter.renew_lease("x.y").allowed
        assert limiter.release_lease("x.y").error is not None


def test_failure_mode_raise(user: str) -> None:
    with closed("raise") as limiter:
        with pytest.raises(SidecarUnavailable), limiter.lease(user, "ws"):
            pytest.fail("ran without a lease")
        with pytest.raises(SidecarUnavailable):
            limiter.release_lease("x.y")


# -- a holder process killed -----------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys, time
    from viva_ratelimit_client import Client

    url, short = sys.argv[1], [{"short": sys.argv[2]}]
    with Client(url, timeout=10) as limiter, \
            limiter.lease(None, "ws", descriptors=short, renew_every=0.1) as lease:
        while True:  # the expiry the last renewal gave, until killed
            print(lease.result.expires_at.timestamp(), flush=True)
            time.sleep(0.05)
""")


def test_a_killed_holders_slot_frees_after_its_ttl(client: Client, user: str) -> None:
    short = [{"short": user}]
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, client.url, user],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        expiry = _read_expiry(holder)
        for _ in range(20):  # while it lives and renews, nobody else gets in
            expiry = max(expiry, _read_expiry(holder))
            sent = time.time()
            refused = not client.acquire_lease(None, "ws", descriptors=short).allowed
            if sent < expiry:
                assert refused
        holder.kill()
        holder.wait(10)
        expiry = max([expiry, *(float(line) for line in holder.stdout.read().split())])
    finally:
        stop_process(holder)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        freed = client.acquire_lease(None, "ws", descriptors=short)
        if freed:
            assert freed.expires_at is not None and freed.ttl_seconds == 2.0
            taken_at = freed.expires_at.timestamp() - freed.ttl_seconds
            assert taken_at >= expiry - 0.001  # not before the last renewal's expiry
            return
        time.sleep(0.05)
    raise AssertionError("the killed holder's slot never freed")


def _read_expiry(holder: subprocess.Popen[Any]) -> float:
    assert holder.stdout is not None
    line = holder.stdout.readline()
    assert line, f"the holder exited with {holder.poll()}"
    return float(line)


# -- the README's WebSocket example, as written ------------------------------------------------


@pytest.mark.parametrize("url", ["memory"], indirect=True)
def test_the_readmes_websocket_example(url: str, user: str) -> None:
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "sdk/python/README.md").read_text(),
                        re.S)
    code = next(b for b in blocks if "WebSocketRoute" in b).replace("http://localhost:8080", url)
    example: dict[str, Any] = {}
    exec(compile(code, "sdk/python/README.md", "exec"), example)
    headers = {"x-user": user}
    with TestClient(example["app"]) as app:
        with contextlib.ExitStack() as sockets:
            _five_then_refused(app, sockets, headers, WebSocketDisconnect)
        app.portal.call(example["limiter"].aclose)  # type: ignore[union-attr]


def _five_then_refused(app: Any, sockets: contextlib.ExitStack, headers: dict[str, str],
                       disconnect: type[Exception]) -> None:
    open_ = [sockets.enter_context(app.websocket_connect("/chat", headers=headers))
             for _ in range(5)]
    for socket in open_:
        socket.send_text("hi")
        assert socket.receive_text() == "hi"
    with pytest.raises(disconnect) as refused, \
            app.websocket_connect("/chat", headers=headers) as sixth:
        sixth.receive_text()
    assert refused.value.code == 1013  # type: ignore[attr-defined]
    open_[0].close()  # its handler leaves the `async with`: the lease is released
    deadline = time.monotonic() + 10
    while True:
        try:
            with app.websocket_connect("/chat", headers=headers) as again:
                again.send_text("back")
                assert again.receive_text() == "back"
            return
        except disconnect:  # the release had not landed yet
            assert time.monotonic() < deadline, "the closed socket's slot never freed"
            time.sleep(0.05)
