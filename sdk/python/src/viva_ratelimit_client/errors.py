"""Every exception the client raises on purpose.

    RateLimitClientError
    ├── InvalidRequest       the sidecar refused the request as malformed (HTTP 400/413,
    │                        gRPC INVALID_ARGUMENT); ``field`` names the culprit. Always raised:
    │                        it is a bug in the caller, not an outage.
    └── SidecarUnavailable   no decision after the retries (connection refused, timeout, 503);
                             raised only with ``failure_mode="raise"``; otherwise the failure
                             mode answers (allowed when "open", refused when "closed").
"""

from __future__ import annotations


class RateLimitClientError(Exception):
    """Base of the client's exceptions."""


class InvalidRequest(RateLimitClientError, ValueError):
    """The sidecar says the request is invalid."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class SidecarUnavailable(RateLimitClientError):
    """The sidecar could not be asked or could not decide; ``attempts`` tries were made."""

    def __init__(self, message: str, attempts: int = 1) -> None:
        self.attempts = attempts
        super().__init__(message)
