"""Signing secrets at rest: sealed under VIVA_SECRET_KEY, bound to their endpoint, opened by a
previous key during a rotation, refused by any other."""

from __future__ import annotations

import pytest

from sidecar.management.alerts.sealing import Sealer, SealError

KEY = "k" * 32
OLD = "o" * 40


def test_sealed_secrets_open_only_for_their_endpoint() -> None:
    sealer = Sealer(KEY)
    sealed = sealer.seal("whsec_abc", "wh_1")
    assert "whsec_abc" not in sealed and sealed.startswith("v1.")
    assert sealer.seal("whsec_abc", "wh_1") != sealed  # a fresh nonce every time
    assert sealer.open(sealed, "wh_1") == "whsec_abc"
    with pytest.raises(SealError, match="not this endpoint's"):
        sealer.open(sealed, "wh_2")
    damaged = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(SealError):
        sealer.open(damaged, "wh_1")
    with pytest.raises(SealError, match="not a sealed secret"):
        sealer.open("whsec_abc", "wh_1")


def test_another_secret_key_cannot_open_them() -> None:
    sealed = Sealer(OLD).seal("whsec_abc", "wh_1")
    with pytest.raises(SealError, match="VIVA_SECRET_KEY_PREVIOUS"):
        Sealer(KEY).open(sealed, "wh_1")


def test_rotation_opens_with_the_previous_key_and_seals_with_the_new() -> None:
    sealed = Sealer(OLD).seal("whsec_abc", "wh_1")
    rotated = Sealer(KEY, [OLD])
    assert not rotated.is_current(sealed)
    assert rotated.open(sealed, "wh_1") == "whsec_abc"
    again = rotated.seal(rotated.open(sealed, "wh_1"), "wh_1")
    assert rotated.is_current(again) and Sealer(KEY).open(again, "wh_1") == "whsec_abc"
