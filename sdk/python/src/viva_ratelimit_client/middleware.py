"""What the ASGI, WSGI and Django middleware share: from a CheckResult to a response."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from viva_ratelimit_client.result import HEADER_FAMILIES, CheckResult

__all__ = ["HEADER_FAMILIES", "Verdict", "verdict"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """``status`` None: pass the request on and add ``headers`` to the app's response;
    else answer with ``status``, ``headers`` and ``body`` instead of calling the app."""

    status: int | None
    headers: list[tuple[str, str]]
    body: bytes = b""


def verdict(result: CheckResult, families: Iterable[str] = HEADER_FAMILIES) -> Verdict:
    headers = result.headers(frozenset(families))
    if result.allowed:
        return Verdict(None, headers)
    json_type = ("Content-Type", "application/json")
    if result.error is not None:  # failure_mode="closed": the limiter could not be asked
        body = {"error": "rate limiter unavailable"}
        return Verdict(503, [json_type], json.dumps(body).encode())
    body_429 = {"error": "rate limit exceeded", "retry_after_seconds": result.retry_after_seconds}
    return Verdict(429, [*headers, json_type], json.dumps(body_429).encode())


REASONS = {429: "Too Many Requests", 503: "Service Unavailable"}
