"""What a REST caller gets back: the engine's Decision as a JSON answer and rate-limit headers.

The answer of each descriptor (Result) and of the request as a whole: ``limit`` null when no
limit applies; ``reset_after_seconds`` whole seconds until the window resets; a refused request
carries ``retry_after_seconds``. Headers: the IETF draft fields ``RateLimit-Policy`` and
``RateLimit`` (draft-ietf-httpapi-ratelimit-headers-09/-10: a List of policy-name Strings with
parameters q/w and r/t), ``X-RateLimit-Limit/Remaining/Reset`` (reset in seconds from now, as
Envoy's ``x-ratelimit-reset``) and ``Retry-After``; each family is switched by
``RestOptions.headers``.

A lease's answer (LeaseBody, and LeaseResultBody per descriptor sent as such; ReleaseBody for
a release) says whether it holds its slots, the lease id to renew and release it with, the
leases held and the rule's max, when the lease expires unless renewed (the store's clock, to
the millisecond) and the time to live it was given (to schedule renewals on the caller's own
clock); a refused acquire carries ``retry_after_seconds``: the longest it may have to wait for
a holder's lease to expire (a release frees a slot sooner).

The JSON bodies are declared here with msgspec (ResultBody, DecisionBody, ErrorBody, LeaseBody,
LeaseResultBody, ReleaseBody: named Result, Decision, Error, Lease, LeaseResult and Release in
/openapi.json), so what is sent is what is documented.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType

from sidecar import model

_SF_UNSAFE = re.compile(r"[^\x20-\x7e]")  # outside what a Structured Field String may hold

_Count = Annotated[int, Meta(ge=0)]
_Seconds = Annotated[int, Meta(ge=1)]
_RESULT_FIELDS: list[tuple[str, Any]] = [
    ("allowed", bool),
    ("limit", Annotated[int, Meta(ge=0, description="null: no limit applies")] | None),
    ("remaining", _Count | None),
    ("reset_at", Annotated[str, Meta(extra_json_schema={"format": "date-time"})] | None),
    ("reset_after_seconds", _Count | None),
    ("retry_after_seconds", _Seconds | None),
    ("window_seconds", _Seconds | None),
    ("policy", str | None),
]
ResultBody = msgspec.defstruct("Result", _RESULT_FIELDS, forbid_unknown_fields=True,
                               module=__name__)
_RESULTS: Any = list[ResultBody]  # type: ignore[valid-type]  # a type made at run time
DecisionBody = msgspec.defstruct("Decision", [("results", _RESULTS | UnsetType, UNSET)],
                                 bases=(ResultBody,), forbid_unknown_fields=True,
                                 module=__name__)
ErrorBody = msgspec.defstruct("Error", [("error", str), ("field", str | None)],
                              module=__name__)

_Max = Annotated[int, Meta(ge=1, description="the rule's max; null: no concurrency limit "
                                             "applies")]
_Active = Annotated[int, Meta(ge=0, description="leases held after this call; null: no "
                                                "concurrency limit applies, or the store "
                                                "could not say")]
_Time = Annotated[str, Meta(extra_json_schema={"format": "date-time"})]
_LEASE_FIELDS: list[tuple[str, Any]] = [
    ("allowed", bool),
    ("active", _Active | None),
    ("limit", _Max | None),
    ("expires_at", _Time | None),
    ("ttl_seconds", Annotated[float, Meta(gt=0)] | None),
    ("retry_after_seconds", _Seconds | None),
    ("policy", str | None),
]
LeaseResultBody = msgspec.defstruct("LeaseResult", _LEASE_FIELDS, forbid_unknown_fields=True,
                                    module=__name__)
_LEASE_RESULTS: Any = list[LeaseResultBody]  # type: ignore[valid-type]  # made at run time
_LEASE_ID = Annotated[str, Meta(description=(
    "renew and release the lease with it; null: nothing is held (refused, no concurrency limit "
    "applies, or the failure policy answered)"))]
LeaseBody = msgspec.defstruct(
    "Lease", [_LEASE_FIELDS[0], ("lease_id", _LEASE_ID | None), *_LEASE_FIELDS[1:],
              ("results", _LEASE_RESULTS | UnsetType, UNSET)],
    forbid_unknown_fields=True, module=__name__)
ReleaseBody = msgspec.defstruct("Release", [("released", bool), ("active", _Active | None),
                                            ("limit", _Max | None)],
                                forbid_unknown_fields=True, module=__name__)


@dataclass(frozen=True, slots=True)
class Result:
    """What one descriptor (or the request as a whole) gets back."""

    allowed: bool
    limit: int | None = None  # None: no limit applies (no rules, no match, unlimited)
    remaining: int | None = None
    reset_after: int | None = None  # whole seconds until the window resets
    reset_at: float | None = None  # epoch seconds
    window: int | None = None  # the limit's window in seconds
    policy: str | None = None  # the rule's name, else the descriptor's keys joined by '.'
    retry_after: int | None = None  # when refused: seconds until a retry can succeed

    def body(self, kind: type[msgspec.Struct] | None = None, **more: Any) -> msgspec.Struct:
        """This result as the JSON declaration ``kind`` (ResultBody by default) holds it."""
        return (kind or ResultBody)(
            allowed=self.allowed, limit=self.limit, remaining=self.remaining,
            reset_at=None if self.reset_at is None else _rfc3339(self.reset_at),
            reset_after_seconds=self.reset_after, retry_after_seconds=self.retry_after,
            window_seconds=self.window, policy=self.policy, **more)


@dataclass(frozen=True, slots=True)
class Answer:
    overall: Result
    results: list[Result]

    def body(self, itemized: bool) -> msgspec.Struct:
        """The JSON answer: the request as a whole, and each descriptor when ``itemized``."""
        if not itemized:
            return self.overall.body(DecisionBody)
        return self.overall.body(DecisionBody, results=[r.body() for r in self.results])


def make_answer(decision: model.Decision, descriptors: Sequence[model.Entries],
                now: float) -> Answer:
    results = _unique_policies([_result(s, e, now) for s, e in
                                zip(decision.statuses, descriptors, strict=True)])
    limited = [r for r in results if r.limit is not None]
    allowed = decision.overall != model.Code.OVER_LIMIT
    refused = [r for r in limited if not r.allowed]
    if not allowed and refused:
        # Allowed again only once every refusing limit has reset: the longest wait.
        overall = replace(refused[-1], retry_after=max(r.retry_after or 1 for r in refused))
    elif limited:
        chosen = min(limited, key=lambda r: r.remaining or 0)
        overall = replace(chosen, allowed=allowed,
                          retry_after=None if allowed else max(1, chosen.reset_after or 1))
    else:
        overall = Result(allowed, retry_after=None if allowed else 1)
    return Answer(overall, results)


def _result(status: model.DescriptorStatus, entries: model.Entries, now: float) -> Result:
    allowed = status.code != model.Code.OVER_LIMIT
    limit = status.limit
    if limit is None:
        return Result(allowed)
    if status.reset_ms is not None:
        reset_at = math.ceil(now + status.reset_ms / 1000)
    else:
        reset_at = math.floor(now) + status.reset_seconds
    window = max(1, math.ceil(limit.window_length_ms / 1000))
    policy = _SF_UNSAFE.sub("_", limit.name or ".".join(k for k, _ in entries))
    return Result(allowed, limit.requests_per_unit, status.remaining, status.reset_seconds,
                  reset_at, window, policy,
                  None if allowed else max(1, status.reset_seconds))


def _unique_policies(results: list[Result]) -> list[Result]:
    """Two descriptors may resolve to one policy name; number the repeats (name.2, …)."""
    seen: dict[str, int] = {}
    out = []
    for r in results:
        if r.policy is not None:
            n = seen[r.policy] = seen.get(r.policy, 0) + 1
            if n > 1:
                r = replace(r, policy=f"{r.policy}.{n}")
        out.append(r)
    return out


def rate_limit_headers(answer: Answer, families: frozenset[str]) -> list[tuple[str, str]]:
    """The response headers of ``answer``: one IETF policy per limited descriptor, the X-
    family and Retry-After for the request as a whole."""
    out: list[tuple[str, str]] = []
    limited = [r for r in answer.results if r.limit is not None]
    overall = answer.overall
    if "ietf" in families and limited:
        out.append(("RateLimit-Policy", ", ".join(
            f"{_sf_string(r.policy or '')};q={r.limit};w={r.window}" for r in limited)))
        out.append(("RateLimit", ", ".join(
            f"{_sf_string(r.policy or '')};r={r.remaining};t={r.reset_after}" for r in limited)))
    if "x" in families and overall.limit is not None:
        out.append(("X-RateLimit-Limit", str(overall.limit)))
        out.append(("X-RateLimit-Remaining", str(overall.remaining)))
        out.append(("X-RateLimit-Reset", str(overall.reset_after)))
    if "retry-after" in families and overall.retry_after is not None:
        out.append(("Retry-After", str(overall.retry_after)))
    return out


def _sf_string(text: str) -> str:
    """An RFC 8941 String: printable ASCII, with backslash and double quote escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rfc3339(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


# -- leases ------------------------------------------------------------------------------------


def lease_body(decision: model.LeaseDecision, itemized: bool) -> msgspec.Struct:
    """A lease's answer: the lease as a whole, and each descriptor when ``itemized``."""
    results = [_lease_result(s, e) for s, e in zip(decision.statuses, decision.descriptors,
                                                    strict=True)]
    overall = _lease_overall(decision.allowed, decision.statuses, results)
    more: dict[str, Any] = {"results": [LeaseResultBody(**r) for r in results]} \
        if itemized else {}
    return LeaseBody(lease_id=decision.lease_id, **overall, **more)


def release_body(decision: model.LeaseDecision) -> msgspec.Struct:
    """A release's answer: the leases held after it where the fewest slots are free."""
    limited = [s for s in decision.statuses if s.limit is not None]
    chosen = min(limited, key=_free, default=None)
    if chosen is None or chosen.limit is None:
        return ReleaseBody(released=True, active=None, limit=None)
    return ReleaseBody(released=True, active=chosen.active,
                       limit=chosen.limit.requests_per_unit)


def _lease_result(status: model.LeaseStatus, entries: model.Entries) -> dict[str, Any]:
    limit = status.limit
    if limit is None:
        return {"allowed": status.allowed, "active": None, "limit": None, "expires_at": None,
                "ttl_seconds": None, "retry_after_seconds": None, "policy": None}
    retry = status.retry_after_ms
    return {"allowed": status.allowed, "active": status.active,
            "limit": limit.requests_per_unit,
            "expires_at": None if status.expires_at_ms is None else
            _rfc3339_ms(status.expires_at_ms),
            "ttl_seconds": None if status.expires_at_ms is None or not status.ttl_ms else
            status.ttl_ms / 1000,
            "retry_after_seconds": None if retry is None else max(1, math.ceil(retry / 1000)),
            "policy": limit.name or ".".join(k for k, _ in entries)}


def _lease_overall(allowed: bool, statuses: list[model.LeaseStatus],
                   results: list[dict[str, Any]]) -> dict[str, Any]:
    """As for a check: when refused, the refusing descriptor with the longest wait; else the
    one with the fewest free slots (the lease expires with its earliest slot)."""
    limited = [(s, r) for s, r in zip(statuses, results, strict=True) if s.limit is not None]
    if not limited:
        return {**results[0], "allowed": allowed}
    refused = [(s, r) for s, r in limited if not s.allowed]
    if refused:
        chosen = max(refused, key=lambda p: p[1]["retry_after_seconds"] or 0)[1]
        return {**chosen, "allowed": allowed}
    chosen = min(limited, key=lambda p: _free(p[0]))[1]
    expiries = [r for _, r in limited if r["expires_at"] is not None]
    first = min(expiries, key=lambda r: r["expires_at"], default=chosen)
    return {**chosen, "allowed": allowed, "expires_at": first["expires_at"],
            "ttl_seconds": first["ttl_seconds"]}


def _free(status: model.LeaseStatus) -> int:
    limit = status.limit.requests_per_unit if status.limit is not None else 0
    return limit - (status.active or 0)


def _rfc3339_ms(epoch_ms: int) -> str:
    seconds, ms = divmod(epoch_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"
