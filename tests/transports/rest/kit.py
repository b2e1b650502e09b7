"""The REST API on a real engine: in-process (memory or Redis) or as a sidecar process."""

from __future__ import annotations

import json
import os
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sidecar.limiter.engine import Engine, Limiter
from sidecar.limiter.leases import Leases
from sidecar.limiter.options import EngineOptions
from sidecar.native_path import NativePath
from sidecar.observability.health import Health
from sidecar.observability.metrics import Metrics
from sidecar.rules.loader import load_rules
from sidecar.service import RateLimitService
from sidecar.settings import Settings
from sidecar.storage.base import Store
from sidecar.storage.memory import MemoryStore
from sidecar.storage.redis.options import RedisOptions
from sidecar.storage.redis.store import RedisStore
from sidecar.transports.http import HttpApi
from sidecar.transports.http1 import FastSite, Http1Options, NativeEngineSide, serve_http
from sidecar.transports.rest.options import RestOptions
from tests.support.paths import native_allowed, native_module, native_runs
from tests.support.ports import free_port
from tests.support.servers import RedisServer, SidecarProcess

RULES = """
domain: api_requests
descriptors:
  - key: identifier
    rate_limit: {unit: minute, requests_per_unit: 3}
  - key: identifier
    value: vip
    rate_limit: {unlimited: true}
  - key: identifier
    value: free
"""

SHOP = """
domain: shop
descriptors:
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 5, name: per_user}
  - key: route
    descriptors:
      - key: method
        rate_limit: {unit: hour, requests_per_unit: 2}
  - key: token
    rate_limit: {unit: second, requests_per_unit: 1, algorithm: token_bucket, burst: 2}
"""

# Concurrency limits: 5 WebSocket connections per user, 2 exports per user and 3 at once per
# region (several descriptors in one lease), a shadow-mode limit.
WS = """
domain: ws
descriptors:
  - key: identifier
    rate_limit: {algorithm: concurrency, max: 5, lease_ttl: 60s}
  - key: export
    rate_limit: {algorithm: concurrency, max: 2, lease_ttl: 30s, name: exports}
  - key: region
    rate_limit: {algorithm: concurrency, max: 3, lease_ttl: 1m}
  - key: trial
    shadow_mode: true
    rate_limit: {algorithm: concurrency, max: 1, lease_ttl: 60s}
"""


def write_rules(folder: Path, files: dict[str, str] | None = None, unit: str = "minute",
                leases: bool = True) -> Path:
    """The test rules; tests on real time (processes) use ``unit="hour"`` so that a window
    boundary is unlikely to fall inside a test; ``leases=False`` leaves out the concurrency
    limits (which keep a sidecar on the Python engine)."""
    folder.mkdir(parents=True, exist_ok=True)
    if files is None:
        files = {"api.yaml": RULES.replace("unit: minute", f"unit: {unit}"), "shop.yaml": SHOP}
        if leases:
            files["ws.yaml"] = WS
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text))
    return folder


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class Rest:
    """A client of one REST app: post JSON, get status, lower-case headers and parsed body."""

    def __init__(self, url: str, session: aiohttp.ClientSession, engine: Engine | None,
                 fast: bool = False, runner: web.AppRunner | None = None,
                 metrics: Metrics | None = None, native: NativePath | None = None,
                 service: RateLimitService | None = None) -> None:
        self.url = url
        self.session = session
        self.engine = engine  # the Python engine (None on the native one)
        self.fast = fast  # served by the fast HTTP/1.1 path
        self.runner = runner
        self.metrics = metrics
        self.native = native  # the native stack, on the native engine
        self.service = service  # in process: the service behind the app

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def fast_site(self) -> FastSite:
        assert self.runner is not None
        (site,) = self.runner.sites
        assert isinstance(site, FastSite)
        return site

    async def post(self, path: str, body: Any) -> Reply:
        data = body if isinstance(body, str | bytes) else json.dumps(body)
        async with self.session.post(self.url + path, data=data) as resp:
            return await _reply(resp)

    async def check(self, **body: Any) -> Reply:
        return await self.post("/v1/check", body)

    async def report(self, **body: Any) -> Reply:
        return await self.post("/v1/report", body)

    async def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                      data: bytes | None = None) -> Reply:
        async with self.session.request(method, self.url + path, headers=headers,
                                        data=data) as resp:
            return await _reply(resp)


async def _reply(resp: aiohttp.ClientResponse) -> Reply:
    text = await resp.text()
    body = json.loads(text) if resp.content_type == "application/json" and text else text
    return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, body)


def make_store(kind: str, redis: RedisServer | None) -> Store:
    if kind == "memory":
        return MemoryStore()
    assert redis is not None
    return RedisStore(RedisOptions(url=redis.url, timeout=2.0))


def fast_path() -> bool:
    """Whether the REST suites run on the fast HTTP/1.1 path: VIVA_REST_FAST, as the sidecar
    reads it, and VIVA_NATIVE, which turns it off with the rest of the native code (CI runs
    them each way). Under CI the native extension must be built unless it is turned off."""
    if not RestOptions.from_env(os.environ).fast or not native_allowed():
        return False
    if native_module() is None:
        if os.environ.get("CI"):
            pytest.fail("the fast path needs sidecar._native, which is not built",
                        pytrace=False)
        return False
    return True


# The engines the in-process suites run each on: the native one too when it runs (as the
# sidecar would choose it: CI runs them again with VIVA_NATIVE=false, on the Python one only).
ENGINES = ("python", "native") if native_runs() else ("python",)


def native_path(store: Store, metrics: Metrics, engine_options: EngineOptions | None,
                clock: Callable[[], float] | None) -> NativePath:
    """The sidecar's native stack (native_path.py) on the store ``store`` stands for: its
    memory store for a MemoryStore, else the RedisStore's Redis."""
    module = native_module()
    if module is None:
        pytest.fail("the native engine needs sidecar._native, which is not built",
                    pytrace=False)
    redis = store.opts if isinstance(store, RedisStore) else None
    return NativePath(module, Settings.load(env={}), metrics, engine_options or EngineOptions(),
                      redis, clock or time.time)


@asynccontextmanager
async def serve_rest(rules_dir: Path, store: Store, options: RestOptions | None = None,
                     clock: Callable[[], float] | None = None,
                     engine_options: EngineOptions | None = None,
                     fast: bool | None = None, load: bool = True,
                     http1: Http1Options | None = None,
                     engine: str = "python") -> AsyncIterator[Rest]:
    """The HTTP port's application around a real engine, on a free loopback port: on the
    fast path or not as ``fast`` (default: ``fast_path()``) says; ``engine`` "python" (over
    ``store``) or "native" (the sidecar's native stack, on the store ``store`` stands for:
    rules without concurrency limits); ``load=False`` leaves the engine without rules."""
    metrics = Metrics()
    path = native_path(store, metrics, engine_options, clock) if engine == "native" else None
    limiter: Limiter
    if path is not None:
        limiter = path.engine
        leases = Leases(Engine(MemoryStore(), clock=clock or time.time), metrics)
        service = RateLimitService(limiter, metrics, leases=leases)
    else:
        limiter = Engine(store, engine_options, metrics, clock=clock or time.time)
        service = RateLimitService(limiter, metrics)
    if load:
        limiter.set_rules(load_rules(str(rules_dir)))
    api = HttpApi(service, Health(), None, options or RestOptions())
    app = api.main_app()
    native = native_module() if (fast_path() if fast is None else fast) else None
    endpoints = api.fast_endpoints(native) if native is not None else None
    side = None
    if path is not None and endpoints is not None:
        side = NativeEngineSide(path.serve_http1(service), path.on_held())
    port = free_port()
    runner = await serve_http(app, "127.0.0.1", port, grace=1.0, endpoints=endpoints,
                              native=native, options=http1, engine=side)
    timeout = aiohttp.ClientTimeout(total=10)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            yield Rest(f"http://127.0.0.1:{port}", session,
                       limiter if isinstance(limiter, Engine) else None, native is not None,
                       runner, metrics, path, service)
    finally:
        await runner.cleanup()
        await store.close()
        if path is not None:
            await path.store.close()


class RestSidecar(SidecarProcess):
    """A sidecar process (``python -m sidecar serve``) whose HTTP port serves the REST API."""


LOOPBACK = {"HOST": "127.0.0.1", "GRPC_HOST": "127.0.0.1", "DEBUG_HOST": "127.0.0.1",
            "VIVA_SHUTDOWN_DELAY": "0"}
