"""What a key verification answers: ``KeyVerification``, from the JSON of full mode's
``POST /v1/keys/verify`` or, when the sidecar could not answer, from the verify failure mode.

The answer never holds the key itself, so a verification can be logged or shown as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from viva_ratelimit_client.result import FailureMode, parse_time


class VerifyCode(StrEnum):
    """The sidecar's verdict on a key: a closed list."""

    VALID = "VALID"
    NOT_FOUND = "NOT_FOUND"  # malformed (bad checksum), or no such key
    EXPIRED = "EXPIRED"  # past its expires_at (a rotated key after its grace period)
    REVOKED = "REVOKED"  # revoked, or its customer deleted
    DISABLED = "DISABLED"  # disabled, or its plan is gone
    FORBIDDEN = "FORBIDDEN"  # a required feature is not in the plan; nothing was charged
    RATE_LIMITED = "RATE_LIMITED"  # a rate limit of the key is used up
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"  # a calendar quota of the key is used up


@dataclass(frozen=True, slots=True)
class VerifiedLimit:
    """One limit of the key, as this verification left it."""

    name: str
    limit: int
    remaining: int
    reset_at: datetime
    exceeded: bool

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> VerifiedLimit:
        return cls(name=str(doc["name"]), limit=int(doc["limit"]),
                   remaining=int(doc["remaining"]), reset_at=parse_time(str(doc["reset_at"])),
                   exceeded=bool(doc["exceeded"]))


@dataclass(frozen=True, slots=True)
class KeyVerification:
    """The verdict on a key; truthy when ``valid``.

    ``code`` is None only when the sidecar could not answer: then ``error`` says why, after
    ``attempts`` tries, and ``valid`` is the verify failure mode's answer (False unless the
    client was built with ``verify_failure_mode="open"``). ``key_id``, ``customer_id`` and
    ``plan`` are None for NOT_FOUND; ``remaining`` and ``reset_at`` (the tightest limit's) are
    None when no limit was checked (the key was refused before, or FORBIDDEN).
    """

    valid: bool
    code: VerifyCode | None
    key_id: str | None = None
    customer_id: str | None = None
    plan: str | None = None
    features: tuple[str, ...] = ()
    remaining: int | None = None
    reset_at: datetime | None = None
    limits: tuple[VerifiedLimit, ...] = ()
    error: str | None = None
    attempts: int | None = None

    def __bool__(self) -> bool:
        return self.valid

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> KeyVerification:
        """The verdict from the sidecar's JSON answer; KeyError, ValueError or TypeError when
        it is not one."""
        reset_at = doc.get("reset_at")
        return cls(
            valid=_boolean(doc["valid"]), code=VerifyCode(doc["code"]),
            key_id=doc.get("key_id"), customer_id=doc.get("customer_id"), plan=doc.get("plan"),
            features=tuple(str(f) for f in doc.get("features") or ()),
            remaining=doc.get("remaining"),
            reset_at=parse_time(reset_at) if isinstance(reset_at, str) else None,
            limits=tuple(VerifiedLimit.from_json(x) for x in doc.get("limits") or ()))

    @classmethod
    def failure(cls, mode: FailureMode, error: str, attempts: int) -> KeyVerification:
        """The verify failure mode's answer ("open" or "closed") when the sidecar is out of
        reach."""
        return cls(valid=mode == "open", code=None, error=error, attempts=attempts)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"'valid' is not a boolean: {value!r}")
    return value
