"""In-process checks per second of the native engine, beside the Python engine and `limits`.

Run: .venv/bin/python bench/native_engine.py [--seconds 2] [--keys 10000]
(needs the extension built — `pip install -e .` with cargo on the PATH — and the bench extra
for `limits`).

For each algorithm, in one process and one run, one after the other, with one hot key and
with --keys distinct keys:
  native       NativeEngine.decide on its memory store: rule matching, key building, the
               algorithm, statuses, per-rule stats; the answer as one tuple of integers
  native+obj   the same through sidecar/limiter/native.py, the answer as Decision objects
               (what a Python caller of the engine gets)
  python       Engine.should_rate_limit on the Python memory store (the pure-Python path)
  limits       the `limits` library's strategy for the same algorithm on its MemoryStorage
The ratios native / limits and native / python are printed per line. Figures vary with
machine load: compare ratios from one run.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from algorithms import ALGORITHMS, RULES, engine_bench, limits_bench, rate

from sidecar.limiter import native as native_loader
from sidecar.limiter.native import NativeEngineAdapter
from sidecar.limiter.options import EngineOptions
from sidecar.model import Descriptor
from sidecar.rules.loader import RuleFile, build_rules


def native_bench(module: Any, algorithm: str, keys: int, seconds: float) -> float:
    adapter = NativeEngineAdapter(module, EngineOptions(expiration_jitter_max_seconds=0))
    adapter.set_rules(build_rules([RuleFile("bench.yaml", RULES)]))
    engine = adapter.engine
    # The wire format the engine takes without looking anything up: (entries, hits, limit).
    descriptors = [[(((algorithm, f"user{k}"),), None, None)] for k in range(keys)]

    def call(i: int) -> None:
        engine.decide("bench", descriptors[i % keys], 0, time.time_ns() // 1_000_000)

    return rate(call, seconds)


def native_objects_bench(module: Any, algorithm: str, keys: int, seconds: float) -> float:
    adapter = NativeEngineAdapter(module, EngineOptions(expiration_jitter_max_seconds=0))
    adapter.set_rules(build_rules([RuleFile("bench.yaml", RULES)]))
    descriptors = [[Descriptor(((algorithm, f"user{k}"),))] for k in range(keys)]

    def call(i: int) -> None:
        adapter.decide("bench", descriptors[i % keys])

    return rate(call, seconds)


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--keys", type=int, default=10_000)
    args = parser.parse_args()
    extension = native_loader.load()
    module = extension.module
    if module is None:
        raise SystemExit(f"the native engine does not run ({extension.reason}): "
                         "nothing to measure")
    print(f"{'algorithm':<15} {'keys':>6} {'native/s':>11} {'native+obj/s':>13} "
          f"{'python/s':>10} {'limits/s':>10} {'native/limits':>14} {'native/python':>14}")
    for algorithm in ALGORITHMS:
        for keys in (1, args.keys):
            ours = native_bench(module, algorithm, keys, args.seconds)
            objects = native_objects_bench(module, algorithm, keys, args.seconds)
            python = engine_bench(algorithm, keys, args.seconds)
            peer = limits_bench(algorithm, keys, args.seconds)
            shown = f"{peer:>10,.0f}" if peer else f"{'-':>10}"
            print(f"{algorithm:<15} {keys:>6} {ours:>11,.0f} {objects:>13,.0f} {python:>10,.0f} "
                  f"{shown} {ratio(ours, peer):>14} {ratio(ours, python):>14}", flush=True)


if __name__ == "__main__":
    main()
