"""Key format: entropy, checksum, hashing, display start, sortable ids."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from sidecar.management.keys import (
    ALPHABET,
    ROOT_KEY_PREFIX,
    b58encode,
    display_start,
    hash_key,
    new_id,
    new_key,
    well_formed,
)


def test_a_new_key_has_its_prefix_128_random_bits_and_a_checksum() -> None:
    key = new_key()
    assert key.secret.startswith("viva_") and len(key.secret) == 5 + 22 + 6
    assert well_formed(key.secret)
    assert key.hash == hashlib.sha256(key.secret.encode()).hexdigest() == hash_key(key.secret)
    assert key.start == key.secret[:9] and key.start in key.secret
    assert len({new_key().secret for _ in range(1000)}) == 1000


def test_root_keys_have_their_own_prefix_and_are_not_api_keys() -> None:
    root = new_key(ROOT_KEY_PREFIX)
    assert root.secret.startswith("vroot_") and well_formed(root.secret, ROOT_KEY_PREFIX)
    assert not well_formed(root.secret)
    assert not well_formed(new_key().secret, ROOT_KEY_PREFIX)


@given(st.integers(min_value=5, max_value=32), st.sampled_from(ALPHABET))
def test_any_single_typo_or_truncation_fails_the_checksum(position: int, char: str) -> None:
    secret = new_key().secret
    typo = secret[:position] + char + secret[position + 1:]
    assert well_formed(typo) == (typo == secret)
    assert not well_formed(secret[:position])
    assert not well_formed(secret + "x")


def test_garbage_is_refused_without_raising() -> None:
    for text in ("", "viva_", "viva", "VIVA_" + "1" * 28, "viva_" + "0" * 28, "x" * 10_000,
                 "viva_\udcff" + "1" * 27, "viva_" + "1" * 28 + "\n"):
        assert not well_formed(text)


def test_base58_is_fixed_width_and_keeps_order() -> None:
    assert b58encode(b"\0" * 16, 22) == "1" * 22
    numbers = sorted([0, 1, 57, 58, 2**64, 2**127, 2**128 - 1])
    texts = [b58encode(n.to_bytes(16, "big"), 22) for n in numbers]
    assert texts == sorted(texts) and {len(t) for t in texts} == {22}


def test_ids_sort_by_creation_time() -> None:
    ids = [new_id("key", now=1_800_000_000 + i) for i in range(50)]
    assert ids == sorted(ids) and all(i.startswith("key_") for i in ids)
    assert display_start("viva_abcdefgh") == "viva_abcd"
