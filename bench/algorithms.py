"""In-process checks per second, per algorithm, on the memory store — beside `limits`.

Run: .venv/bin/python bench/algorithms.py [--seconds 2] [--keys 10000]
(`pip install -e '.[bench]'` brings the `limits` library.)

For each algorithm, in one process and one run, one after the other:
  ours-engine  Engine.should_rate_limit on the memory store: rule matching, key building, the
               algorithm, statuses and per-rule stats (the whole request path minus transport),
               driven without an event loop (the memory store never suspends).
  ours-algo    the algorithm function alone on a dict of states (the store's inner loop).
  limits       the `limits` library's strategy for the same algorithm on its MemoryStorage
               (fixed window, sliding window counter, moving window = sliding log).
Each runs with one hot key and with --keys distinct keys; the ratio ours-engine / limits is
printed per line. Figures vary with machine load: compare ratios from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections.abc import Callable, Coroutine
from typing import Any

from sidecar.limiter.engine import Engine
from sidecar.limiter.options import EngineOptions
from sidecar.model import RATE_ALGORITHMS, Descriptor
from sidecar.rules.loader import RuleFile, build_rules
from sidecar.storage.algorithms import Check, Rate, run_check
from sidecar.storage.memory import MemoryStore

ALGORITHMS = RATE_ALGORITHMS  # concurrency counts holders (leases), not checks
LIMITS_EQUIVALENT = {"fixed_window": "FixedWindowRateLimiter",
                     "sliding_window": "SlidingWindowCounterRateLimiter",
                     "sliding_log": "MovingWindowRateLimiter"}
# A limit no check reaches, except for sliding_log: it keeps one entry per allowed request, so
# its rules are capped at 10,000 (the same limit is given to `limits`' moving window).
LIMITS = {a: 10_000 if a == "sliding_log" else 1_000_000_000 for a in ALGORITHMS}
RULES = "domain: bench\ndescriptors:\n" + "".join(
    f"  - key: {a}\n    rate_limit: {{unit: second, requests_per_unit: {LIMITS[a]}, "
    f"algorithm: {a}}}\n" for a in ALGORITHMS)


def drive(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends (the memory store) without an event loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the coroutine suspended; use an event loop")


def rate(fn: Callable[[int], None], seconds: float) -> float:
    """Calls per second of fn(i) over about ``seconds``, in batches."""
    gc.collect()
    n, i, start = 0, 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(1000):
            fn(i)
            i += 1
        n += 1000
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def engine_bench(algorithm: str, keys: int, seconds: float) -> float:
    engine = Engine(MemoryStore(), EngineOptions(expiration_jitter_max_seconds=0))
    engine.set_rules(build_rules([RuleFile("bench.yaml", RULES)]))
    descriptors = [[Descriptor(((algorithm, f"user{k}"),))] for k in range(keys)]

    def call(i: int) -> None:
        drive(engine.should_rate_limit("bench", descriptors[i % keys]))

    return rate(call, seconds)


def algo_bench(algorithm: str, keys: int, seconds: float) -> float:
    states: dict[str, list[float] | None] = {}
    names = [f"user{k}" for k in range(keys)]
    lim = Rate(LIMITS[algorithm], 1000.0, LIMITS[algorithm], False)

    def call(i: int) -> None:
        key = names[i % keys]
        now = time.time() * 1000
        new, _ = run_check(Check(key, algorithm, lim, 1, 2000.0, now - now % 1000 + 1000),
                           states.get(key), now)
        if new is not None:
            states[key] = new

    return rate(call, seconds)


def limits_bench(algorithm: str, keys: int, seconds: float) -> float | None:
    try:
        from limits import RateLimitItemPerSecond, storage, strategies
    except ImportError:
        return None
    name = LIMITS_EQUIVALENT.get(algorithm)
    if name is None:
        return None
    limiter = getattr(strategies, name)(storage.MemoryStorage())
    item = RateLimitItemPerSecond(LIMITS[algorithm])
    names = [f"user{k}" for k in range(keys)]

    def call(i: int) -> None:
        limiter.hit(item, "bench", names[i % keys])

    return rate(call, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--keys", type=int, default=10_000)
    args = parser.parse_args()
    asyncio.set_event_loop_policy(None)
    print(f"{'algorithm':<15} {'keys':>6} {'ours-engine/s':>14} {'ours-algo/s':>12} "
          f"{'limits/s':>10} {'engine/limits':>14}")
    for algorithm in ALGORITHMS:
        for keys in (1, args.keys):
            ours = engine_bench(algorithm, keys, args.seconds)
            algo = algo_bench(algorithm, keys, args.seconds)
            peer = limits_bench(algorithm, keys, args.seconds)
            ratio = f"{ours / peer:.2f}x" if peer else "n/a"
            shown = f"{peer:>10,.0f}" if peer else f"{'-':>10}"
            print(f"{algorithm:<15} {keys:>6} {ours:>14,.0f} {algo:>12,.0f} {shown} {ratio:>14}",
                  flush=True)


if __name__ == "__main__":
    main()
