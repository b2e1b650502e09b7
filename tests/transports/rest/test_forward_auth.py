"""/v1/forward-auth: identifier and namespace from headers; 200, then 429 with Retry-After."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sidecar.storage.memory import MemoryStore
from sidecar.transports.rest.options import RestOptions
from tests.conftest import FakeClock
from tests.transports.rest.kit import Rest, serve_rest, write_rules

CLIENT = {"X-Forwarded-For": "203.0.113.7, 10.0.0.1", "X-RateLimit-Namespace": "api_requests"}


async def forward(api: Rest, headers: dict[str, str], method: str = "GET",
                  path: str = "/v1/forward-auth") -> tuple[int, dict[str, str], object]:
    reply = await api.request(method, path, headers=headers)
    return reply.status, reply.headers, reply.body


async def test_allowed_then_429_with_retry_after(rest: Rest) -> None:
    for remaining in (2, 1, 0):
        status, headers, body = await forward(rest, CLIENT)
        assert status == 200
        assert headers["ratelimit"] == f'"identifier";r={remaining};t=20'
        assert headers["x-ratelimit-remaining"] == str(remaining)
        assert "retry-after" not in headers
    status, headers, body = await forward(rest, CLIENT)
    assert status == 429
    assert headers["retry-after"] == "20"
    assert headers["ratelimit-policy"] == '"identifier";q=3;w=60'
    assert isinstance(body, dict) and body["allowed"] is False


async def test_the_first_forwarded_address_is_the_identifier(rest: Rest) -> None:
    for _ in range(3):
        await forward(rest, CLIENT)
    # Same client behind another proxy: still refused; another client: allowed.
    same = {**CLIENT, "X-Forwarded-For": "203.0.113.7"}
    other = {**CLIENT, "X-Forwarded-For": "198.51.100.1, 10.0.0.1"}
    assert (await forward(rest, same))[0] == 429
    assert (await forward(rest, other))[0] == 200


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_any_method_and_an_appended_path(rest: Rest, method: str) -> None:
    status, headers, _ = await forward(rest, CLIENT, method, "/v1/forward-auth/orders/42?x=1")
    assert (status, headers["x-ratelimit-remaining"]) == (200, "2")


async def test_head_has_the_headers_and_no_body(rest: Rest) -> None:
    status, headers, body = await forward(rest, CLIENT, "HEAD")
    assert (status, headers["x-ratelimit-remaining"], body) == (200, "2", "")


async def test_deny_status_403_for_nginx(rest: Rest) -> None:
    for _ in range(3):
        await forward(rest, CLIENT, path="/v1/forward-auth?deny_status=403")
    status, headers, _ = await forward(rest, CLIENT, path="/v1/forward-auth?deny_status=403")
    assert (status, headers["retry-after"]) == (403, "20")


async def test_unknown_namespace_is_allowed_without_headers(rest: Rest) -> None:
    status, headers, body = await forward(rest, {**CLIENT, "X-RateLimit-Namespace": "nope"})
    assert status == 200
    assert "ratelimit" not in headers
    assert isinstance(body, dict) and body["limit"] is None


@pytest.mark.parametrize(("headers", "path", "field"), [
    ({"X-RateLimit-Namespace": "api_requests"}, "", "X-Forwarded-For"),
    ({**CLIENT, "X-Forwarded-For": " , 10.0.0.1"}, "", "X-Forwarded-For"),
    ({"X-Forwarded-For": "203.0.113.7"}, "", "X-RateLimit-Namespace"),
    ({**CLIENT, "X-RateLimit-Namespace": "  "}, "", "X-RateLimit-Namespace"),
    (CLIENT, "?deny_status=500", "deny_status"),
    (CLIENT, "?deny_status=abc", "deny_status"),
])
async def test_bad_requests_name_the_header(rest: Rest, headers: dict[str, str], path: str,
                                            field: str) -> None:
    status, _, body = await forward(rest, headers, path="/v1/forward-auth" + path)
    assert status == 400
    assert isinstance(body, dict) and body["field"] == field
    assert field in body["error"]


async def test_non_ascii_identifier_is_text_like_any_other(rest: Rest) -> None:
    status, _, _ = await forward(rest, {**CLIENT, "X-Forwarded-For": "\u00e9t\u00e9"})
    assert status == 200


async def test_undecodable_header_bytes_are_refused(rest: Rest) -> None:
    host, port = rest.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /v1/forward-auth HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                 b"X-RateLimit-Namespace: api_requests\r\nX-Forwarded-For: caf\xe9\r\n\r\n")
    await writer.drain()
    head = await reader.read()
    writer.close()
    await writer.wait_closed()
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b'"field": "X-Forwarded-For"' in head


async def test_default_namespace_and_custom_identifier_header(tmp_path: Path) -> None:
    options = RestOptions(identifier_header="X-Api-Key", namespace_header="",
                          default_namespace="api_requests")
    async with serve_rest(write_rules(tmp_path / "r"), MemoryStore(), options) as api:
        key = {"X-Api-Key": "k1", "X-RateLimit-Namespace": "no_rules_here"}
        # The namespace header is off: a client cannot pick a namespace without rules.
        statuses = [(await forward(api, key))[0] for _ in range(4)]
        missing = await forward(api, {"X-Forwarded-For": "203.0.113.7"})
    assert statuses == [200, 200, 200, 429]
    assert (missing[0], missing[2]["field"]) == (400, "X-Api-Key")  # type: ignore[index]


async def test_hashed_identifiers_keep_secrets_out_of_the_store(tmp_path: Path) -> None:
    options = RestOptions(identifier_header="Authorization", hash_identifier=True)
    store = MemoryStore()
    async with serve_rest(write_rules(tmp_path / "r"), store, options) as api:
        alice = {"Authorization": "Bearer s3cret-alice", "X-RateLimit-Namespace": "api_requests"}
        bob = {**alice, "Authorization": "Bearer s3cret-bob"}
        assert [(await forward(api, alice))[0] for _ in range(4)] == [200, 200, 200, 429]
        assert (await forward(api, bob))[0] == 200
        keys = list(store._counters)
    assert len(keys) == 2
    assert not any("s3cret" in k for k in keys)
    assert all("identifier_sha256:" in k for k in keys)


@pytest.mark.parametrize(("index", "header", "identifier"), [
    (1, "203.0.113.7", "203.0.113.7"),
    (1, "203.0.113.7, 10.0.0.1, 10.0.0.2", "203.0.113.7"),
    (-1, "6.6.6.6, 203.0.113.7", "203.0.113.7"),
    (-1, "203.0.113.7", "203.0.113.7"),
    (2, "6.6.6.6, 203.0.113.7, 10.0.0.1", "203.0.113.7"),
    (-2, "6.6.6.6, 203.0.113.7, 10.0.0.1", "203.0.113.7"),
    (3, "203.0.113.7, 10.0.0.1", "10.0.0.1"),  # past the end: the last one there is
    (-3, "203.0.113.7, 10.0.0.1", "203.0.113.7"),
])
async def test_which_forwarded_address(tmp_path: Path, clock: FakeClock, index: int,
                                       header: str, identifier: str) -> None:
    store = MemoryStore()
    options = RestOptions(xff_index=index, default_namespace="api_requests")
    async with serve_rest(write_rules(tmp_path / "r"), store, options, clock) as api:
        status, _, _ = await forward(api, {"X-Forwarded-For": header})
        keys = list(store._counters)
    assert status == 200
    assert keys == [f"api_requests_identifier_{identifier}_999960"]
