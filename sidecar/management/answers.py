"""A verification's outcome as the admin API's JSON and as rate-limit headers (the same IETF
``RateLimit``/``RateLimit-Policy`` fields, X- family and Retry-After /v1/check sends)."""

from __future__ import annotations

from datetime import UTC, datetime

from sidecar.limiter.engine import Code
from sidecar.management import schemas as s
from sidecar.management.verify import Outcome
from sidecar.server.rest import Answer, make_answer, rate_limit_headers


def rate_answer(outcome: Outcome, now: float) -> Answer | None:
    decision = outcome.decision or outcome.throttled
    if decision is None:
        return None
    entries = outcome.entries or [(("remote_address", ""),)]
    return make_answer(decision, entries, now)


def verification(outcome: Outcome, answer: Answer | None) -> s.Verification:
    """The JSON answer; ``answer`` is ``rate_answer(outcome, now)`` (computed once per call,
    for the body and the headers)."""
    key, plan = outcome.key, outcome.plan
    if outcome.decision is None:
        answer = None
    limits: list[s.VerifiedLimit] = []
    if answer is not None and outcome.decision is not None:
        for result, status in zip(answer.results, outcome.decision.statuses, strict=True):
            if result.limit is None or result.reset_at is None:
                continue
            limits.append(s.VerifiedLimit(
                result.policy or "", result.limit, result.remaining or 0,
                _time(result.reset_at), status.code == Code.OVER_LIMIT))
    overall = answer.overall if answer is not None else None
    return s.Verification(
        valid=outcome.valid, code=outcome.code,  # type: ignore[arg-type]
        key_id=key.key_id if key else None, customer_id=key.customer_id if key else None,
        plan=key.plan if key else None,
        features=sorted(plan.features) if plan is not None else [],
        remaining=overall.remaining if overall is not None else None,
        reset_at=_time(overall.reset_at) if overall and overall.reset_at else None,
        limits=limits)


def headers(answer: Answer | None, families: frozenset[str]) -> list[tuple[str, str]]:
    return [] if answer is None else rate_limit_headers(answer, families)


def retry_after(answer: Answer | None) -> int:
    return max(1, answer.overall.retry_after or 1) if answer is not None else 1


def _time(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
