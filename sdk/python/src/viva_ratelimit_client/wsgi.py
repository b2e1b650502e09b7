"""WSGI middleware (Flask, any WSGI app): one check per request.

    app.wsgi_app = RateLimitMiddleware(app.wsgi_app, client=Client("http://127.0.0.1:8080"),
                                       namespace="api_requests", identifier=client_ip)

``identifier(environ)`` returns the identifier, or None to let the request through unchecked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from viva_ratelimit_client.middleware import HEADER_FAMILIES, REASONS, verdict
from viva_ratelimit_client.result import CheckResult

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class Checker(Protocol):
    """Client or GrpcClient."""

    def check(self, identifier: str | None, namespace: str, hits: int = 1) -> CheckResult: ...


def client_ip(environ: Environ) -> str | None:
    """REMOTE_ADDR (behind a proxy, use werkzeug's ProxyFix so that it is the client's)."""
    value = environ.get("REMOTE_ADDR")
    return str(value) if value else None


def header(environ: Environ, name: str) -> str | None:
    """Request header ``name`` (case-insensitive), or None."""
    key = name.upper().replace("-", "_")
    value = environ.get(key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}")
    return str(value) if value is not None else None


class RateLimitMiddleware:
    def __init__(self, app: WSGIApp, *, client: Checker,
                 namespace: str | Callable[[Environ], str],
                 identifier: Callable[[Environ], str | None] = client_ip, hits: int = 1,
                 headers: Iterable[str] = HEADER_FAMILIES) -> None:
        self.app = app
        self.client = client
        self.namespace = namespace
        self.identifier = identifier
        self.hits = hits
        self.families = frozenset(headers)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        identifier = self.identifier(environ)
        if identifier is None:
            return self.app(environ, start_response)
        namespace = (self.namespace if isinstance(self.namespace, str)
                     else self.namespace(environ))
        outcome = verdict(self.client.check(identifier, namespace, self.hits), self.families)
        if outcome.status is not None:
            start_response(f"{outcome.status} {REASONS[outcome.status]}",
                           [*outcome.headers, ("Content-Length", str(len(outcome.body)))])
            return [outcome.body]

        def start_with_headers(status: str, headers: list[tuple[str, str]],
                               exc_info: Any = None) -> Any:
            return start_response(status, [*headers, *outcome.headers], exc_info)

        return self.app(environ, start_with_headers)
