"""Rate-limit response headers from a ``CheckResult``, exactly as the sidecar writes them.

- ``RateLimit-Policy: "<policy>";q=<limit>;w=<window>`` and ``RateLimit: "<policy>";r=<remaining>
  ;t=<reset>`` (IETF draft-ietf-httpapi-ratelimit-headers: Structured Field Lists, one member per
  limited descriptor);
- ``X-RateLimit-Limit``, ``X-RateLimit-Remaining``, ``X-RateLimit-Reset`` (seconds from now);
- ``Retry-After`` (seconds) when refused.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from viva_ratelimit_client.result import CheckResult

_SF_UNSAFE = re.compile(r"[^\x20-\x7e]")


def rate_limit_headers(result: CheckResult, families: frozenset[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    members = result.results or (result,)
    limited = [r for r in members if r.limit is not None]
    if "ietf" in families and limited:
        out.append(("RateLimit-Policy", ", ".join(
            f"{_sf_string(r.policy)};q={r.limit};w={r.window_seconds}" for r in limited)))
        out.append(("RateLimit", ", ".join(
            f"{_sf_string(r.policy)};r={r.remaining};t={r.reset_after_seconds}"
            for r in limited)))
    if "x" in families and result.limit is not None:
        out.append(("X-RateLimit-Limit", str(result.limit)))
        out.append(("X-RateLimit-Remaining", str(result.remaining)))
        out.append(("X-RateLimit-Reset", str(result.reset_after_seconds)))
    if "retry-after" in families and result.retry_after_seconds is not None:
        out.append(("Retry-After", str(result.retry_after_seconds)))
    return out


def _sf_string(text: str | None) -> str:
    """An RFC 8941 String: printable ASCII, backslash and double quote escaped."""
    safe = _SF_UNSAFE.sub("_", text or "default")
    return '"' + safe.replace("\\", "\\\\").replace('"', '\\"') + '"'
