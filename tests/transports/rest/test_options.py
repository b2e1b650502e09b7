"""RestOptions: defaults, VIVA_REST_* / VIVA_FORWARD_AUTH_* / VIVA_RATELIMIT_HEADERS."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from sidecar.errors import SettingsError
from sidecar.transports.rest.options import RestOptions


def test_defaults() -> None:
    options = RestOptions.from_env({})
    assert options == RestOptions()
    assert (options.max_body_bytes, options.max_descriptors, options.max_entries,
            options.max_hits) == (65536, 20, 10, 1_000_000)
    assert (options.identifier_header, options.namespace_header,
            options.default_namespace) == ("X-Forwarded-For", "X-RateLimit-Namespace", "")
    assert options.headers == {"ietf", "x", "retry-after"}
    assert (options.deny_status, options.hash_identifier) == (429, False)


def test_every_variable() -> None:
    options = RestOptions.from_env({
        "VIVA_REST_MAX_BODY_BYTES": "1024", "VIVA_REST_MAX_DESCRIPTORS": "5",
        "VIVA_REST_MAX_ENTRIES": "3", "VIVA_REST_MAX_HITS": "50",
        "VIVA_FORWARD_AUTH_IDENTIFIER_HEADER": " X-Api-Key ",
        "VIVA_FORWARD_AUTH_XFF_INDEX": "-1",
        "VIVA_FORWARD_AUTH_NAMESPACE_HEADER": "",
        "VIVA_FORWARD_AUTH_DEFAULT_NAMESPACE": "api_requests",
        "VIVA_FORWARD_AUTH_HASH_IDENTIFIER": "true",
        "VIVA_FORWARD_AUTH_DENY_STATUS": "403",
        "VIVA_RATELIMIT_HEADERS": "IETF, retry-after",
        "UNRELATED": "ignored",
    })
    assert options == RestOptions(
        max_body_bytes=1024, max_descriptors=5, max_entries=3, max_hits=50,
        identifier_header="X-Api-Key", xff_index=-1, namespace_header="",
        default_namespace="api_requests",
        hash_identifier=True, deny_status=403, headers=frozenset({"ietf", "retry-after"}))


@pytest.mark.parametrize("text", ["none", ",", ""])
def test_no_headers(text: str) -> None:
    assert RestOptions.from_env({"VIVA_RATELIMIT_HEADERS": text}).headers == frozenset()


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("VIVA_REST_MAX_BODY_BYTES", "64k", "is not a whole number"),
    ("VIVA_REST_MAX_BODY_BYTES", "0", "out of range"),
    ("VIVA_REST_MAX_DESCRIPTORS", "-1", "out of range"),
    ("VIVA_REST_MAX_ENTRIES", "ten", "is not a whole number"),
    ("VIVA_REST_MAX_HITS", "99999999999", "out of range"),
    ("VIVA_FORWARD_AUTH_IDENTIFIER_HEADER", "", "is not a header name"),
    ("VIVA_FORWARD_AUTH_IDENTIFIER_HEADER", "X Api Key", "is not a header name"),
    ("VIVA_FORWARD_AUTH_NAMESPACE_HEADER", "X:Ns", "is not a header name"),
    ("VIVA_FORWARD_AUTH_HASH_IDENTIFIER", "maybe", "is not a boolean"),
    ("VIVA_FORWARD_AUTH_XFF_INDEX", "0", "is not a position"),
    ("VIVA_FORWARD_AUTH_XFF_INDEX", "last", "is not a whole number"),
    ("VIVA_FORWARD_AUTH_DENY_STATUS", "500", "is not supported"),
    ("VIVA_FORWARD_AUTH_DENY_STATUS", "abc", "is not a whole number"),
    ("VIVA_RATELIMIT_HEADERS", "ietf,draft7", "'draft7' is not a header family"),
])
def test_bad_values_name_the_variable(variable: str, value: str, says: str) -> None:
    with pytest.raises(SettingsError) as caught:
        RestOptions.from_env({variable: value})
    assert str(caught.value).startswith(f"{variable}=")
    assert says in str(caught.value)


@pytest.mark.parametrize(("change", "says"), [
    ({"max_hits": 0}, "max_hits"),
    ({"identifier_header": "bad header"}, "identifier_header"),
    ({"namespace_header": "a:b"}, "namespace_header"),
    ({"deny_status": 401}, "deny_status"),
    ({"xff_index": 0}, "xff_index"),
    ({"headers": frozenset({"draft7"})}, "headers"),
])
def test_direct_construction_is_checked_too(change: dict[str, Any], says: str) -> None:
    with pytest.raises(SettingsError, match=says):
        dataclasses.replace(RestOptions(), **change)


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        RestOptions().max_hits = 5  # type: ignore[misc]
