"""Client.verify_key beyond the contract (tests/sdk/test_contract.py runs verify.json against
real full-mode sidecars): the answers of something that is not the sidecar, the "raise" verify
failure mode, and what the client refuses before sending."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from viva_ratelimit_client import (
    AsyncClient,
    Client,
    InvalidRequest,
    KeyVerification,
    RetryPolicy,
    SidecarUnavailable,
    Unauthorized,
    VerifyCode,
)

from tests.support.ports import free_port

KEY = "viva_AcXgQx9sbHq9c2jnvM1WkN78NHQ6"
ROOT = "vroot_test_0123456789abcdef0123456789abcdef"
FAST = RetryPolicy(attempts=2, backoff=0.01, max_backoff=0.02)


def answering(status: int, body: bytes, seen: list[httpx2.Request] | None = None,
              **options: Any) -> Client:
    """A client whose every call gets this answer (from something on the sidecar's port)."""
    def answer(request: httpx2.Request) -> httpx2.Response:
        if seen is not None:
            seen.append(request)
        return httpx2.Response(status, content=body,
                               headers={"Content-Type": "application/json"})

    http = httpx2.Client(base_url="http://sidecar", transport=httpx2.MockTransport(answer))
    return Client("http://sidecar", http=http, retry=FAST, root_key=ROOT, **options)


def test_the_verdict_is_typed_and_the_root_key_goes_with_verifications_only() -> None:
    seen: list[httpx2.Request] = []
    body = (b'{"valid": false, "code": "REVOKED", "key_id": "key_1", "customer_id": "c",'
            b' "plan": "pro", "features": [], "remaining": null, "reset_at": null,'
            b' "limits": []}')
    verdict = answering(200, body, seen).verify_key(KEY, features=["exports"])
    assert verdict.code is VerifyCode.REVOKED and not verdict
    assert (verdict.key_id, verdict.customer_id, verdict.error) == ("key_1", "c", None)
    assert seen[0].headers["Authorization"] == f"Bearer {ROOT}"
    assert seen[0].url.path == "/v1/keys/verify"
    assert httpx2.Request("POST", "/", json={"key": KEY, "cost": 1, "features": ["exports"]}
                          ).content == seen[0].content
    answering(200, b'{"allowed": true}', seen).check("u", "api")
    assert "Authorization" not in seen[1].headers


# Every printable ASCII character but the space, padded to the longest address accepted.
PRINTABLE = "".join(map(chr, range(0x21, 0x7F)))
LONGEST = (PRINTABLE + "z" * 128)[:128]


@pytest.mark.parametrize("address", ["203.0.113.9", "[2001:db8::1]:443", LONGEST])
def test_the_client_address_is_sent_as_given(address: str) -> None:
    seen: list[httpx2.Request] = []
    answering(200, b'{"valid": false, "code": "NOT_FOUND"}', seen).verify_key(
        KEY, client_address=address)
    assert httpx2.Request("POST", "/", json={"key": KEY, "cost": 1, "client_address": address}
                          ).content == seen[0].content


def test_an_answer_that_is_not_a_verdict_fails_closed() -> None:
    verdict = answering(200, b'{"valid": true, "code": "MAYBE"}').verify_key(KEY)
    assert (verdict.valid, verdict.code, verdict.attempts) == (False, None, 1)
    assert verdict.error is not None and "not a verification" in verdict.error


def test_a_503_fails_closed_and_a_foreign_body_is_not_quoted() -> None:
    """Only the sidecar's own error text is quoted: an echo of the request would hold the key."""
    store_down = answering(503, b'{"error": "cannot decide now", "field": null}')
    assert store_down.verify_key(KEY).error == "HTTP 503 from the sidecar: cannot decide now"
    echo = answering(502, f"upstream said: {KEY}".encode()).verify_key(KEY)
    assert (echo.valid, echo.error) == (False, "HTTP 502 from the sidecar")
    opened = answering(503, b"{}", verify_failure_mode="open").verify_key(KEY)
    assert (opened.valid, opened.code) == (True, None)


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_root_key_raises_even_failing_open(status: int) -> None:
    client = answering(status, b'{"error": "the root key is not valid", "field": null}',
                       verify_failure_mode="open")
    with pytest.raises(Unauthorized, match="root key is not valid") as caught:
        client.verify_key(KEY)
    assert caught.value.status == status
    assert ROOT not in str(caught.value) and KEY not in str(caught.value)


def test_raise_mode_raises_when_the_sidecar_is_unreachable() -> None:
    with Client(f"http://127.0.0.1:{free_port()}", retry=FAST, root_key=ROOT,
                verify_failure_mode="raise") as client, \
            pytest.raises(SidecarUnavailable) as caught:
        client.verify_key(KEY)
    assert caught.value.attempts == 2


@pytest.mark.parametrize(("call", "field"), [
    ({"key": None}, "key"), ({"cost": True}, "cost"), ({"cost": 1.5}, "cost"),
    ({"limits": "per_hour"}, "limits"), ({"features": ["exports", 1]}, "features"),
    ({"client_address": ""}, "client_address"), ({"client_address": "a b"}, "client_address"),
    ({"client_address": LONGEST + "z"}, "client_address"),
    ({"client_address": "caf\u00e9"}, "client_address"),
    ({"client_address": "tab\t"}, "client_address"),
    ({"client_address": "del\x7f"}, "client_address"),
    ({"client_address": 42}, "client_address"),
])
def test_mistakes_name_the_field_before_sending(call: dict[str, Any], field: str) -> None:
    seen: list[httpx2.Request] = []
    client = answering(200, b"{}", seen)
    with pytest.raises(InvalidRequest) as caught:
        client.verify_key(**{"key": KEY, **call})
    assert (caught.value.field, seen) == (field, [])


def test_settings_are_checked_and_the_root_key_never_shown() -> None:
    with pytest.raises(ValueError, match="verify_failure_mode"):
        Client(verify_failure_mode="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="root_key"):
        Client(root_key=" ")
    client = Client("localhost:8080", root_key=ROOT)
    assert ROOT not in repr(client) and "root_key=<set>" in repr(client)
    assert "root_key" not in repr(Client("localhost:8080"))
    assert client.verify_failure_mode == "closed"  # authentication fails closed by default
    client.close()


async def test_async_without_a_root_key_sends_nothing() -> None:
    async with AsyncClient(f"http://127.0.0.1:{free_port()}") as client:
        with pytest.raises(Unauthorized, match="root_key") as caught:
            await client.verify_key(KEY)
    assert caught.value.status is None


def test_a_verification_is_truthy_when_valid() -> None:
    assert KeyVerification(True, VerifyCode.VALID) and not KeyVerification(False, None)
