"""API keys and root keys: ``<prefix>_<random><checksum>``, stored only as SHA-256.

    viva_6aXr2mJtq9KX3hCVgRq4dWNe7nsxMo      an API key
    vroot_Bq8mYJ2vW4tu6eDkkcHxQ1pXZ3Ld9fLg  a root key (admin credentials)

The random part is 16 bytes from ``secrets`` (128 bits) in base58, always 22 characters; the
last 6 characters are the CRC32 of everything before them, in base58. A mistyped, truncated
or made-up key fails the checksum and is refused without a lookup, and a secret scanner can
recognise a leaked key by its prefix and checksum alone. The database keeps the SHA-256 of the
whole key (a 128-bit random secret needs no slow hash: there is nothing to guess) and a display
``start`` (the prefix and 4 random characters) so people can tell their keys apart.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
import zlib
from typing import NamedTuple

API_KEY_PREFIX = "viva"
ROOT_KEY_PREFIX = "vroot"
ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"  # base58 (Bitcoin's)
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
RANDOM_BYTES = 16
RANDOM_CHARS = 22  # 58**22 > 2**128
CHECK_CHARS = 6  # 58**6 > 2**32
START_CHARS = 4
_SHAPE = re.compile(rf"([a-z]+)_([{ALPHABET}]{{{RANDOM_CHARS + CHECK_CHARS}}})\Z")


class NewKey(NamedTuple):
    """A key just made: the secret (shown once), its hash and its display start."""

    secret: str
    hash: str
    start: str


def b58encode(data: bytes, width: int) -> str:
    """``data`` as a base58 number, left-padded with '1' (zero) to ``width`` characters, so
    equal-width encodings sort as their numbers do."""
    number = int.from_bytes(data, "big")
    out: list[str] = []
    while number:
        number, digit = divmod(number, 58)
        out.append(ALPHABET[digit])
    text = "".join(reversed(out))
    if len(text) > width:
        raise ValueError(f"{len(data)} bytes do not fit in {width} base58 characters")
    return text.rjust(width, ALPHABET[0])


def _checksum(body: str) -> str:
    return b58encode(zlib.crc32(body.encode()).to_bytes(4, "big"), CHECK_CHARS)


def hash_key(secret: str) -> str:
    """The SHA-256 (hex) under which a key is stored and looked up."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def new_key(prefix: str = API_KEY_PREFIX) -> NewKey:
    """A fresh random key with ``prefix``."""
    body = f"{prefix}_{b58encode(secrets.token_bytes(RANDOM_BYTES), RANDOM_CHARS)}"
    secret = body + _checksum(body)
    return NewKey(secret, hash_key(secret), display_start(secret))


def display_start(secret: str) -> str:
    """What may be shown of a key: its prefix and the first random characters."""
    prefix, _, rest = secret.partition("_")
    return f"{prefix}_{rest[:START_CHARS]}"


def well_formed(secret: str, prefix: str = API_KEY_PREFIX) -> bool:
    """Whether ``secret`` has the shape and checksum of a key with ``prefix`` (no lookup)."""
    match = _SHAPE.match(secret)
    if match is None or match.group(1) != prefix:
        return False
    return _checksum(secret[:-CHECK_CHARS]) == secret[-CHECK_CHARS:]


def new_id(kind: str, now: float | None = None) -> str:
    """A public identifier such as ``key_…``: 6 bytes of milliseconds then 10 random bytes,
    so identifiers sort by creation time (cursor pagination walks them in that order)."""
    ms = int((time.time() if now is None else now) * 1000)
    raw = ms.to_bytes(6, "big") + secrets.token_bytes(10)
    return f"{kind}_{b58encode(raw, RANDOM_CHARS)}"
