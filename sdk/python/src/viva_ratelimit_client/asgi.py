"""ASGI middleware (Starlette, FastAPI, any ASGI app): one check per HTTP request.

    app.add_middleware(RateLimitMiddleware, client=AsyncClient("http://127.0.0.1:8080"),
                       namespace="api_requests", identifier=client_ip)

``identifier(scope)`` returns the identifier (sync or async), or None to let the request
through unchecked. Refused requests get 429 with the rate-limit headers; allowed ones get the
headers added to the app's response.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Protocol

from viva_ratelimit_client.middleware import HEADER_FAMILIES, verdict
from viva_ratelimit_client.result import CheckResult

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Identify = Callable[[Scope], "str | Awaitable[str | None] | None"]


class AsyncChecker(Protocol):
    """AsyncClient or AsyncGrpcClient."""

    async def check(self, identifier: str | None, namespace: str,
                    hits: int = 1) -> CheckResult: ...


def header(scope: Scope, name: str) -> str | None:
    """The first value of request header ``name`` (case-insensitive), or None."""
    wanted = name.lower().encode("latin-1")
    for key, value in scope.get("headers", ()):
        if key.lower() == wanted:
            return bytes(value).decode("latin-1")
    return None


def client_ip(scope: Scope) -> str | None:
    """The peer address of the connection (behind a proxy, use its X-Forwarded-For instead,
    e.g. with uvicorn's --proxy-headers)."""
    client = scope.get("client")
    return str(client[0]) if client else None


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, *, client: AsyncChecker,
                 namespace: str | Callable[[Scope], str],
                 identifier: Identify = client_ip, hits: int = 1,
                 headers: Iterable[str] = HEADER_FAMILIES) -> None:
        self.app = app
        self.client = client
        self.namespace = namespace
        self.identifier = identifier
        self.hits = hits
        self.families = frozenset(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        identifier = self.identifier(scope)
        if inspect.isawaitable(identifier):
            identifier = await identifier
        if identifier is None:
            await self.app(scope, receive, send)
            return
        namespace = self.namespace if isinstance(self.namespace, str) else self.namespace(scope)
        outcome = verdict(await self.client.check(identifier, namespace, self.hits),
                          self.families)
        encoded = [(k.lower().encode("latin-1"), v.encode("latin-1"))
                   for k, v in outcome.headers]
        if outcome.status is not None:
            await send({"type": "http.response.start", "status": outcome.status,
                        "headers": [*encoded, (b"content-length",
                                               str(len(outcome.body)).encode())]})
            await send({"type": "http.response.body", "body": outcome.body})
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *encoded]
            await send(message)

        await self.app(scope, receive, send_with_headers)
