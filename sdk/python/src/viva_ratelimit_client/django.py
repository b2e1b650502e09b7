"""Django middleware: one check per request, configured by the VIVA_RATELIMIT setting.

    MIDDLEWARE = [..., "viva_ratelimit_client.django.RateLimitMiddleware", ...]
    VIVA_RATELIMIT = {
        "URL": "http://127.0.0.1:8080",      # or "GRPC_TARGET": "127.0.0.1:8081"
        "NAMESPACE": "api_requests",          # or a callable(request) -> str
        "IDENTIFIER": "myapp.limits.user_or_ip",  # dotted path or callable(request) -> str | None
    }

Optional keys: HITS (1), TIMEOUT (0.5 s), FAILURE_MODE ("open" | "closed" | "raise"), HEADERS
(families, default ["ietf", "x", "retry-after"]), CLIENT (a ready Client or GrpcClient).
IDENTIFIER defaults to REMOTE_ADDR; returning None lets the request through unchecked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.utils.module_loading import import_string

from viva_ratelimit_client.client import DEFAULT_TIMEOUT, DEFAULT_URL, Client
from viva_ratelimit_client.middleware import HEADER_FAMILIES, verdict

KEYS = ("URL", "GRPC_TARGET", "NAMESPACE", "IDENTIFIER", "HITS", "TIMEOUT", "FAILURE_MODE",
        "HEADERS", "CLIENT")


def client_ip(request: Any) -> str | None:
    """REMOTE_ADDR of the request (behind a proxy, set it from X-Forwarded-For first)."""
    value = request.META.get("REMOTE_ADDR")
    return str(value) if value else None


class RateLimitMiddleware:
    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        conf: Mapping[str, Any] = getattr(settings, "VIVA_RATELIMIT", None) or {}
        unknown = sorted(set(conf) - set(KEYS))
        if unknown:
            raise ImproperlyConfigured(f"VIVA_RATELIMIT[{unknown[0]!r}] is not a setting; "
                                       f"expected one of {', '.join(KEYS)}")
        if not conf.get("NAMESPACE"):
            raise ImproperlyConfigured("VIVA_RATELIMIT['NAMESPACE'] is required (a rules "
                                       "domain of the sidecar, e.g. 'api_requests')")
        self.namespace: str | Callable[[Any], str] = conf["NAMESPACE"]
        self.identifier = _callable(conf.get("IDENTIFIER", client_ip), "IDENTIFIER")
        self.hits = int(conf.get("HITS", 1))
        self.families = frozenset(conf.get("HEADERS", HEADER_FAMILIES))
        self.client = conf.get("CLIENT") or _make_client(conf)

    def __call__(self, request: Any) -> Any:
        identifier = self.identifier(request)
        if identifier is None:
            return self.get_response(request)
        namespace = (self.namespace if isinstance(self.namespace, str)
                     else self.namespace(request))
        outcome = verdict(self.client.check(identifier, namespace, self.hits), self.families)
        if outcome.status is not None:
            response = HttpResponse(outcome.body, status=outcome.status,
                                    content_type="application/json")
            for name, value in outcome.headers:
                response[name] = value
            return response
        response = self.get_response(request)
        for name, value in outcome.headers:
            response[name] = value
        return response


def _callable(value: Any, key: str) -> Callable[[Any], Any]:
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as exc:
            raise ImproperlyConfigured(f"VIVA_RATELIMIT[{key!r}]: {exc}") from None
    if not callable(value):
        raise ImproperlyConfigured(f"VIVA_RATELIMIT[{key!r}] must be a callable or its "
                                   "dotted path")
    return value  # type: ignore[no-any-return]


def _make_client(conf: Mapping[str, Any]) -> Any:
    options = {"timeout": float(conf.get("TIMEOUT", DEFAULT_TIMEOUT)),
               "failure_mode": conf.get("FAILURE_MODE", "open")}
    if conf.get("GRPC_TARGET"):
        from viva_ratelimit_client.grpc_client import GrpcClient

        return GrpcClient(conf["GRPC_TARGET"], **options)
    return Client(conf.get("URL", DEFAULT_URL), **options)
