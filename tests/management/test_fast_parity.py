"""Full mode's key endpoints answer the same bytes on the fast HTTP/1.1 path and the general one.

Two sidecars in this process on one catalog (SQLite) and one fake clock, each with its own
memory store: one with the fast path (the default), one with VIVA_REST_FAST=0. The same
requests in the same order get the same answers, Date aside, whatever the verdict."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from sidecar.app import Sidecar
from sidecar.transports.http1 import FastSite
from tests.conftest import FakeClock
from tests.management.kit import ROOT_KEY, Admin, write_config
from tests.support.paths import native_module
from tests.transports.kit import make_settings
from tests.transports.rest.fast.wire import exchange, request

pytestmark = pytest.mark.skipif(native_module() is None, reason="the native extension is not built")


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Sidecar, Sidecar]]:
    config = write_config(tmp_path / "config")
    clock = FakeClock(1_800_000_000.5)
    env = {"MODE": "full", "VIVA_DATA_DIR": str(tmp_path / "data"), "VIVA_ROOT_KEY": ROOT_KEY,
           "VIVA_SHUTDOWN_DELAY": "0", "VIVA_VERIFY_FAILURES_PER_MINUTE": "2"}
    async with AsyncExitStack() as stack:
        sidecars = []
        for fast in ("1", "0"):
            sidecar = Sidecar(make_settings(config, {**env, "VIVA_REST_FAST": fast}), clock)
            await sidecar.start()
            stack.push_async_callback(sidecar.stop)
            sidecars.append(sidecar)
        fast_site, general_site = (next(iter(s.http_runner.sites)) for s in sidecars
                                   if s.http_runner is not None)
        assert isinstance(fast_site, FastSite) and not isinstance(general_site, FastSite)
        yield sidecars[0], sidecars[1]


async def compare(pair: tuple[Sidecar, Sidecar], data: bytes, heads: list[bool] | None = None,
                  answers: int = 1) -> bytes:
    fast, general = await asyncio.gather(*(
        asyncio.to_thread(exchange, s.settings.port, data, answers, heads) for s in pair))
    assert len(general.answers) == answers, general.raw
    assert fast.without_dates() == general.without_dates()
    assert fast.closed == general.closed
    return fast.raw


def verify(body: object, key: str | None = ROOT_KEY) -> bytes:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return request("POST", "/v1/keys/verify", data, headers)


def forward(key: str | None, path: str = "/v1/keys/forward-auth", method: str = "GET",
            **headers: str) -> bytes:
    fields = {"Authorization": f"Bearer {key}"} if key is not None else {}
    fields.update({k.replace("_", "-"): v for k, v in headers.items()})
    return request(method, path, b"", fields)


async def test_key_endpoints_answer_the_same(pair: tuple[Sidecar, Sidecar]) -> None:
    admin = Admin("127.0.0.1", pair[0].settings.port)
    customer = await asyncio.to_thread(admin.customer)
    key = (await asyncio.to_thread(admin.key, customer["id"]))["key"]
    other = (await asyncio.to_thread(admin.customer, "bigger"))
    big_key = (await asyncio.to_thread(admin.key, other["id"]))["key"]

    site = next(iter(pair[0].http_runner.sites)) if pair[0].http_runner else None
    assert isinstance(site, FastSite)
    handoffs = site.handoffs  # the admin calls above
    raw = await compare(pair, verify({"key": key}))
    assert b'"code":"VALID"' in raw
    await compare(pair, verify({"key": key, "cost": 0, "features": ["reports"]}))
    await compare(pair, verify({"key": key, "limits": ["monthly"]}))
    await compare(pair, verify({"key": key, "limits": ["nope"]}))
    await compare(pair, verify({"key": key, "features": ["exports"]}))
    await compare(pair, verify({"key": "viva_notakey"}))
    await compare(pair, verify({"key": big_key[:-3] + "abc"}))
    await compare(pair, verify({"key": key, "extra": 1}))
    await compare(pair, verify(b"{"))
    await compare(pair, verify({"key": key}, key=None))
    await compare(pair, verify({"key": key}, key="wrong"))
    await compare(pair, forward(key))
    await compare(pair, forward(key, "/v1/keys/forward-auth/api/x?feature=reports"))
    await compare(pair, forward(key, "/v1/keys/forward-auth?feature=exports"))
    await compare(pair, forward(key, "/v1/keys/forward-auth", "HEAD"), [True])
    await compare(pair, forward(key, X_Viva_Cost="abc"))
    await compare(pair, forward(key, "/v1/keys/forward-auth?deny_status=500"))
    await compare(pair, forward(None))
    await compare(pair, forward("viva_nothing", X_Forwarded_For="10.9.8.7"))
    raw = await compare(pair, forward(key, "/v1/keys/forward-auth?deny_status=403"))
    assert raw.startswith(b"HTTP/1.1 403 ")  # the per-hour limit (3) is used up by now
    raw = await compare(pair, verify({"key": key}))
    assert b'"code":"RATE_LIMITED"' in raw
    assert site.handoffs == handoffs  # every one of them answered on the fast path
    # pipelined: key endpoints, then the admin API (the general path takes over midway)
    await compare(pair, verify({"key": big_key}) + forward(big_key) + request(
        "GET", f"/v1/customers/{other['id']}", b"", {"Authorization": f"Bearer {ROOT_KEY}"})
        + forward(big_key), answers=4)
