"""A verification's outcome as the admin API's JSON and as rate-limit headers (the same IETF
``RateLimit``/``RateLimit-Policy`` fields, X- family and Retry-After /v1/check sends)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from sidecar.management import schemas as s
from sidecar.management.verify import Outcome
from sidecar.model import Code, Decision
from sidecar.transports.rest.answers import Answer, make_answer, rate_limit_headers


def rate_answer(outcome: Outcome, now: float) -> Answer | None:
    decision = outcome.decision or outcome.throttled
    if decision is None:
        return None
    entries = outcome.entries or [(("client", ""),)]
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


def key_headers(decision: Decision, families: frozenset[str]) -> list[tuple[str, str]]:
    """``rate_limit_headers(make_answer(decision, …))`` for a key's limits, built directly:
    the gateways' hot path. A key's limits always have a limit, a unique name and a name
    that needs no escaping (plans.NAME), so each status maps to one policy as it is; the
    parity with make_answer is a property test (tests/management/test_answers.py)."""
    out: list[tuple[str, str]] = []
    statuses = decision.statuses
    if "ietf" in families and statuses:
        policies, states = [], []
        for status in statuses:
            limit = status.limit
            assert limit is not None
            window = max(1, math.ceil(limit.window_length_ms / 1000))
            policies.append(f'"{limit.name}";q={limit.requests_per_unit};w={window}')
            states.append(f'"{limit.name}";r={status.remaining};t={status.reset_seconds}')
        out.append(("RateLimit-Policy", ", ".join(policies)))
        out.append(("RateLimit", ", ".join(states)))
    if not statuses:
        return out
    allowed = decision.overall != Code.OVER_LIMIT
    refused = [st for st in statuses if st.code == Code.OVER_LIMIT]
    if not allowed and refused:
        chosen = refused[-1]
        retry: int | None = max(max(1, st.reset_seconds) for st in refused)
    else:
        chosen = min(statuses, key=lambda st: st.remaining)
        retry = None if allowed else max(1, chosen.reset_seconds or 1)
    if "x" in families and chosen.limit is not None:
        out.append(("X-RateLimit-Limit", str(chosen.limit.requests_per_unit)))
        out.append(("X-RateLimit-Remaining", str(chosen.remaining)))
        out.append(("X-RateLimit-Reset", str(chosen.reset_seconds)))
    if "retry-after" in families and retry is not None:
        out.append(("Retry-After", str(retry)))
    return out


def retry_after(answer: Answer | None) -> int:
    return max(1, answer.overall.retry_after or 1) if answer is not None else 1


def _time(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
