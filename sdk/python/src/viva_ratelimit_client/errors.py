"""Every exception the client raises on purpose.

    RateLimitClientError
    ├── InvalidRequest       the sidecar refused the request as malformed (HTTP 400/413,
    │                        gRPC INVALID_ARGUMENT); ``field`` names the culprit. Always raised:
    │                        it is a bug in the caller, not an outage.
    ├── Unauthorized         verify_key without a root key, or the sidecar refused it (HTTP 401,
    │                        403 without the scope keys:verify). Always raised, whatever the
    │                        failure mode: a wrong credential must never read as valid keys.
    ├── SidecarUnavailable   no decision after the retries (connection refused, timeout, 503);
    │                        raised only with ``failure_mode="raise"`` (``verify_failure_mode``
    │                        for verify_key); otherwise the failure mode answers (allowed or
    │                        valid when "open", refused or not valid when "closed").
    └── LeaseRefused         ``with limiter.lease(...)`` could not take a slot: every one is
                             held (or the sidecar is out of reach and the failure mode is
                             "closed"); ``result`` is the LeaseResult that says so.

No message ever holds an API key or the root key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from viva_ratelimit_client.lease import LeaseResult


class RateLimitClientError(Exception):
    """Base of the client's exceptions."""


class InvalidRequest(RateLimitClientError, ValueError):
    """The sidecar says the request is invalid."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class Unauthorized(RateLimitClientError):
    """The root key is missing (``status`` None: nothing was sent), not valid (401) or lacks
    the scope ``keys:verify`` (403)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class SidecarUnavailable(RateLimitClientError):
    """The sidecar could not be asked or could not decide; ``attempts`` tries were made."""

    def __init__(self, message: str, attempts: int = 1) -> None:
        self.attempts = attempts
        super().__init__(message)


class LeaseRefused(RateLimitClientError):
    """No slot was taken; ``result`` (a LeaseResult) has the sidecar's answer, or the error
    that made the failure mode refuse."""

    def __init__(self, result: LeaseResult) -> None:
        self.result = result
        if result.error is not None:
            message = f"lease refused: the sidecar could not be asked ({result.error})"
        else:
            message = (f"lease refused: {result.active} of {result.limit} held for "
                       f"{result.policy!r}")
            if result.retry_after_seconds is not None:
                message += f"; a slot frees within {result.retry_after_seconds} s"
        super().__init__(message)
