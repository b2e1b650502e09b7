"""The REST API's options: limits of a request and how forward-auth reads its inputs, from
VIVA_REST_*, VIVA_FORWARD_AUTH_* and VIVA_RATELIMIT_HEADERS. Kept apart from rest.py so that
loading the settings does not load the HTTP server or the engine."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sidecar.envvars import parse_bool, parse_int
from sidecar.errors import SettingsError

HEADER_FAMILIES = ("ietf", "x", "retry-after")
DENY_STATUSES = (403, 429)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP field name (RFC 9110 token)


@dataclass(frozen=True)
class RestOptions:
    """Limits of the REST API and how forward-auth reads its request (VIVA_REST_*, …)."""

    max_body_bytes: int = 64 * 1024
    max_descriptors: int = 20
    max_entries: int = 10
    max_hits: int = 1_000_000
    identifier_header: str = "X-Forwarded-For"
    # Which X-Forwarded-For address: 1 the first (the proxy overwrites the header), -1 the
    # last (the one the proxy appended: a client cannot forge it), …; past the end: the first.
    xff_index: int = 1
    namespace_header: str = "X-RateLimit-Namespace"  # "" to take only the default
    default_namespace: str = ""
    hash_identifier: bool = False  # forward-auth: count sha256(identifier), e.g. for API keys
    deny_status: int = 429  # forward-auth refusal; 403 for nginx (see the README)
    headers: frozenset[str] = field(default_factory=lambda: frozenset(HEADER_FAMILIES))

    def __post_init__(self) -> None:
        for name, value in (("max_body_bytes", self.max_body_bytes),
                            ("max_descriptors", self.max_descriptors),
                            ("max_entries", self.max_entries), ("max_hits", self.max_hits)):
            if value < 1:
                raise SettingsError(f"RestOptions.{name}={value} must be at least 1")
        if not _TOKEN.fullmatch(self.identifier_header):
            raise SettingsError(f"RestOptions.identifier_header={self.identifier_header!r} "
                                "is not a header name")
        if self.namespace_header and not _TOKEN.fullmatch(self.namespace_header):
            raise SettingsError(f"RestOptions.namespace_header={self.namespace_header!r} "
                                "is not a header name")
        if self.xff_index == 0:
            raise SettingsError("RestOptions.xff_index=0; expected 1 (first), -1 (last), …")
        if self.deny_status not in DENY_STATUSES:
            raise SettingsError(f"RestOptions.deny_status={self.deny_status} is not 403 or 429")
        if not self.headers <= set(HEADER_FAMILIES):
            raise SettingsError(f"RestOptions.headers={sorted(self.headers)} has an unknown "
                                f"family; expected some of {', '.join(HEADER_FAMILIES)}")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RestOptions:
        """Options from VIVA_REST_* / VIVA_FORWARD_AUTH_* / VIVA_RATELIMIT_HEADERS; defaults
        for the unset ones; SettingsError naming the variable on a bad value."""
        values: dict[str, Any] = {}
        for name, (variable, parse) in _ENV.items():
            text = env.get(variable)
            if text is not None:
                values[name] = parse(variable, text)
        return cls(**values)


def _positive(maximum: int) -> Callable[[str, str], int]:
    return lambda name, text: parse_int(name, text, 1, maximum)


def _header_name(optional: bool) -> Callable[[str, str], str]:
    def parse(name: str, text: str) -> str:
        value = text.strip()
        if (value or not optional) and not _TOKEN.fullmatch(value):
            raise SettingsError(f"{name}={text!r} is not a header name; expected e.g. X-Api-Key")
        return value

    return parse


def _xff_index(name: str, text: str) -> int:
    value = parse_int(name, text, -100, 100)
    if value == 0:
        raise SettingsError(f"{name}=0 is not a position; expected 1 (the first address), "
                            "-1 (the last), 2, -2, …")
    return value


def _deny_status(name: str, text: str) -> int:
    value = parse_int(name, text, 100, 599)
    if value not in DENY_STATUSES:
        raise SettingsError(f"{name}={text!r} is not supported; expected 429, or 403 for nginx")
    return value


def _families(name: str, text: str) -> frozenset[str]:
    parts = {p.strip().lower() for p in text.split(",")} - {""}
    if parts == {"none"}:
        return frozenset()
    unknown = sorted(parts - set(HEADER_FAMILIES))
    if unknown:
        raise SettingsError(f"{name}={text!r}: {unknown[0]!r} is not a header family; expected "
                            f"a comma-separated list of {', '.join(HEADER_FAMILIES)}, or none")
    return frozenset(parts)


_ENV: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "max_body_bytes": ("VIVA_REST_MAX_BODY_BYTES", _positive(64 << 20)),
    "max_descriptors": ("VIVA_REST_MAX_DESCRIPTORS", _positive(1000)),
    "max_entries": ("VIVA_REST_MAX_ENTRIES", _positive(1000)),
    "max_hits": ("VIVA_REST_MAX_HITS", _positive(2**32 - 1)),
    "identifier_header": ("VIVA_FORWARD_AUTH_IDENTIFIER_HEADER", _header_name(False)),
    "xff_index": ("VIVA_FORWARD_AUTH_XFF_INDEX", _xff_index),
    "namespace_header": ("VIVA_FORWARD_AUTH_NAMESPACE_HEADER", _header_name(True)),
    "default_namespace": ("VIVA_FORWARD_AUTH_DEFAULT_NAMESPACE", lambda _, text: text.strip()),
    "hash_identifier": ("VIVA_FORWARD_AUTH_HASH_IDENTIFIER", parse_bool),
    "deny_status": ("VIVA_FORWARD_AUTH_DENY_STATUS", _deny_status),
    "headers": ("VIVA_RATELIMIT_HEADERS", _families),
}
# Every variable from_env reads (the start-up check of unknown variables knows them).
ENV_VARIABLES = frozenset(variable for variable, _ in _ENV.values())
