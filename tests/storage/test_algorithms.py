"""The algorithms as pure functions: exact scenarios and properties over random sequences."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.model import RATE_ALGORITHMS, Algorithm
from sidecar.storage.algorithms import (
    Check,
    Rate,
    run_check,
    run_checks,
)

MINUTE = 60_000.0

FIXED_WINDOW, SLIDING_WINDOW, SLIDING_LOG, TOKEN_BUCKET, LEAKY_BUCKET = RATE_ALGORITHMS


def run(algorithm: Algorithm, lim: Rate, calls: list[tuple[float, int]]) -> list[tuple[bool, int]]:
    state = None
    out = []
    for now, hits in calls:
        end = now - now % lim.window_ms + lim.window_ms
        new, verdict = run_check(Check("k", algorithm, lim, hits, 0, end), state, now)
        if new is not None:
            state = new
        out.append((verdict.allowed, verdict.remaining))
    return out


def test_sliding_window_weights_the_previous_window() -> None:
    lim = Rate(10, MINUTE, 10, False)
    # 10 hits at the end of window 0 fill it; halfway through window 1 half of them still count.
    first = run(SLIDING_WINDOW, lim, [(59_000.0, 10)])
    assert first == [(True, 0)]
    state = [0.0, 10.0, 0.0]
    _, v = run_check(Check("k", SLIDING_WINDOW, lim, 5, 0, 0), state, 90_000.0)
    assert (v.allowed, v.remaining) == (True, 0)  # floor(10 * 0.5) + 0 + 5 = 10
    _, v = run_check(Check("k", SLIDING_WINDOW, lim, 6, 0, 0), state, 90_000.0)
    assert not v.allowed
    assert v.reset_ms == 1.0  # floor(10 * 0.4999) + 6 = 10 fits a millisecond later


def test_token_bucket_refills_continuously_up_to_burst() -> None:
    lim = Rate(60, MINUTE, 5, False)  # one token a second, bucket of 5
    calls = [(0.0, 5), (0.0, 1), (1_000.0, 1), (1_000.0, 1), (100_000.0, 5), (100_000.0, 1)]
    assert run(TOKEN_BUCKET, lim, calls) == [(True, 0), (False, 0), (True, 0), (False, 0),
                                             (True, 0), (False, 0)]


def test_token_bucket_tells_the_wait_for_the_missing_tokens() -> None:
    lim = Rate(60, MINUTE, 5, False)
    state, _ = run_check(Check("k", TOKEN_BUCKET, lim, 5, 0, 0), None, 0.0)
    _, v = run_check(Check("k", TOKEN_BUCKET, lim, 3, 0, 0), state, 500.0)
    assert not v.allowed and v.reset_ms == 2_500.0


def test_leaky_bucket_paces_strictly_by_default() -> None:
    lim = Rate(60, MINUTE, 1, False)  # one per second, no burst
    calls = [(0.0, 1), (500.0, 1), (999.0, 1), (1_000.0, 1), (1_500.0, 1), (2_000.0, 1)]
    assert [a for a, _ in run(LEAKY_BUCKET, lim, calls)] == [True, False, False, True, False,
                                                             True]
    state, _ = run_check(Check("k", LEAKY_BUCKET, lim, 1, 0, 0), None, 0.0)
    _, v = run_check(Check("k", LEAKY_BUCKET, lim, 1, 0, 0), state, 250.0)
    assert v.reset_ms == 750.0  # exactly when the next one is allowed


def test_leaky_bucket_burst_is_a_tolerance() -> None:
    lim = Rate(60, MINUTE, 3, False)
    calls = [(0.0, 1)] * 4
    assert run(LEAKY_BUCKET, lim, calls) == [(True, 2), (True, 1), (True, 0), (False, 0)]


def test_fixed_window_count_rejected_false_keeps_quota() -> None:
    lim = Rate(3, MINUTE, 3, False)
    calls = [(0.0, 2), (1.0, 2), (2.0, 1), (3.0, 1)]
    assert run(FIXED_WINDOW, lim, calls) == [(True, 1), (False, 0), (True, 0), (False, 0)]
    counted = Rate(3, MINUTE, 3, True)
    assert run(FIXED_WINDOW, counted, calls) == [(True, 1), (False, 0), (False, 0), (False, 0)]


def test_atomic_charges_all_or_none() -> None:
    a = Check("a", FIXED_WINDOW, Rate(10, MINUTE, 10, True), 1, 0, MINUTE)
    b = Check("b", TOKEN_BUCKET, Rate(1, MINUTE, 1, False), 1, 0, MINUTE)
    states, verdicts = run_checks([None, None], [a, b], 0.0, atomic=True)
    assert [v.allowed for v in verdicts] == [True, True] and all(s for s in states)
    states, verdicts = run_checks([states[0], states[1]], [a, b], 1.0, atomic=True)
    assert [v.allowed for v in verdicts] == [True, False]
    assert states == [None, None]  # nothing charged
    assert verdicts[0].remaining == 9  # what a still has, untouched


calls_strategy = st.lists(st.tuples(st.integers(0, 20_000), st.integers(0, 4)), min_size=1,
                          max_size=60)


def timeline(steps: list[tuple[int, int]]) -> list[tuple[float, int]]:
    now, out = 0.0, []
    for dt, hits in steps:
        now += dt
        out.append((now, hits))
    return out


@settings(max_examples=200, deadline=None)
@given(steps=calls_strategy, limit=st.integers(1, 10))
def test_sliding_log_never_admits_more_than_limit_in_any_window(
        steps: list[tuple[int, int]], limit: int) -> None:
    lim = Rate(limit, MINUTE, limit, False)
    calls = timeline(steps)
    results = run(SLIDING_LOG, lim, calls)
    admitted = [(t, h) for (t, h), (ok, _) in zip(calls, results, strict=True) if ok]
    for t, _ in admitted:
        in_window = sum(h for u, h in admitted if t - MINUTE < u <= t)
        assert in_window <= limit


@settings(max_examples=200, deadline=None)
@given(steps=calls_strategy, rate=st.integers(1, 20), burst=st.integers(1, 10))
def test_token_bucket_never_admits_more_than_burst_plus_rate_times_elapsed(
        steps: list[tuple[int, int]], rate: int, burst: int) -> None:
    lim = Rate(rate, MINUTE, burst, False)
    calls = timeline(steps)
    results = run(TOKEN_BUCKET, lim, calls)
    admitted = [(t, h) for (t, h), (ok, _) in zip(calls, results, strict=True) if ok]
    for i, (start, _) in enumerate(admitted):
        total = 0
        for t, h in admitted[i:]:
            total += h
            assert total <= burst + rate * (t - start) / MINUTE + 1e-9
