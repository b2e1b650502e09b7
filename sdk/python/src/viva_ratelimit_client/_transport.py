"""What the HTTP and gRPC clients share: the request bodies, retries and the failure modes."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from viva_ratelimit_client.errors import InvalidRequest, SidecarUnavailable, Unauthorized
from viva_ratelimit_client.result import CheckResult, Descriptor, FailureMode
from viva_ratelimit_client.verification import KeyVerification

FAILURE_MODES = ("open", "closed", "raise")


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of a call that could not reach the sidecar (REST), or that gRPC says is UNAVAILABLE.

    ``attempts`` counts every try (1: no retry). Delays grow from ``backoff`` seconds, doubling,
    capped at ``max_backoff``, each with full jitter so that many clients do not retry in step.
    Only calls the sidecar cannot have counted are retried (connection refused or timed out):
    a timeout waiting for the answer is not, since the hits may already be charged, and
    neither is any answer (a 400, a 503).
    """

    attempts: int = 3
    backoff: float = 0.05
    max_backoff: float = 1.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts={self.attempts}; expected at least 1")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("RetryPolicy backoff values must not be negative")

    def delays(self) -> Iterator[float]:
        """The pause before each retry (``attempts - 1`` of them)."""
        for n in range(self.attempts - 1):
            yield random.uniform(0, min(self.max_backoff, self.backoff * 2**n))


class Unanswered(Exception):
    """No usable answer after ``attempts`` tries; the failure mode decides."""

    def __init__(self, message: str, attempts: int = 1) -> None:
        self.attempts = attempts
        super().__init__(message)


def check_failure_mode(mode: str, name: str = "failure_mode") -> FailureMode:
    if mode not in FAILURE_MODES:
        raise ValueError(f"{name}={mode!r}; expected one of {', '.join(FAILURE_MODES)}")
    return mode  # type: ignore[return-value]


def check_body(identifier: str | None, namespace: str, hits: int,
               descriptors: Sequence[Descriptor] | None) -> dict[str, Any]:
    """The JSON body of /v1/check and /v1/report; InvalidRequest (a ValueError) naming the
    field for what cannot be right."""
    if not isinstance(namespace, str) or not namespace:
        raise InvalidRequest("namespace: must be a non-empty string", "namespace")
    if isinstance(hits, bool) or not isinstance(hits, int) or hits < 0:
        raise InvalidRequest(f"hits: must be a whole number >= 0, not {hits!r}", "hits")
    body: dict[str, Any] = {"namespace": namespace, "hits": hits}
    if descriptors is not None:
        if identifier is not None:
            raise InvalidRequest("descriptors: pass either an identifier or descriptors, "
                                 "not both", "descriptors")
        body["descriptors"] = [[{"key": k, "value": v} for k, v in d.items()]
                               for d in descriptors]
    elif not isinstance(identifier, str) or not identifier:
        raise InvalidRequest("identifier: must be a non-empty string", "identifier")
    else:
        body["identifier"] = identifier
    return body


def lease_body(identifier: str | None, namespace: str, ttl: float | None,
               descriptors: Sequence[Descriptor] | None) -> dict[str, Any]:
    """The JSON body of POST /v1/leases; InvalidRequest naming the field."""
    body = check_body(identifier, namespace, 1, descriptors)
    del body["hits"]
    if ttl is not None:
        body["ttl"] = check_ttl(ttl)
    return body


def check_ttl(ttl: float) -> float:
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl >= 0.001:
        raise InvalidRequest(f"ttl: must be a number of seconds, at least 0.001, not {ttl!r}",
                             "ttl")
    return ttl


def lease_path(lease_id: str, suffix: str = "") -> str:
    """The path of a lease (``/renew``: of its renewal); InvalidRequest when the id is not
    text."""
    if not isinstance(lease_id, str) or not lease_id:
        raise InvalidRequest("lease_id: must be the non-empty lease_id of an acquire",
                             "lease_id")
    return f"/v1/leases/{quote(lease_id, safe='')}{suffix}"


def verify_body(key: str, cost: int, limits: Sequence[str] | None,
                features: Sequence[str] | None,
                client_address: str | None = None) -> dict[str, Any]:
    """The JSON body of /v1/keys/verify; InvalidRequest naming the field (never its value: the
    key is a secret) for what cannot be right."""
    if not isinstance(key, str) or not key:
        raise InvalidRequest("key: must be a non-empty string", "key")
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 0:
        raise InvalidRequest(f"cost: must be a whole number >= 0, not {cost!r}", "cost")
    body: dict[str, Any] = {"key": key, "cost": cost}
    for field, names in (("limits", limits), ("features", features)):
        if names is None:
            continue
        if isinstance(names, str) or not all(isinstance(n, str) for n in names):
            raise InvalidRequest(f"{field}: must be a list of names", field)
        body[field] = list(names)
    if client_address is not None:
        body["client_address"] = check_client_address(client_address)
    return body


CLIENT_ADDRESS_MAX = 128


def check_client_address(address: str) -> str:
    """``address`` as the sidecar accepts it: 1 to 128 printable ASCII characters, no spaces;
    InvalidRequest naming client_address otherwise."""
    expected = (f"expected 1 to {CLIENT_ADDRESS_MAX} printable ASCII characters without spaces "
                "(the address or a stable id of the client that presented the key)")
    if not isinstance(address, str):
        problem = f"is not a string ({type(address).__name__})"
    elif not address:
        problem = "is empty"
    elif not all("!" <= c <= "~" for c in address):
        problem = "has a space, a control character or a character outside ASCII"
    elif len(address) > CLIENT_ADDRESS_MAX:
        problem = f"has {len(address)} characters"
    else:
        return address
    raise InvalidRequest(f"client_address: {problem}; {expected}", "client_address")


def bearer(root_key: str | None) -> dict[str, str]:
    """The Authorization header of a verification; Unauthorized when there is no root key."""
    if root_key is None:
        raise Unauthorized("verify_key needs a root key with the scope keys:verify: "
                           "Client(..., root_key=...)")
    return {"Authorization": f"Bearer {root_key}"}


def check_root_key(root_key: str | None) -> str | None:
    if root_key is not None and (not isinstance(root_key, str) or not root_key.strip()):
        raise ValueError("root_key must be a non-empty string, or None")
    return root_key


def entries_of(body: dict[str, Any]) -> list[list[tuple[str, str]]]:
    """The descriptors of a check body as (key, value) lists (for the gRPC client)."""
    if "descriptors" in body:
        return [[(e["key"], e["value"]) for e in d] for d in body["descriptors"]]
    return [[("identifier", body["identifier"])]]


def give_up(mode: FailureMode, error: str, attempts: int = 1) -> CheckResult:
    """The answer when the sidecar could not be asked (after ``attempts`` tries): per the
    failure mode."""
    if mode == "raise":
        raise SidecarUnavailable(error, attempts)
    return CheckResult.failure(mode, error, attempts)


def give_up_verify(mode: FailureMode, error: str, attempts: int) -> KeyVerification:
    """The verdict when the sidecar could not be asked, per the verify failure mode."""
    if mode == "raise":
        raise SidecarUnavailable(error, attempts)
    return KeyVerification.failure(mode, error, attempts)


def invalid(doc: Any, status: int) -> InvalidRequest:
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        field = doc.get("field")
        return InvalidRequest(doc["error"], field if isinstance(field, str) else None)
    return InvalidRequest(f"the sidecar refused the request with HTTP {status}")


def unauthorized(doc: Any, status: int) -> Unauthorized:
    error = doc.get("error") if isinstance(doc, dict) else None
    text = error if isinstance(error, str) else "the root key was refused"
    return Unauthorized(f"HTTP {status} from the sidecar: {text[:200]}", status)
