"""Key verification for gateways: Envoy ext_authz over gRPC and forward-auth over HTTP.

One call authenticates and rate-limits. The key comes from the first of VIVA_KEY_HEADERS that
the request has (``authorization`` means ``Authorization: Bearer <key>``); a route may require
a feature (ext_authz: ``viva-feature`` in the filter's per-route ``context_extensions``;
forward-auth: the ``X-Viva-Feature`` header or ``?feature=``), and charge more than 1
(``viva-cost`` / ``X-Viva-Cost``).

    VALID                                   allowed; upstream gets x-viva-customer-id,
                                            x-viva-key-id, x-viva-plan; the client RateLimit
    missing key, NOT_FOUND, EXPIRED,        401 (WWW-Authenticate: Bearer)
      REVOKED, DISABLED
    FORBIDDEN                               403
    RATE_LIMITED, QUOTA_EXCEEDED            429 with Retry-After (forward-auth: or
                                            ?deny_status=403, for nginx's auth_request)

Every answer says why in ``x-viva-code``. The counter store down (failure policy
``unavailable``): ext_authz answers gRPC UNAVAILABLE (Envoy's failure_mode_allow decides),
forward-auth 503.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2 as authz
from google.protobuf.message import DecodeError
from google.rpc import status_pb2

from sidecar.errors import RequestError, StorageError
from sidecar.h2.grpc_wire import GrpcError, Status
from sidecar.management.admin import failure
from sidecar.management.answers import headers as rate_headers
from sidecar.management.answers import key_headers, rate_answer, retry_after
from sidecar.management.verify import Outcome, Verifier
from sidecar.observability.metrics import Metrics

log = logging.getLogger("sidecar.gateway")

CHECK_PATH = b"/envoy.service.auth.v3.Authorization/Check"
UNAUTHENTICATED = ("MISSING", "NOT_FOUND", "EXPIRED", "REVOKED", "DISABLED")
LIMITED = ("RATE_LIMITED", "QUOTA_EXCEEDED")
_GRPC = {"VALID": 0, "FORBIDDEN": 7, "RATE_LIMITED": 8, "QUOTA_EXCEEDED": 8}  # else 16
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
MAX_COST = 1_000_000


def http_status(code: str, deny_status: int = 429) -> int:
    if code == "VALID":
        return 200
    if code == "FORBIDDEN":
        return 403
    return deny_status if code in LIMITED else 401


def find_key(headers: Mapping[str, str], names: tuple[str, ...]) -> str:
    """The key from the first configured header present (lower-case names)."""
    for name in names:
        value = headers.get(name, "")
        if name == "authorization":
            scheme, _, token = value.partition(" ")
            value = token if scheme.lower() == "bearer" else ""
        if value.strip():
            return value.strip()
    return ""


def _cost(text: str | None, field: str) -> int:
    if text is None or text == "":
        return 1
    if not text.isdigit() or int(text) > MAX_COST:
        raise RequestError(f"{field}: {text[:20]!r} is not a cost; expected 0 to {MAX_COST}")
    return int(text)


def _features(text: str) -> tuple[str, ...]:
    return tuple(f.strip() for f in text.split(",") if f.strip())


def _body(outcome_code: str) -> str:
    return json.dumps({"code": outcome_code, "error": {
        "MISSING": "an API key is required", "FORBIDDEN": "the plan lacks this feature",
        "RATE_LIMITED": "rate limit exceeded", "QUOTA_EXCEEDED": "quota exceeded",
    }.get(outcome_code, "the API key is not valid")}) + "\n"


def rate_pairs(outcome: Outcome, families: frozenset[str], now: float
               ) -> tuple[list[tuple[str, str]], int]:
    """The rate-limit headers of ``outcome`` and the Retry-After a refusal should carry."""
    if outcome.decision is not None and outcome.code not in LIMITED:
        return key_headers(outcome.decision, families), 1  # the hot path: no Answer built
    answer = rate_answer(outcome, now)
    return rate_headers(answer, families), retry_after(answer)


class ExtAuthz:
    """envoy.service.auth.v3.Authorization/Check over the Verifier."""

    def __init__(self, verifier: Verifier, key_headers: tuple[str, ...],
                 families: frozenset[str], metrics: Metrics) -> None:
        self.verifier = verifier
        self.key_headers = key_headers
        self.families = families
        self._requests = metrics.requests.labels("ext_authz")
        self._latency = metrics.response_time.labels("ext_authz")
        self._templates: dict[tuple[str, str, str], bytes] = {}
        self._misconfigured: set[str] = set()

    async def check(self, request: Any) -> Any:
        """CheckRequest → CheckResponse; StorageError when the counter store is down."""
        started = time.perf_counter()
        self._requests.inc()
        try:
            return await self._check(request)
        finally:
            self._latency.observe(time.perf_counter() - started)

    async def _check(self, request: Any) -> Any:
        attributes = request.attributes
        http = attributes.request.http
        headers: Mapping[str, str] = http.headers
        if not headers and http.header_map.headers:  # Envoy's encode_raw_headers form
            headers = {h.key.lower(): (h.raw_value.decode("utf-8", "replace") or h.value)
                       for h in http.header_map.headers}
        secret = find_key(headers, self.key_headers)
        context = attributes.context_extensions
        try:
            cost = _cost(context.get("viva-cost"), "viva-cost")
        except RequestError as exc:  # the route's configuration, not the client: log it once
            if str(exc) not in self._misconfigured and len(self._misconfigured) < 100:
                self._misconfigured.add(str(exc))
                log.warning("ext_authz route misconfigured, charging 1: %s", exc)
            cost = 1
        if not secret:
            return self._denied("MISSING", None)
        outcome = await self.verifier.verify(
            secret, attributes.source.address.socket_address.address, cost,
            features=_features(context.get("viva-feature", "")), transport="ext_authz")
        if outcome.valid:
            return self._allowed(outcome)
        return self._denied(outcome.code, outcome)

    def _allowed(self, outcome: Outcome) -> Any:
        key = outcome.key
        assert key is not None
        response = authz.CheckResponse()
        # The upstream headers of a key never change while it is cached: built once.
        response.MergeFromString(self._upstream(key.key_id, key.customer_id, key.plan))
        ok = response.ok_response
        pairs, _ = rate_pairs(outcome, self.families, self.verifier.engine.clock())
        for name, value in pairs:
            ok.response_headers_to_add.add(header=base_pb2.HeaderValue(key=name, value=value),
                                           append_action=_OVERWRITE)
        return response

    def _upstream(self, key_id: str, customer_id: str, plan: str) -> bytes:
        cached = self._templates.get((key_id, customer_id, plan))
        if cached is None:
            response = authz.CheckResponse(status=status_pb2.Status(code=0))
            for name, value in (("x-viva-customer-id", customer_id), ("x-viva-key-id", key_id),
                                ("x-viva-plan", plan)):
                response.ok_response.headers.add(
                    header=base_pb2.HeaderValue(key=name, value=value),
                    append_action=_OVERWRITE)
            if len(self._templates) >= 10_000:
                self._templates.clear()
            cached = self._templates[(key_id, customer_id, plan)] = \
                response.SerializeToString()
        return cached

    def _denied(self, code: str, outcome: Outcome | None) -> Any:
        status = http_status(code)
        response = authz.CheckResponse(status=status_pb2.Status(code=_GRPC.get(code, 16)))
        denied = response.denied_response
        denied.status.code = status
        denied.body = _body(code)
        pairs = [("x-viva-code", code), ("content-type", "application/json")]
        if status == 401:
            pairs.append(("www-authenticate", 'Bearer realm="viva-ratelimit"'))
        if outcome is not None:
            rates, wait = rate_pairs(outcome, self.families, self.verifier.engine.clock())
            pairs.extend(rates)
            if code in LIMITED and not any(k.lower() == "retry-after" for k, _ in pairs):
                pairs.append(("retry-after", str(wait)))
        for name, value in pairs:
            denied.headers.add(header=base_pb2.HeaderValue(key=name, value=value),
                               append_action=_OVERWRITE)
        return response

    # -- the fast transport's method: bytes in, bytes out --------------------------------

    async def fast(self, message: bytes) -> bytes:
        try:
            request = authz.CheckRequest.FromString(message)
        except DecodeError as exc:
            raise GrpcError(Status.INVALID_ARGUMENT, f"malformed CheckRequest: {exc}") from None
        try:
            return (await self.check(request)).SerializeToString()  # type: ignore[no-any-return]
        except StorageError as exc:
            raise GrpcError(Status.UNAVAILABLE, str(exc)) from None
        except Exception:
            log.exception("unexpected error answering ext_authz Check")
            raise GrpcError(Status.INTERNAL, "internal error; see the sidecar log") from None


def grpcio_servicer(ext_authz: ExtAuthz) -> Any:
    """The grpcio transport's Authorization servicer over the same ExtAuthz."""
    import grpc
    from envoy.service.auth.v3 import external_auth_pb2_grpc

    class AuthorizationServicer(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
        async def Check(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await ext_authz.check(request)
            except StorageError as exc:
                await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            except Exception:
                log.exception("unexpected error answering ext_authz Check")
                await context.abort(grpc.StatusCode.INTERNAL, "internal error")
            raise AssertionError("unreachable")  # context.abort always raises

    return AuthorizationServicer()


class ForwardAuth:
    """``/v1/keys/forward-auth[/…]`` for nginx auth_request and Traefik ForwardAuth."""

    def __init__(self, verifier: Verifier, key_headers: tuple[str, ...],
                 families: frozenset[str], xff_index: int) -> None:
        self.verifier = verifier
        self.key_headers = key_headers
        self.families = families
        self.xff_index = xff_index

    async def handle(self, request: web.Request) -> web.Response:
        try:
            deny = request.query.get("deny_status", "429")
            if deny not in ("403", "429"):
                raise RequestError(f"deny_status: {deny[:10]!r} is not supported; expected "
                                   "403 or 429")
            headers = {k.lower(): v for k, v in request.headers.items()}
            secret = find_key(headers, self.key_headers)
            cost = _cost(headers.get("x-viva-cost"), "X-Viva-Cost")
            features = _features(headers.get("x-viva-feature", "")
                                 or request.query.get("feature", ""))
            if not secret:
                return self._answer("MISSING", None, int(deny))
            outcome = await self.verifier.verify(secret, self._client(request), cost,
                                                 features=features, transport="forward_auth")
        except Exception as exc:  # every failure becomes a JSON error
            return failure(exc)
        return self._answer(outcome.code, outcome, int(deny))

    def _client(self, request: web.Request) -> str:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if not forwarded:
            return request.remote or ""
        addresses = [a.strip() for a in forwarded.split(",")]
        index = self.xff_index
        if index > 0:
            return addresses[min(index, len(addresses)) - 1]
        return addresses[max(index, -len(addresses))]

    def _answer(self, code: str, outcome: Outcome | None, deny: int) -> web.Response:
        status = http_status(code, deny)
        response = web.Response(status=status, text=_body(code),
                                content_type="application/json")
        response.headers["X-Viva-Code"] = code
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="viva-ratelimit"'
        if outcome is not None and outcome.key is not None and outcome.valid:
            response.headers["X-Viva-Customer-Id"] = outcome.key.customer_id
            response.headers["X-Viva-Key-Id"] = outcome.key.key_id
            response.headers["X-Viva-Plan"] = outcome.key.plan
        if outcome is not None:
            rates, wait = rate_pairs(outcome, self.families, self.verifier.engine.clock())
            for name, value in rates:
                response.headers[name] = value
            if code in LIMITED and "Retry-After" not in response.headers:
                response.headers["Retry-After"] = str(wait)
        return response
