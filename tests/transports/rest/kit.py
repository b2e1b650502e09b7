"""The REST API on a real engine: in-process (memory or Redis) or as a sidecar process."""

from __future__ import annotations

import json
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from sidecar.limiter.engine import Engine
from sidecar.limiter.options import EngineOptions
from sidecar.observability.metrics import Metrics
from sidecar.rules.loader import load_rules
from sidecar.service import RateLimitService
from sidecar.storage.base import Store
from sidecar.storage.memory import MemoryStore
from sidecar.storage.redis.options import RedisOptions
from sidecar.storage.redis.store import RedisStore
from sidecar.transports.rest.handlers import register_rest
from sidecar.transports.rest.options import RestOptions
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


def write_rules(folder: Path, files: dict[str, str] | None = None, unit: str = "minute") -> Path:
    """The test rules; tests on real time (processes) use ``unit="hour"`` so that a window
    boundary is unlikely to fall inside a test."""
    folder.mkdir(parents=True, exist_ok=True)
    if files is None:
        files = {"api.yaml": RULES.replace("unit: minute", f"unit: {unit}"), "shop.yaml": SHOP,
                 "ws.yaml": WS}
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
                 service: RateLimitService | None = None) -> None:
        self.url = url
        self.session = session
        self.engine = engine
        self.service = service  # in process: the service behind the app

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


@asynccontextmanager
async def serve_rest(rules_dir: Path, store: Store, options: RestOptions | None = None,
                     clock: Callable[[], float] | None = None,
                     engine_options: EngineOptions | None = None) -> AsyncIterator[Rest]:
    """register_rest on a bare aiohttp app around a real engine, on a free loopback port."""
    engine = Engine(store, engine_options, clock=clock) if clock else Engine(store,
                                                                             engine_options)
    engine.set_rules(load_rules(str(rules_dir)))
    app = web.Application()
    service = RateLimitService(engine, Metrics())
    register_rest(app, service, options or RestOptions())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    timeout = aiohttp.ClientTimeout(total=10)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            yield Rest(f"http://127.0.0.1:{port}", session, engine, service)
    finally:
        await runner.cleanup()
        await store.close()


class RestSidecar(SidecarProcess):
    """A sidecar process (``python -m sidecar serve``) whose HTTP port serves the REST API."""


LOOPBACK = {"HOST": "127.0.0.1", "GRPC_HOST": "127.0.0.1", "DEBUG_HOST": "127.0.0.1",
            "VIVA_SHUTDOWN_DELAY": "0"}
