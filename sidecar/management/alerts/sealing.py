"""Webhook signing secrets at rest, sealed with a key from VIVA_SECRET_KEY.

A signing secret must be recovered to sign each delivery, so it cannot be stored as a hash
the way API keys are. It is sealed instead: AES-256-GCM under a key derived with HKDF-SHA256
from VIVA_SECRET_KEY, with the endpoint's id as associated data (a sealed secret copied onto
another endpoint's row does not open). Stored as ``v1.<key id>.<base64(nonce ‖ ciphertext)>``;
the key id (a digest of the derived key, not the key) says which VIVA_SECRET_KEY sealed it.

Rotation: put the old value in VIVA_SECRET_KEY_PREVIOUS (comma-separated) and a new one in
VIVA_SECRET_KEY; secrets sealed under an old key still open, and ``reseal`` (run at start-up)
seals them again under the new one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = "v1"
_INFO = b"viva-ratelimit webhook signing secrets v1"
_NONCE_BYTES = 12


class SealError(Exception):
    """A sealed secret cannot be opened (another VIVA_SECRET_KEY, or damaged)."""


def _derive(secret: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=_INFO).derive(secret.encode())


def _key_id(key: bytes) -> str:
    return hmac.new(key, b"key id", hashlib.sha256).hexdigest()[:12]


class Sealer:
    def __init__(self, secret: str, previous: Sequence[str] = ()) -> None:
        keys = [_derive(s) for s in (secret, *previous)]
        self._current = _key_id(keys[0])
        self._keys = {_key_id(k): AESGCM(k) for k in keys}

    def seal(self, plaintext: str, bound_to: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[self._current].encrypt(nonce, plaintext.encode(), bound_to.encode())
        return f"{VERSION}.{self._current}.{base64.b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str, bound_to: str) -> str:
        version, _, rest = sealed.partition(".")
        key_id, _, data = rest.partition(".")
        if version != VERSION or not data:
            raise SealError("not a sealed secret")
        aead = self._keys.get(key_id)
        if aead is None:
            raise SealError(f"sealed under key id {key_id}, which neither VIVA_SECRET_KEY nor "
                            "VIVA_SECRET_KEY_PREVIOUS derives")
        raw = base64.b64decode(data)
        try:
            return aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:],
                                bound_to.encode()).decode()
        except InvalidTag:
            raise SealError("the sealed secret does not open (damaged, or not this "
                            "endpoint's)") from None

    def is_current(self, sealed: str) -> bool:
        return sealed.split(".")[1:2] == [self._current]
