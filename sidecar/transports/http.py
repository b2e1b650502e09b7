"""HTTP endpoints: /healthcheck and /json (as the reference), /rlconfig and /metrics.

The same handlers serve the HTTP port (8080) and the debug port (6070).
"""

from __future__ import annotations

import time
from http import HTTPStatus
from typing import Any

from aiohttp import web
from envoy.service.ratelimit.v3 import rls_pb2
from google.protobuf import json_format

from sidecar.errors import RequestError
from sidecar.model import Algorithm, Code, RateLimit
from sidecar.observability.health import Health
from sidecar.observability.metrics import CONTENT_TYPE
from sidecar.rules.model import RuleSet
from sidecar.rules.watcher import RulesManager
from sidecar.service import RateLimitService, ServiceError
from sidecar.transports.rest.handlers import register_rest
from sidecar.transports.rest.options import RestOptions
from sidecar.transports.rls_proto import ResponseBuilder, descriptors_from_proto

MAX_BODY_BYTES = 1 << 20


class HttpApi:
    def __init__(self, service: RateLimitService, health: Health,
                 rules: RulesManager | None, rest: RestOptions | None = None) -> None:
        self.service = service
        self.engine = service.engine
        self.metrics = service.metrics
        self.rest = rest
        self.health = health
        self.rules = rules
        self.builder = ResponseBuilder()
        self._json = service.method("json", "http")

    def main_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/healthcheck", self.healthcheck)
        app.router.add_route("*", "/json", self.json)
        app.router.add_get("/rlconfig", self.rlconfig)
        app.router.add_get("/metrics", self.prometheus)
        if self.rest is not None:
            register_rest(app, self.service, self.rest)
        return app

    def debug_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self.index)
        app.router.add_get("/rlconfig", self.rlconfig)
        app.router.add_get("/metrics", self.prometheus)
        app.router.add_get("/healthcheck", self.healthcheck)
        return app

    async def healthcheck(self, request: web.Request) -> web.Response:
        if self.health.ok:
            return web.Response(text="OK")
        return web.Response(status=500, text="")

    async def json(self, request: web.Request) -> web.Response:
        """ShouldRateLimit with a JSON RateLimitRequest, as the reference's /json."""
        body = await request.read()
        message = rls_pb2.RateLimitRequest()
        try:
            try:
                json_format.Parse(body.decode("utf-8"), message)
                descriptors = descriptors_from_proto(message)
            except (json_format.ParseError, UnicodeDecodeError) as exc:
                raise self._json.reject(RequestError(
                    f"the body is not a JSON RateLimitRequest: {exc}")) from None
            except RequestError as exc:
                raise self._json.reject(exc) from None
            decision = await self._json.decide(message.domain, descriptors, message.hits_addend)
        except ServiceError as exc:
            status = exc.failure.http_status
            return web.Response(status=status,
                                text=f"{HTTPStatus(status).phrase}: {exc.failure.message}\n")
        response = self.builder.build(decision)
        status = 429 if decision.overall == Code.OVER_LIMIT else 200
        text = json_format.MessageToJson(response, indent=None)
        return web.Response(status=status, text=text, content_type="application/json")

    async def rlconfig(self, request: web.Request) -> web.Response:
        rules = self.engine.rules
        if request.query.get("format") == "json":
            return web.json_response(self._rlconfig_json(rules))
        lines = [_rlconfig_line(key, limit) for key, limit in
                 (rules.iter_limits() if rules else [])]
        status = self.rules.status if self.rules else None
        lines.append("")
        lines.append(f"# version: {rules.version if rules else 'none'}")
        if rules:
            lines.append(f"# loaded_at: {_iso(rules.loaded_at)}")
            lines.append(f"# files: {', '.join(rules.files)}")
        if status and status.last_error:
            lines.append(f"# last_reload_error ({_iso(status.last_error_at)}):")
            lines.extend(f"#   {line}" for line in status.last_error.splitlines())
        return web.Response(text="\n".join(lines) + "\n")

    def _rlconfig_json(self, rules: RuleSet | None) -> dict[str, Any]:
        status = self.rules.status if self.rules else None
        return {
            "version": rules.version if rules else None,
            "loaded_at": _iso(rules.loaded_at) if rules else None,
            "files": list(rules.files) if rules else [],
            "limits": [_limit_json(key, limit)
                       for key, limit in (rules.iter_limits() if rules else [])],
            "last_reload_error": (status.last_error or None) if status else None,
        }

    async def prometheus(self, request: web.Request) -> web.Response:
        resp = web.Response(body=self.metrics.exposition())
        resp.headers["Content-Type"] = CONTENT_TYPE
        return resp

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(text="\n".join([
            "/healthcheck: 200 when serving, 500 when not",
            "/metrics: Prometheus metrics",
            "/rlconfig: print out the currently loaded configuration for debugging",
        ]) + "\n")


def _rlconfig_line(key: str, limit: Any) -> str:
    if limit.algorithm == Algorithm.CONCURRENCY:  # holders at once, not a rate
        return (f"{key}: algorithm=concurrency max={limit.requests_per_unit} "
                f"lease_ttl={limit.window_ms // 1000}s, "
                f"shadow_mode: {str(limit.shadow_mode).lower()}")
    unit = limit.unit.name
    return (f"{key}: unit={unit} requests_per_unit={limit.requests_per_unit}, "
            f"shadow_mode: {str(limit.shadow_mode).lower()}, "
            f"quota_mode: {str(limit.quota_mode).lower()}")


def _limit_json(key: str, limit: RateLimit) -> dict[str, Any]:
    out: dict[str, Any] = {"key": key, "unit": limit.unit.name,
                           "requests_per_unit": limit.requests_per_unit,
                           "unlimited": limit.unlimited, "name": limit.name,
                           "shadow_mode": limit.shadow_mode, "quota_mode": limit.quota_mode}
    if limit.algorithm == Algorithm.CONCURRENCY:
        out |= {"algorithm": "concurrency", "max": limit.requests_per_unit,
                "lease_ttl_seconds": limit.window_ms // 1000}
    return out


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))

