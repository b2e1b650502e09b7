"""The native engine decides exactly as the Python engine: random rule sets, random request
streams, one fake clock and one fixed jitter sequence; every decision (codes, limits,
remaining, resets, headers), every error and every per-rule counter must be equal."""

from __future__ import annotations

from types import ModuleType

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.limiter.options import EngineOptions
from tests.native.kit import (
    T0_MS,
    Scenario,
    Sides,
    engine_options,
    python_store_expires_states_in_ms,
    scenarios,
)

# Until the Python store keeps algorithm states to the millisecond, step in whole seconds.
WHOLE_SECONDS = not python_store_expires_states_in_ms()
JITTER = st.lists(st.integers(0, 10_000), min_size=1, max_size=4)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios(WHOLE_SECONDS), options=engine_options(), jitter=JITTER,
       local_cache=st.booleans(), start=st.integers(0, 400 * 86_400))
def test_same_decisions_and_stats(native: ModuleType, scenario: Scenario,
                                  options: EngineOptions, jitter: list[int], local_cache: bool,
                                  start: int) -> None:
    sides = Sides.make(native, scenario.rules, options, jitter, local_cache,
                       T0_MS + start * 1000)
    for step, call in enumerate(scenario.stream):
        sides.clock.advance(call.step_ms / 1000)
        python, native_answer = sides.both(call)
        assert native_answer == python, (step, call)
    sides.stats_match()
