"""The ASGI (Starlette), WSGI (Flask) and Django middleware, each with its framework's own test
client, against a real sidecar process."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import django
import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.test import Client as DjangoClient
from django.test import override_settings
from django.urls import path
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from viva_ratelimit_client import AsyncClient, Client, RetryPolicy, asgi, wsgi
from viva_ratelimit_client import django as django_middleware
from viva_ratelimit_client.grpc_client import GrpcClient

from tests.support.ports import free_port
from tests.transports.rest.kit import RestSidecar

NS = "api_requests"
FAST = RetryPolicy(attempts=1)
RATE_HEADERS = ("ratelimit-policy", "ratelimit", "x-ratelimit-limit", "x-ratelimit-remaining",
                "x-ratelimit-reset")


def assert_allowed(status: int, headers: Any, remaining: int) -> None:
    assert status == 200
    assert headers["RateLimit-Policy"] == '"identifier";q=3;w=3600'
    assert headers["RateLimit"].startswith(f'"identifier";r={remaining};t=')
    assert headers["X-RateLimit-Remaining"] == str(remaining)
    assert "Retry-After" not in headers


def assert_refused(status: int, headers: Any, body: bytes) -> None:
    assert status == 429
    assert 1 <= int(headers["Retry-After"]) <= 3600
    assert headers["X-RateLimit-Remaining"] == "0"
    assert headers["Content-Type"] == "application/json"
    doc = json.loads(body)
    assert doc == {"error": "rate limit exceeded",
                   "retry_after_seconds": int(headers["Retry-After"])}


# -- ASGI: Starlette ---------------------------------------------------------------------------


def starlette_app(url: str, **options: Any) -> Any:

    client = AsyncClient(url, timeout=5, retry=FAST,
                         failure_mode=options.pop("failure_mode", "open"))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    app = Starlette(routes=[Route("/hello", hello)], lifespan=lifespan)
    options = {"namespace": NS, "identifier": lambda scope: asgi.header(scope, "X-User"),
               **options}
    app.add_middleware(asgi.RateLimitMiddleware, client=client, **options)
    return app


def test_starlette(sidecar: RestSidecar, user: str) -> None:

    with TestClient(starlette_app(sidecar.http_url)) as http:
        replies = [http.get("/hello", headers={"X-User": user}) for _ in range(4)]
        anonymous = http.get("/hello")
    for remaining, reply in zip((2, 1, 0), replies, strict=False):
        assert_allowed(reply.status_code, reply.headers, remaining)
        assert reply.text == "hello"
    assert_refused(replies[3].status_code, replies[3].headers, replies[3].content)
    # identifier None: not checked, no headers.
    assert anonymous.status_code == 200
    assert not set(RATE_HEADERS) & set(anonymous.headers)


def test_starlette_async_identifier_and_namespace_function(sidecar: RestSidecar,
                                                           user: str) -> None:

    async def identify(scope: Any) -> str:
        return user

    app = starlette_app(sidecar.http_url, identifier=identify,
                        namespace=lambda scope: "no_rules_here")
    with TestClient(app) as http:
        reply = http.get("/hello")
    assert reply.status_code == 200 and "ratelimit" not in reply.headers


def test_starlette_fail_closed_is_503(user: str) -> None:

    app = starlette_app(f"http://127.0.0.1:{free_port()}", failure_mode="closed")
    with TestClient(app) as http:
        reply = http.get("/hello", headers={"X-User": user})
    assert reply.status_code == 503
    assert reply.json() == {"error": "rate limiter unavailable"}


def test_starlette_fail_open_passes(user: str) -> None:

    with TestClient(starlette_app(f"http://127.0.0.1:{free_port()}")) as http:
        reply = http.get("/hello", headers={"X-User": user})
    assert (reply.status_code, reply.text) == (200, "hello")


# -- WSGI: Flask -------------------------------------------------------------------------------


def flask_app(client: Any, **options: Any) -> Any:

    app = Flask(__name__)

    @app.get("/hello")
    def hello() -> str:
        return "hello"

    options = {"namespace": NS, "identifier": lambda environ: wsgi.header(environ, "X-User"),
               **options}
    app.wsgi_app = wsgi.RateLimitMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, client=client, **options)
    return app


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_flask(sidecar: RestSidecar, user: str, transport: str) -> None:
    client: Any = (Client(sidecar.http_url, timeout=5) if transport == "rest"
                   else GrpcClient(sidecar.grpc_address, timeout=5))
    with client:
        http = flask_app(client).test_client()
        replies = [http.get("/hello", headers={"X-User": user}) for _ in range(4)]
        anonymous = http.get("/hello")
    for remaining, reply in zip((2, 1, 0), replies, strict=False):
        assert_allowed(reply.status_code, reply.headers, remaining)
        assert reply.get_data() == b"hello"
    assert_refused(replies[3].status_code, replies[3].headers, replies[3].get_data())
    assert anonymous.status_code == 200 and "RateLimit" not in anonymous.headers


def test_flask_client_ip_by_default(sidecar: RestSidecar, user: str) -> None:

    app = Flask(__name__)
    app.add_url_rule("/hello", "hello", lambda: "hello")
    with Client(sidecar.http_url, timeout=5) as client:
        app.wsgi_app = wsgi.RateLimitMiddleware(  # type: ignore[method-assign]
            app.wsgi_app, client=client, namespace=NS)
        http = app.test_client()
        statuses = [http.get("/hello", environ_base={"REMOTE_ADDR": user}).status_code
                    for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


# -- Django ------------------------------------------------------------------------------------


def django_hello(request: Any) -> Any:

    return HttpResponse("hello")


def django_user(request: Any) -> str | None:
    value = request.headers.get("X-User")
    return str(value) if value else None


def _urls() -> list[Any]:

    return [path("hello", django_hello)]


urlpatterns: list[Any] = []


@pytest.fixture(scope="module")
def django_configured() -> None:

    if not settings.configured:
        settings.configure(
            DEBUG=False, SECRET_KEY="test", ALLOWED_HOSTS=["testserver"],
            ROOT_URLCONF=__name__, INSTALLED_APPS=[], USE_TZ=True,
            MIDDLEWARE=["viva_ratelimit_client.django.RateLimitMiddleware"])
        django.setup()
    urlpatterns[:] = _urls()


@contextlib.contextmanager
def django_settings(**conf: Any) -> Iterator[None]:

    with override_settings(VIVA_RATELIMIT=conf):
        yield


def test_django(django_configured: None, sidecar: RestSidecar, user: str) -> None:

    with django_settings(URL=sidecar.http_url, NAMESPACE=NS, TIMEOUT=5,
                         IDENTIFIER=f"{__name__}.django_user"):
        http = DjangoClient()
        replies = [http.get("/hello", headers={"X-User": user}) for _ in range(4)]
        anonymous = http.get("/hello")
    for remaining, reply in zip((2, 1, 0), replies, strict=False):
        assert_allowed(reply.status_code, reply.headers, remaining)
        assert reply.content == b"hello"
    assert_refused(replies[3].status_code, replies[3].headers, replies[3].content)
    assert anonymous.status_code == 200 and "RateLimit" not in anonymous.headers


def test_django_over_grpc_with_client_ip(django_configured: None, sidecar: RestSidecar,
                                         user: str) -> None:

    with django_settings(GRPC_TARGET=sidecar.grpc_address, NAMESPACE=NS, TIMEOUT=5):
        http = DjangoClient(REMOTE_ADDR=user)
        statuses = [http.get("/hello").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_django_fail_closed(django_configured: None, user: str) -> None:

    with django_settings(URL=f"http://127.0.0.1:{free_port()}", NAMESPACE=NS,
                         FAILURE_MODE="closed", IDENTIFIER=django_user):
        reply = DjangoClient().get("/hello", headers={"X-User": user})
    assert reply.status_code == 503


@pytest.mark.parametrize(("conf", "message"), [
    ({}, "NAMESPACE"),
    ({"NAMESPACE": NS, "IDENTIFER": "x"}, r"\['IDENTIFER'\] is not a setting"),
    ({"NAMESPACE": NS, "IDENTIFIER": "no.such.function"}, "IDENTIFIER"),
    ({"NAMESPACE": NS, "IDENTIFIER": 42}, "must be a callable"),
])
def test_django_configuration_errors(django_configured: None, conf: dict[str, Any],
                                     message: str) -> None:

    with django_settings(**conf), pytest.raises(ImproperlyConfigured, match=message):
        django_middleware.RateLimitMiddleware(django_hello)
