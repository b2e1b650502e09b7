"""Lease ids: ``<token>.<request>``.

The token is 144 random bits from ``secrets``: the only part that proves a caller holds the
lease (the store keeps it as the lease's member), so nobody can renew or release another
holder's lease by guessing. The request part is the namespace, the descriptors and the ttl the
lease was taken for, as base64url JSON, so that any sidecar sharing the store finds the lease's
keys again from the id alone, with no table of ids to keep. It is encoded, not encrypted: an id
shows what its caller sent (use a hashed identifier where the identifier itself is a secret).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sidecar.errors import LeaseNotFound, RequestError
from sidecar.model import Entries

TOKEN_BYTES = 18  # 144 bits; 24 base64url characters
# An id travels in a URL path: HTTP servers (aiohttp's included) refuse request lines of 8 KiB.
MAX_ID_LENGTH = 7000
_TOKEN = re.compile(r"[A-Za-z0-9_-]{24}")
_NOT_AN_ID = ("is not a lease id; expected the lease_id an acquire answered "
              "(<token>.<request>)")


@dataclass(frozen=True, slots=True)
class LeaseRef:
    """What a lease id names."""

    token: str
    domain: str
    descriptors: list[Entries]
    ttl_ms: int | None  # the ttl asked at acquire; None: the rules' lease_ttl


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def encode_id(token: str, domain: str, descriptors: list[Entries], ttl_ms: int | None) -> str:
    """The id of a lease; RequestError when the request is too long to make one."""
    request = [domain, [[list(entry) for entry in entries] for entries in descriptors], ttl_ms]
    text = json.dumps(request, separators=(",", ":"), ensure_ascii=False).encode()
    lease_id = f"{token}.{base64.urlsafe_b64encode(text).rstrip(b'=').decode()}"
    if len(lease_id) > MAX_ID_LENGTH:
        raise RequestError(f"descriptors: {len(text)} bytes of namespace and descriptors are "
                           f"too many for a lease id; expected about {MAX_ID_LENGTH * 3 // 4} "
                           "at most (send a hash of a long value)", "descriptors")
    return lease_id


def decode_id(lease_id: str) -> LeaseRef:
    """The lease an id names; LeaseNotFound when it is not an id this service issues."""
    token, _, encoded = lease_id.partition(".")
    if len(lease_id) > MAX_ID_LENGTH or not _TOKEN.fullmatch(token):
        raise LeaseNotFound(f"lease_id {_NOT_AN_ID}")
    try:
        data = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        request = json.loads(data)
    except (binascii.Error, ValueError, RecursionError):
        raise LeaseNotFound(f"lease_id {_NOT_AN_ID}") from None
    ref = _ref(token, request)
    if ref is None:
        raise LeaseNotFound(f"lease_id {_NOT_AN_ID}")
    return ref


def _ref(token: str, request: Any) -> LeaseRef | None:
    if not isinstance(request, list) or len(request) != 3:
        return None
    domain, descriptors, ttl_ms = request
    if not isinstance(domain, str) or not domain or not isinstance(descriptors, list) \
            or not descriptors:
        return None
    if ttl_ms is not None and (type(ttl_ms) is not int or ttl_ms < 1):
        return None
    out: list[Entries] = []
    for entries in descriptors:
        if not isinstance(entries, list) or not entries or not all(
                isinstance(e, list) and len(e) == 2 and all(isinstance(x, str) for x in e)
                for e in entries):
            return None
        out.append(tuple((k, v) for k, v in entries))
    return LeaseRef(token, domain, out, ttl_ms)
