"""Every exception the sidecar raises on purpose.

    SidecarError
    ├── SettingsError        a setting (flag or environment variable) has a bad value
    ├── RuleError            one problem in a rules file (file, path, line, what, expected)
    │   └── RuleSetError     a load failed: carries every RuleError of that load
    ├── RequestError         a caller sent something invalid (-> INVALID_ARGUMENT / HTTP 400)
    │   └── RequestTooLarge  ... larger than accepted (-> RESOURCE_EXHAUSTED / HTTP 413)
    ├── LeaseNotFound        no such lease: unknown, expired or released (-> NOT_FOUND / 404)
    ├── NoRulesError         no valid rules have been loaded yet (-> UNAVAILABLE)
    └── StorageError         the counter store failed or timed out (-> UNAVAILABLE)

Third-party exceptions (redis, yaml, grpc) are translated into these at the boundary that meets
them: storage/redis/ for redis, rules/ for yaml. service.py maps each to what every wire
answers (gRPC status, HTTP status, the error metric).
"""

from __future__ import annotations


class SidecarError(Exception):
    """Base of every error the sidecar raises on purpose."""


class SettingsError(SidecarError):
    """A setting has a value the sidecar cannot use."""


class RuleError(SidecarError):
    """One problem found in a rules file."""

    def __init__(self, file: str, path: str, problem: str, line: int | None = None) -> None:
        self.file = file
        self.path = path
        self.problem = problem
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.path}: {self.problem}" if self.path else f"{where}: {self.problem}"


class RuleSetError(SidecarError):
    """A load of the rules failed; ``errors`` lists every problem found."""

    def __init__(self, errors: list[RuleError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class RequestError(SidecarError):
    """The request is malformed; the message names the field, and ``field`` too when the
    layer that found the problem knows how the caller spelled it."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class RequestTooLarge(RequestError):
    """The request is larger than the configured maximum."""


class LeaseNotFound(SidecarError):
    """A lease id names no lease held now: never issued, expired, or released already."""


class NoRulesError(SidecarError):
    """No rules have been loaded successfully yet."""

    def __init__(self) -> None:
        super().__init__("no rate limit configuration loaded")


class StorageError(SidecarError):
    """The counter store failed. ``transient`` says whether retrying may help."""

    def __init__(self, message: str, transient: bool = True) -> None:
        self.transient = transient
        super().__init__(message)
