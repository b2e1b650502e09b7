"""What a check answers: ``CheckResult``, from the REST JSON or built from gRPC statuses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from viva_ratelimit_client.headers import rate_limit_headers

FailureMode = Literal["open", "closed", "raise"]
Descriptor = Mapping[str, str]  # entries in order: {"route": "/cart", "method": "POST"}

HEADER_FAMILIES: frozenset[str] = frozenset({"ietf", "x", "retry-after"})


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The answer for a request (and, when descriptors were sent, for each of them).

    ``limit`` is None when no limit applies (a namespace without rules, an identifier that
    matches none, an unlimited one). ``error`` is set when the sidecar could not be asked and
    the failure mode answered instead (``allowed`` is then True for "open", False for "closed"),
    after ``attempts`` tries.
    """

    allowed: bool
    limit: int | None = None
    remaining: int | None = None
    reset_at: datetime | None = None
    reset_after_seconds: int | None = None
    retry_after_seconds: int | None = None
    window_seconds: int | None = None
    policy: str | None = None
    results: tuple[CheckResult, ...] = ()
    error: str | None = None
    attempts: int | None = None  # with error: how many tries were made

    def __bool__(self) -> bool:
        return self.allowed

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> CheckResult:
        """A result from the sidecar's /v1/check or /v1/report JSON."""
        reset_at = doc.get("reset_at")
        return cls(
            allowed=bool(doc["allowed"]), limit=doc.get("limit"), remaining=doc.get("remaining"),
            reset_at=parse_time(reset_at) if isinstance(reset_at, str) else None,
            reset_after_seconds=doc.get("reset_after_seconds"),
            retry_after_seconds=doc.get("retry_after_seconds"),
            window_seconds=doc.get("window_seconds"), policy=doc.get("policy"),
            results=tuple(cls.from_json(r) for r in doc.get("results") or ()))

    @classmethod
    def failure(cls, mode: FailureMode, error: str, attempts: int = 1) -> CheckResult:
        """The answer of the failure mode ("open" or "closed") when the sidecar is out of reach."""
        return cls(allowed=mode == "open", error=error, attempts=attempts)

    def headers(self, families: frozenset[str] = HEADER_FAMILIES) -> list[tuple[str, str]]:
        """The response headers the sidecar would send for this result (see ``headers.py``)."""
        return rate_limit_headers(self, families)


def combine(results: Sequence[CheckResult], allowed: bool) -> CheckResult:
    """The overall result of several descriptors, chosen as the sidecar chooses: when refused,
    the last refusing limit (retry after the longest wait); else the fewest remaining."""
    limited = [r for r in results if r.limit is not None]
    refused = [r for r in limited if not r.allowed]
    if not allowed and refused:
        retry = max(r.retry_after_seconds or 1 for r in refused)
        return replace(refused[-1], allowed=False, retry_after_seconds=retry,
                       results=tuple(results))
    if limited:
        chosen = min(limited, key=lambda r: r.remaining or 0)
        retry_after = None if allowed else max(1, chosen.reset_after_seconds or 1)
        return replace(chosen, allowed=allowed, retry_after_seconds=retry_after,
                       results=tuple(results))
    return CheckResult(allowed, retry_after_seconds=None if allowed else 1,
                       results=tuple(results))


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
