"""The five algorithms, one call at a time: the native functions and sidecar/storage/algorithms.py
give bit-identical verdicts and new states for arbitrary states (fractional times and counts,
debts, stale windows), limits, hits and times, alone and in atomic groups."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.model import RATE_ALGORITHMS, Algorithm
from sidecar.storage.algorithms import Check, Rate, run_checks

NOW = 1_800_000_000_000.0
times = st.floats(NOW - 5_000_000, NOW + 5_000, allow_nan=False) | st.sampled_from(
    (NOW, NOW - 1000.0, NOW - 60_000.0, NOW - 3_600_000.0))
counts = st.integers(0, 12).map(float) | st.floats(-20, 20, allow_nan=False)


@st.composite
def states(draw: st.DrawFn, algorithm: Algorithm) -> list[float] | None:
    if draw(st.integers(0, 4)) == 0:
        return None
    if algorithm == "fixed_window":
        return [float(draw(st.integers(0, 15)))]
    if algorithm == "sliding_window":
        w = 60_000.0
        start = draw(st.sampled_from((NOW - NOW % w, NOW - NOW % w - w, NOW - 7 * w)))
        return [start, draw(counts), draw(counts)]
    if algorithm == "sliding_log":
        entries = sorted(draw(st.lists(times, max_size=6)))
        return [x for t in entries for x in (t, float(draw(st.integers(1, 4))))]
    if algorithm == "token_bucket":
        return [draw(counts), draw(times)]
    return [draw(times)]


@st.composite
def checks(draw: st.DrawFn) -> tuple[Check, list[float] | None]:
    algorithm = draw(st.sampled_from(RATE_ALGORITHMS))
    window = draw(st.sampled_from((1000.0, 60_000.0, 90_000.0, 3_600_000.0)))
    limit = Rate(draw(st.integers(0, 12)), window, draw(st.integers(1, 12)), draw(st.booleans()),
                 draw(st.booleans()))
    end = NOW - NOW % window + window
    check = Check(f"k{draw(st.integers(0, 9))}", algorithm, limit, draw(st.integers(0, 14)),
                  draw(st.floats(1, 1e7)), end)
    return check, draw(states(algorithm))


def bits(value: Any) -> Any:
    """Numbers as their exact bits, so -0.0 and 0.0 or two nearby floats never compare equal."""
    if isinstance(value, float | int) and not isinstance(value, bool):
        return float(value).hex()
    if isinstance(value, list | tuple):
        return [bits(v) for v in value]
    return value


@settings(max_examples=1500, deadline=None)
@given(group=st.lists(checks(), min_size=1, max_size=4), atomic=st.booleans(),
       now=st.sampled_from((NOW, NOW + 1, NOW + 0.5, NOW + 59_999.0)))
def test_same_verdicts_and_states(native: ModuleType,
                                  group: list[tuple[Check, list[float] | None]], atomic: bool,
                                  now: float) -> None:
    checks_ = [c for c, _ in group]
    states_ = [s for _, s in group]
    expected_states, expected = run_checks([list(s) if s else s for s in states_], checks_, now,
                                           atomic)
    got_states, got = native.run_checks(states_, checks_, now, atomic)
    assert bits(got) == bits([tuple(v) for v in expected])
    assert bits(got_states) == bits(expected_states)
