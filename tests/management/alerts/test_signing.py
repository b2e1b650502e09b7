"""Standard Webhooks signatures: the specification's example, and the sidecar's headers
checked by the receiver's independent verification."""

from __future__ import annotations

import base64

import pytest

from sidecar.management.alerts.signing import (
    SECRET_BYTES,
    new_secret,
    signature,
    signed_headers,
    signing_key,
)
from tests.management.alerts.receiver import InvalidSignature, verify


def test_the_reference_example() -> None:
    # The example of the Standard Webhooks reference libraries' tests.
    key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    assert signature(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                     b'{"test": 2432232314}') == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_new_secrets_are_whsec_and_32_random_bytes() -> None:
    made = {new_secret() for _ in range(50)}
    assert len(made) == 50
    for secret in made:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret[6:], validate=True)) == SECRET_BYTES


def test_a_receiver_verifies_what_the_sidecar_signs() -> None:
    secret, body = new_secret(), b'{"type": "key.created", "data": {}}'
    headers = signed_headers(signing_key(secret), "msg_1", 1_700_000_000, body)
    assert headers["webhook-id"] == "msg_1" and headers["webhook-timestamp"] == "1700000000"
    assert verify(secret, headers, body, now=1_700_000_100)["type"] == "key.created"
    with pytest.raises(InvalidSignature):
        verify(new_secret(), headers, body, now=1_700_000_100)  # another secret
    with pytest.raises(InvalidSignature):
        verify(secret, headers, body + b" ", now=1_700_000_100)  # the body changed
    with pytest.raises(InvalidSignature):
        verify(secret, {**headers, "webhook-id": "msg_2"}, body, now=1_700_000_100)
    with pytest.raises(InvalidSignature):
        verify(secret, headers, body, now=1_700_001_000)  # replayed too late


@pytest.mark.parametrize("bad", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not*base64"])
def test_a_malformed_secret_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="whsec_"):
        signing_key(bad)
