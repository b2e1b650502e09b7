"""sdk/contract run by the Python SDK: every vector against real sidecar processes (memory and
Redis stores, standalone and full mode), the middleware ones through the WSGI middleware (a real
HTTP server) and the ASGI one (Starlette), the verifyKey and lease ones through Client and
AsyncClient."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient
from viva_ratelimit_client import (
    AsyncClient,
    CheckResult,
    Client,
    InvalidRequest,
    KeyVerification,
    LeaseResult,
    ReleaseResult,
    RetryPolicy,
    Unauthorized,
    asgi,
    wsgi,
)

from tests.sdk import contract_kit as kit

CONTRACT, VECTORS = kit.load()
_RUNS = itertools.count()
_CLIENTS: dict[str, Client] = {}


def cases() -> Iterator[Any]:
    for vector in VECTORS:
        places = CONTRACT["targets"][vector["target"]] or [vector["target"]]
        twice = any(s.get("call") in ("verifyKey", *kit.LEASE_CALLS) for s in vector["steps"])
        runners = (["wsgi", "asgi"] if "request" in vector["steps"][0] else
                   ["client", "async"] if twice else ["client"])
        for place in places:
            for runner in runners:
                marks = [pytest.mark.redis] if place == "redis" else []
                yield pytest.param(vector, place, runner, marks=marks,
                                   id=f"{vector['name']}[{place},{runner}]")


@pytest.fixture(scope="module")
def targets() -> Iterator[kit.Targets]:
    kit.sidecar_binary(CONTRACT)  # fails under CI, skips elsewhere, when it is missing
    places = kit.Targets(CONTRACT)
    yield places
    places.stop()
    while _CLIENTS:
        _CLIENTS.popitem()[1].close()


@pytest.mark.parametrize(("vector", "place", "runner"), list(cases()))
def test_vector(targets: kit.Targets, vector: dict[str, Any], place: str, runner: str) -> None:
    port = targets.port(place)
    kit.wait_for_window(vector)
    run = f"py{next(_RUNS)}-{time.time_ns():x}"
    saved = (targets.sidecar(place).setup(kit.substitute(vector, run)["setup"], targets.root_key)
             if "setup" in vector else {})
    problems = []
    for i, raw in enumerate(vector["steps"]):
        step = json.loads(kit.fill_saved(json.dumps(kit.substitute(raw, run)), saved))
        settings = {**CONTRACT["client_defaults"], **vector.get("client", {}),
                    **step.get("client", {})}
        if settings.get("root_key") == "{root_key}":
            settings["root_key"] = targets.root_key
        if "wait_ms" in step:  # outside the step's own time and counters
            time.sleep(step["wait_ms"] / 1000)
        before = targets.counters(place)
        started = time.time()
        if "request" in step:
            middleware = {**CONTRACT["middleware_defaults"], **vector.get("middleware", {}),
                          **step.get("middleware", {})}
            actual = serve(runner, settings, port, middleware, step["request"])
        elif step["call"] == "verifyKey":
            actual = verify(settings, port, step, started, runner)
            problems += [f"step {i}: {p}" for p in kit.leaks(
                [step["key"], targets.root_key], actual.pop("texts"))]
        elif step["call"] in kit.LEASE_CALLS:
            actual = lease_call(settings, port, step, started, runner)
            if "save" in step:
                kit.save(step["save"], actual.get("lease", {}), saved)
        else:
            actual = call(settings, port, step, started)
        elapsed_ms = (time.time() - started) * 1000
        after = targets.counters(place)
        grew = (after[0] - before[0], after[1] - before[1])
        problems += [f"step {i}: {p}" for p in kit.check(step["expect"], actual, elapsed_ms, grew)]
    assert not problems, vector["about"] + "\n" + "\n".join(problems)


def client_options(settings: dict[str, Any]) -> dict[str, Any]:
    options = {"timeout": settings["timeout_ms"] / 1000,
               "retry": RetryPolicy(attempts=settings["attempts"],
                                    backoff=settings["backoff_ms"] / 1000,
                                    max_backoff=settings["max_backoff_ms"] / 1000),
               "failure_mode": settings["failure_mode"], "root_key": settings["root_key"]}
    if "verify_failure_mode" in settings:  # else the client's own default (closed)
        options["verify_failure_mode"] = settings["verify_failure_mode"]
    return options


def endpoint(settings: dict[str, Any], port: int) -> str:
    return str(settings["endpoint"]).replace("{port}", str(port))


def client_for(settings: dict[str, Any], port: int) -> Client:
    """A client of these settings, reused by the steps that have the same (making one costs
    ~0.1 s of TLS setup, even for plain HTTP)."""
    key = f"{endpoint(settings, port)} {sorted(settings.items())}"
    if key not in _CLIENTS:
        _CLIENTS[key] = Client(endpoint(settings, port), **client_options(settings))
    return _CLIENTS[key]


def call(settings: dict[str, Any], port: int, step: dict[str, Any],
         started: float) -> dict[str, Any]:
    client = client_for(settings, port)
    if step["call"] == "allow":
        return {"return": client.allow(step["identifier"], step["namespace"],
                                       step.get("hits", 1))}
    descriptors = ([dict(pairs) for pairs in step["descriptors"]]
                   if "descriptors" in step else None)
    method = client.report if step["call"] == "report" else client.check
    try:
        result = method(step.get("identifier"), step["namespace"], step.get("hits", 1),
                        descriptors=descriptors)
    except InvalidRequest as exc:
        return {"error": {"kind": "invalid_request", "field": exc.field}}
    out: dict[str, Any] = {"result": view(result, started), "headers": dict(result.headers())}
    if result.error is not None:
        out["unavailable"] = {"attempts": result.attempts}
    return out


def verify(settings: dict[str, Any], port: int, step: dict[str, Any], started: float,
           runner: str) -> dict[str, Any]:
    """A verifyKey step, through Client or (runner "async") AsyncClient, and the texts that
    must not show a secret."""
    options = {name: step[name] for name in ("cost", "limits", "features", "client_address")
               if name in step}

    async def verify_async() -> KeyVerification:
        async with AsyncClient(endpoint(settings, port), **client_options(settings)) as client:
            texts["client"] = repr(client)
            return await client.verify_key(step["key"], **options)

    texts: dict[str, str] = {}
    try:
        if runner == "async":
            verdict = asyncio.run(verify_async())
        else:
            client = client_for(settings, port)
            texts["client"] = repr(client)
            verdict = client.verify_key(step["key"], **options)
    except InvalidRequest as exc:
        return {"error": {"kind": "invalid_request", "field": exc.field},
                "texts": {**texts, "error": str(exc)}}
    except Unauthorized as exc:
        return {"error": {"kind": "unauthorized"}, "texts": {**texts, "error": str(exc)}}
    out: dict[str, Any] = {"verification": verification_view(verdict, started),
                           "texts": {**texts, "result": repr(verdict)}}
    if verdict.error is not None:
        out["unavailable"] = {"attempts": verdict.attempts}
    return out


def lease_call(settings: dict[str, Any], port: int, step: dict[str, Any], started: float,
               runner: str) -> dict[str, Any]:
    """An acquire_lease, renew_lease or release_lease step through Client or (runner "async")
    AsyncClient, in the contract's names."""
    ttl = step["ttl_ms"] / 1000 if "ttl_ms" in step else None
    descriptors = ([dict(pairs) for pairs in step["descriptors"]]
                   if "descriptors" in step else None)

    def send(client: Any) -> Any:
        if step["call"] == "acquire_lease":
            return client.acquire_lease(step.get("identifier"), step["namespace"], ttl=ttl,
                                        descriptors=descriptors)
        if step["call"] == "renew_lease":
            return client.renew_lease(step["lease_id"], ttl=ttl)
        return client.release_lease(step["lease_id"])

    async def send_async() -> Any:
        async with AsyncClient(endpoint(settings, port), **client_options(settings)) as client:
            return await send(client)

    try:
        answer = asyncio.run(send_async()) if runner == "async" else \
            send(client_for(settings, port))
    except InvalidRequest as exc:
        return {"error": {"kind": "invalid_request", "field": exc.field}}
    out: dict[str, Any] = ({"released": released_view(answer)}
                           if isinstance(answer, ReleaseResult) else
                           {"lease": lease_view(answer, started)})
    if answer.error is not None:
        out["unavailable"] = {"attempts": answer.attempts}
    return out


def lease_view(lease: LeaseResult, started: float, whole: bool = True) -> dict[str, Any]:
    view = {"allowed": lease.allowed, "active": lease.active, "limit": lease.limit,
            "expires_at": seconds_from(lease.expires_at, started),
            "ttl_seconds": lease.ttl_seconds, "retry_after_seconds": lease.retry_after_seconds,
            "policy": lease.policy}
    if whole:  # the lease as a whole; each descriptor's answer has no id of its own
        view |= {"lease_id": lease.lease_id,
                 "results": [lease_view(r, started, whole=False) for r in lease.results]}
    return view


def released_view(release: ReleaseResult) -> dict[str, Any]:
    return {"released": release.released, "active": release.active, "limit": release.limit}


def verification_view(verdict: KeyVerification, started: float) -> dict[str, Any]:
    return {
        "valid": verdict.valid, "code": verdict.code, "key_id": verdict.key_id,
        "customer_id": verdict.customer_id, "plan": verdict.plan,
        "features": list(verdict.features), "remaining": verdict.remaining,
        "reset_at": seconds_from(verdict.reset_at, started),
        "limits": [{"name": x.name, "limit": x.limit, "remaining": x.remaining,
                    "reset_at": seconds_from(x.reset_at, started), "exceeded": x.exceeded}
                   for x in verdict.limits],
    }


def seconds_from(instant: datetime | None, started: float) -> int | None:
    """An instant as the whole seconds from the step's start (the contract's reset_at)."""
    if instant is None:
        return None
    return math.ceil((instant - datetime.fromtimestamp(started, UTC)).total_seconds())


def view(result: CheckResult, started: float) -> dict[str, Any]:
    return {
        "allowed": result.allowed, "limit": result.limit, "remaining": result.remaining,
        "reset_at": seconds_from(result.reset_at, started),
        "reset_after_seconds": result.reset_after_seconds,
        "retry_after_seconds": result.retry_after_seconds,
        "window_seconds": result.window_seconds, "policy": result.policy,
        "results": [view(r, started) for r in result.results],
    }


# -- middleware --------------------------------------------------------------------------------


def serve(runner: str, settings: dict[str, Any], port: int, middleware: dict[str, Any],
          request: dict[str, Any]) -> dict[str, Any]:
    method, path = request.get("method", "GET"), request.get("path", "/hello")
    headers = request.get("headers", {})
    if runner == "wsgi":
        reply = wsgi_request(settings, port, middleware, method, path, headers)
    else:
        reply = asgi_request(settings, port, middleware, method, path, headers)
    out: dict[str, Any] = {"status": reply.status_code, "body": reply.text,
                           "headers": {k.lower(): v for k, v in reply.headers.items()}}
    with contextlib.suppress(ValueError):
        out["json"] = reply.json()
    return out


def ok_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def wsgi_request(settings: dict[str, Any], port: int, middleware: dict[str, Any], method: str,
                 path: str, headers: dict[str, str]) -> httpx2.Response:
    """The WSGI middleware around ok_app on wsgiref's server on a loopback port, over HTTP."""
    header = middleware["identifier_header"]
    app = wsgi.RateLimitMiddleware(
        ok_app, client=client_for(settings, port), namespace=middleware["namespace"],
        hits=middleware["hits"], identifier=lambda environ: wsgi.header(environ, header))
    with make_server("127.0.0.1", 0, app, handler_class=QuietHandler) as server:
        thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_port}{path}"
            with httpx2.Client(verify=False, timeout=30) as http:  # plain HTTP: no TLS setup
                return http.request(method, url, headers=headers)
        finally:
            server.shutdown()
            thread.join()


def asgi_request(settings: dict[str, Any], port: int, middleware: dict[str, Any], method: str,
                 path: str, headers: dict[str, str]) -> httpx2.Response:
    """The ASGI middleware around a Starlette app answering "ok", through its test client."""
    header = middleware["identifier_header"]
    client = AsyncClient(endpoint(settings, port), **client_options(settings))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    async def ok(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    app = Starlette(lifespan=lifespan)
    app.mount("/", ok)
    app.add_middleware(asgi.RateLimitMiddleware, client=client,
                       namespace=middleware["namespace"], hits=middleware["hits"],
                       identifier=lambda scope: asgi.header(scope, header))
    with TestClient(app) as test_client:
        return test_client.request(method, path, headers=headers)
