"""The fast HTTP/1.1 path and the general one (aiohttp) answer the same bytes, on the Python
engine and on the native one (whose calls the fast path answers inside Rust).

One server per path and engine, over the same rules and clock, each with its own store.
Every case sends the same bytes on a fresh connection to each and compares everything that
comes back (status lines, fields in order, bodies, interim answers) except the Date field's
value, and whether the server closed the connection, with the general path on the Python
engine's."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sidecar.limiter.options import EngineOptions
from sidecar.observability.metrics import Metrics
from sidecar.storage.base import Store
from sidecar.storage.memory import MemoryStore
from sidecar.storage.redis.options import RedisOptions
from sidecar.storage.redis.store import RedisStore
from sidecar.transports.http1 import FastSite
from sidecar.transports.rest.options import RestOptions
from tests.support.paths import native_module
from tests.support.ports import free_port
from tests.support.servers import RedisServer
from tests.transports.rest.fast.wire import Exchange, exchange, request
from tests.transports.rest.kit import ENGINES, serve_rest, write_rules
from tests.transports.rest.test_bad_input import CASES as BAD_BODIES

pytestmark = pytest.mark.skipif(native_module() is None,
                                reason="the fast path needs sidecar._native (and VIVA_NATIVE on)")

NOW = 1_000_000.25
CHECK = {"namespace": "api_requests", "identifier": "u1"}
SHOP = {"namespace": "shop", "descriptors": [
    [{"key": "user", "value": "alice"}], [{"key": "route", "value": "/a"},
                                          {"key": "method", "value": "GET"}],
    [{"key": "user", "value": "alice"}], [{"key": "token", "value": "t"}],
    [{"key": "nothing", "value": "here"}]]}
FORWARD = {"X-Forwarded-For": "10.0.0.1, 10.0.0.2", "X-RateLimit-Namespace": "api_requests"}
RLS = {"domain": "shop", "descriptors": [{"entries": [{"key": "user", "value": "bob"}]}],
       "hitsAddend": 2}



def post(path: str, body: Any, headers: dict[str, str] | None = None,
         version: str = "1.1") -> bytes:
    data = body if isinstance(body, bytes) else (
        body.encode() if isinstance(body, str) else json.dumps(body).encode())
    return request("POST", path, data, headers, version)


def get(path: str, headers: dict[str, str] | None = None, version: str = "1.1") -> bytes:
    return request("GET", path, b"", headers, version)


def chunked(path: str, body: bytes, sizes: list[int]) -> bytes:
    out, at = b"", 0
    for size in sizes:
        out += f"{size:x}\r\n".encode() + body[at:at + size] + b"\r\n"
        at += size
    return (f"POST {path} HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + out + b"0\r\n\r\n")


@dataclass
class Case:
    name: str
    data: bytes | list[bytes]
    answers: int
    heads: list[bool] | None = None
    pause: float = 0.0
    handoff: bool = False  # the fast path hands the connection to the general path


def cases() -> Iterator[Case]:
    over = post("/v1/check", {**CHECK, "identifier": "over", "hits": 5})
    yield Case("check", post("/v1/check", CHECK), 1)
    yield Case("check, descriptors answered each", post("/v1/check", SHOP), 1)
    yield Case("check, then over the limit", [over, over], 2)
    yield Case("check peeks with hits 0", post("/v1/check", {**CHECK, "hits": 0}), 1)
    yield Case("report past the limit", post("/v1/report", {**SHOP, "hits": 9}), 1)
    yield Case("check, hits 2.0 read by the general path's code",
               post("/v1/check", '{"namespace": "api_requests", "identifier": "u", "hits": 2.0}'),
               1)
    yield Case("check, a duplicate field (the last wins)",
               post("/v1/check", '{"namespace": "x", "namespace": "api_requests", '
                                 '"identifier": "u"}'), 1)
    yield Case("check, a non-ASCII identifier",
               post("/v1/check", {"namespace": "api_requests", "identifier": "über😀"}), 1)
    yield Case("check, UTF-8 with a byte-order mark",
               post("/v1/check", b"\xef\xbb\xbf" + json.dumps(CHECK).encode()), 1)
    yield Case("check, UTF-16", post("/v1/check", json.dumps(CHECK).encode("utf-16")), 1)
    for name, body, _ in BAD_BODIES:
        yield Case(f"400: {name}", post("/v1/check", body), 1)
        yield Case(f"400 (report): {name}", post("/v1/report", body), 1)
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        yield Case(f"forward-auth {method}", request(method, "/v1/forward-auth/a/b", b"",
                                                     FORWARD), 1, [method == "HEAD"])
    yield Case("forward-auth, a body it ignores",
               request("POST", "/v1/forward-auth", b'{"x": 1}', FORWARD), 1)
    refused = request("GET", "/v1/forward-auth?x=%20&deny_status=403",
                      headers={**FORWARD, "X-Forwarded-For": "9.9.9.9"})
    yield Case("forward-auth refused with 403", [refused] * 5, 5)
    for name, target, fields, handoff in [
        ("no namespace", "/v1/forward-auth", {"X-Forwarded-For": "1.2.3.4"}, False),
        ("a blank namespace", "/v1/forward-auth",
         {"X-Forwarded-For": "1.2.3.4", "X-RateLimit-Namespace": " "}, False),
        ("no identifier", "/v1/forward-auth", {"X-RateLimit-Namespace": "api_requests"}, False),
        ("a blank first address", "/v1/forward-auth",
         {"X-Forwarded-For": " , 1.2.3.4", "X-RateLimit-Namespace": "api_requests"}, False),
        ("deny_status 404", "/v1/forward-auth?deny_status=404", FORWARD, False),
        ("deny_status empty", "/v1/forward-auth?deny_status", FORWARD, False),
        ("deny_status encoded", "/v1/forward-auth?deny%5Fstatus=403", FORWARD, False),
        ("deny_status value encoded", "/v1/forward-auth?deny_status=4%303", FORWARD, False),
        ("a non-ASCII namespace", "/v1/forward-auth",
         {"X-Forwarded-For": "1.2.3.4", "X-RateLimit-Namespace": "caf\xe9"}, True),
    ]:
        yield Case(f"forward-auth, {name}", get(target, fields), 1, handoff=handoff)
    yield Case("/json", post("/json", RLS), 1)
    yield Case("/json over the limit", [post("/json", RLS)] * 2, 2)
    yield Case("/json as GET", request("GET", "/json", json.dumps(RLS).encode()), 1)
    yield Case("/json, snake_case names", post("/json", {"domain": "shop", "hits_addend": 1}), 1)
    yield Case("/json, an Envoy override",
               post("/json", {"domain": "shop", "descriptors": [{"entries": [
                   {"key": "user", "value": "o"}], "limit": {"requestsPerUnit": 1,
                                                             "unit": "SECOND"}}]}), 1)
    yield Case("/json, not JSON", post("/json", "{"), 1)
    yield Case("/json, an unknown field", post("/json", {"domain": "shop", "x": 1}), 1)
    yield Case("413: Content-Length over the limit",
               post("/v1/check", b"{" + b" " * 70_000 + b"}"), 1, handoff=True)
    yield Case("413: a chunked body over the limit",
               chunked("/v1/check", b" " * 70_000, [35_000, 35_000]), 1, handoff=True)
    body = json.dumps(CHECK).encode()
    yield Case("a chunked body", chunked("/v1/check", body, [1, 5, len(body) - 6]), 1)
    yield Case("a chunked body in pieces",
               [chunked("/v1/report", body, [len(body)])[:70],
                chunked("/v1/report", body, [len(body)])[70:]], 1, pause=0.05)
    head = b"POST /v1/check HTTP/1.1\r\nHost: s\r\nExpect: 100-continue\r\n"
    yield Case("Expect: 100-continue, the body after",
               [head + f"Content-Length: {len(body)}\r\n\r\n".encode(), body], 1, pause=0.1)
    yield Case("Expect: 100-continue, the body with it",
               head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body, 1)
    yield Case("Expect: something else", post("/v1/check", CHECK, {"Expect": "teapot"}), 1,
               handoff=True)
    yield Case("HTTP/1.0", post("/v1/check", CHECK, version="1.0"), 1)
    yield Case("HTTP/1.0 keep-alive",
               [post("/v1/check", CHECK, {"Connection": "keep-alive"}, "1.0")] * 2, 2)
    yield Case("Connection: close ends the connection",
               post("/v1/check", CHECK, {"Connection": "close"}) + post("/v1/check", CHECK), 1,
               handoff=True)
    yield Case("Connection: close alone", post("/v1/check", CHECK, {"Connection": "close"}), 1)
    yield Case("pipelined, mixed", b"".join([
        post("/v1/check", CHECK), post("/v1/check", "{"), get("/v1/forward-auth", FORWARD),
        post("/json", RLS), request("HEAD", "/v1/forward-auth", b"", FORWARD),
        post("/v1/report", SHOP)]), 6, [False, False, False, False, True, False])
    referred = '{"namespace": "api_requests", "identifier": "order", "hits": 2.0}'
    yield Case("pipelined, calls after a referral charged after it", b"".join([
        post("/v1/check", referred), post("/v1/check", {**CHECK, "identifier": "order"}),
        get("/v1/forward-auth", {**FORWARD, "X-Forwarded-For": "order"}),
        post("/v1/check", referred)]), 4)
    yield Case("pipelined, handed to the general path midway", b"".join([
        post("/v1/check", CHECK), get("/healthcheck"), post("/v1/check", CHECK),
        get("/openapi.json"), get("/nowhere"), post("/v1/check", CHECK)]), 6, handoff=True)
    yield Case("handed over in a later read",
               [post("/v1/check", CHECK), get("/healthcheck") + post("/v1/check", CHECK)], 3,
               pause=0.1, handoff=True)
    yield Case("pipelined, a method the route does not take", b"".join([
        post("/v1/check", CHECK), get("/v1/check"), post("/v1/check", CHECK)]), 3,
               handoff=True)
    yield Case("pipelined, a malformed request after a good one",
               post("/v1/check", CHECK) + b"GARBAGE\r\n\r\n" + post("/v1/check", CHECK), 1,
               handoff=True)
    for name, raw in [
        ("no Host", b"POST /v1/check HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"),
        ("bare LF", b"POST /v1/check HTTP/1.1\nHost: s\nContent-Length: 2\n\n{}"),
        ("two Content-Lengths",
         b"POST /v1/check HTTP/1.1\r\nHost: s\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}"),
        ("Content-Length and chunked", b"POST /v1/check HTTP/1.1\r\nHost: s\r\nContent-Length: 5"
         b"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("a folded header", b"GET /v1/forward-auth HTTP/1.1\r\nHost: s\r\nX-Forwarded-For: 1"
         b"\r\n 2\r\nX-RateLimit-Namespace: api_requests\r\n\r\n"),
        ("a NUL in a header",
         b"GET /v1/forward-auth HTTP/1.1\r\nHost: s\r\nX-Forwarded-For: 1\x002\r\n\r\n"),
        ("an encoded path", post("/v1/ch%65ck", CHECK)),
        ("a TLS hello", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40),
        ("an HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        ("a 9 KiB header", get("/v1/forward-auth", {**FORWARD, "X-Big": "b" * 9000})),
        ("gzip", post("/v1/check", b"\x1f\x8b", {"Content-Encoding": "gzip"})),
    ]:
        yield Case(f"malformed: {name}", raw, 1, handoff=True)


CASE_LIST = list(cases())

# (fast path, engine): the general path on the Python engine is what the others must match.
REFERENCE = (False, "python")
PATHS = [REFERENCE, *((fast, engine) for fast in (True, False) for engine in ENGINES
                      if (fast, engine) != REFERENCE)]


@dataclass
class Server:
    fast: bool
    engine: str
    port: int
    site: FastSite | None
    metrics: Metrics | None = None

    @property
    def name(self) -> str:
        return f"{'fast' if self.fast else 'general'} path, {self.engine} engine"


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_rules(tmp_path_factory.mktemp("parity") / "rules", leases=False)


async def start(stack: AsyncExitStack, rules: Path, store: Callable[[], Store],
                prefixed: bool = False, **kwargs: Any) -> list[Server]:
    """The same app on every path of PATHS, each over its own ``store()`` (``prefixed``: its
    keys under the prefix ``s<i>_``, for servers sharing a Redis); the reference first."""
    servers = []
    for i, (fast, engine) in enumerate(PATHS):
        options = EngineOptions(cache_key_prefix=f"s{i}_") if prefixed else None
        api = await stack.enter_async_context(serve_rest(
            rules, store(), clock=lambda: NOW, fast=fast, engine=engine,
            engine_options=options, **kwargs))
        assert api.fast == fast, "the fast path needs sidecar._native"
        servers.append(Server(fast, engine, api.port, api.fast_site() if fast else None,
                              api.metrics))
    return servers


@pytest.fixture
async def servers(rules: Path) -> AsyncIterator[list[Server]]:
    async with AsyncExitStack() as stack:
        yield await start(stack, rules, lambda: MemoryStore())


async def compare(servers: list[Server], case: Case) -> list[Exchange]:
    """``case`` on a fresh connection to each server at once: every one answers what the
    reference answers, byte for byte but the Date."""
    handoffs = [s.site.handoffs if s.site else 0 for s in servers]
    got = await asyncio.gather(*(
        asyncio.to_thread(exchange, s.port, case.data, case.answers, case.heads,
                          pause=case.pause) for s in servers))
    reference = got[0]
    assert len(reference.answers) == case.answers, reference.raw
    for server, exchanged, before in zip(servers, got, handoffs, strict=True):
        assert exchanged.without_dates() == reference.without_dates(), server.name
        assert exchanged.closed == reference.closed, server.name
        if server.site is not None:
            assert server.site.handoffs - before == int(case.handoff), server.name
    return got


@pytest.mark.parametrize("case", CASE_LIST, ids=[c.name for c in CASE_LIST])
async def test_same_bytes(servers: list[Server], case: Case) -> None:
    await compare(servers, case)


@pytest.mark.redis
async def test_same_bytes_on_redis(rules: Path, redis_clean: RedisServer) -> None:
    """The answers that reach the store, on Redis: the native engine's held calls are
    answered from its batches (each server counts under its own key prefix)."""
    cases = [c for c in CASE_LIST if not c.handoff and not c.name.startswith(("400", "malformed"))]
    async with AsyncExitStack() as stack:
        servers = await start(
            stack, rules, lambda: RedisStore(RedisOptions(url=redis_clean.url, timeout=5.0)),
            prefixed=True)
        for case in cases:
            await compare(servers, case)
    for i in range(len(servers)):  # each server counted in Redis, apart from the others
        assert redis_clean.client().keys(f"s{i}_api_requests_identifier_*")


def counted(metrics: Metrics | None) -> dict[str, float]:
    """The request, error and per-rule counts and the latency histograms' counts (what the
    traffic decides; not the times)."""
    assert metrics is not None
    out = {}
    for line in metrics.exposition().decode().splitlines():
        series, _, value = line.rpartition(" ")
        name = series.split("{", 1)[0]
        if line.startswith("#") or not name.startswith("ratelimit_service_") or \
                name.endswith(("_sum", "_bucket", "_created")) or "config_load" in name:
            continue
        out[series] = float(value)
    return out


async def test_the_same_metrics(servers: list[Server]) -> None:
    """One set of counters behind each path: the same traffic counts the same on every one
    (requests per endpoint, errors by kind, hits per rule), whichever path answered it."""
    for case in CASE_LIST:
        if not case.handoff:  # a handed-off connection is aiohttp's on every path
            await compare(servers, case)
    reference = counted(servers[0].metrics)
    assert reference['ratelimit_service_total_requests_total{grpc_method="rest_check"}'] > 50
    assert reference['ratelimit_service_should_rate_limit_error_total{err_type="service_error"}']
    for server in servers[1:]:
        assert counted(server.metrics) == reference, server.name


async def test_503_when_the_store_is_unreachable(rules: Path) -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"
    async with AsyncExitStack() as stack:
        servers = await start(stack, rules,
                              lambda: RedisStore(RedisOptions(url=down, timeout=0.2)))
        for data in (post("/v1/check", CHECK), post("/json", RLS),
                     get("/v1/forward-auth", FORWARD)):
            got = await compare(servers, Case("503", data, 1))
            assert got[0].statuses == [503]


async def test_503_before_rules_are_loaded(rules: Path) -> None:
    async with AsyncExitStack() as stack:
        servers = await start(stack, rules, lambda: MemoryStore(), load=False)
        for data in (post("/v1/report", SHOP), post("/json", RLS)):
            got = await compare(servers, Case("no rules", data, 1))
            assert got[0].statuses == [503]


async def test_options_shape_the_same_answers(rules: Path) -> None:
    options = RestOptions(headers=frozenset({"x"}), identifier_header="X-Api-Key",
                          namespace_header="", default_namespace="api_requests",
                          hash_identifier=True, deny_status=403, max_descriptors=2,
                          max_entries=1, max_hits=3)
    async with AsyncExitStack() as stack:
        servers = await start(stack, rules, lambda: MemoryStore(), options=options)
        key = {"X-Api-Key": "secret"}
        for case in [Case("hashed identifier, over", [get("/v1/forward-auth", key)] * 5, 5),
                     Case("hits over max_hits", post("/v1/check", {**CHECK, "hits": 4}), 1),
                     Case("too many descriptors", post("/v1/check", SHOP), 1),
                     Case("x family only", post("/v1/check", {**CHECK, "hits": 3}), 1)]:
            await compare(servers, case)
