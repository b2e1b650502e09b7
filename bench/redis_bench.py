"""Checks per second and latency against real Redis: standalone and a local Cluster, with
cross-request batching off and on (a benchmark, not a test).

    .venv/bin/python bench/redis_bench.py [--seconds 3] [--concurrency 1,16,128] [--keys 1000]
                                          [--targets standalone,cluster] [--window 0]

In one process and one run: a redis-server (and a 3-master / 3-replica Redis Cluster, both
started for the run on loopback and stopped at the end), then, for each target, each
concurrency and batching off/on, ``--concurrency`` asyncio tasks each calling
``Engine.should_rate_limit`` in a loop for ``--seconds``. Each request has two descriptors: a
reference fixed window (INCRBY + EXPIRE) and a token bucket (EVALSHA), over ``--keys`` users.

Prints per line: checks/s, p50 and p99 latency of one check, Redis round trips per check
(pipelines the store sent / checks) and, from Redis' side, read events per check
(``total_reads_processed``); then the ratios batching on / off from the same run. Figures vary
with the machine: compare ratios, not absolute numbers, across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sidecar.limiter.engine import Engine  # noqa: E402
from sidecar.limiter.options import EngineOptions  # noqa: E402
from sidecar.model import Descriptor  # noqa: E402
from sidecar.rules.loader import RuleFile, build_rules  # noqa: E402
from sidecar.storage.redis.options import RedisOptions  # noqa: E402
from sidecar.storage.redis.store import RedisStore  # noqa: E402

RULES = """
domain: bench
descriptors:
  - key: user
    rate_limit: {unit: hour, requests_per_unit: 1000000000}
  - key: tokens
    rate_limit: {unit: hour, requests_per_unit: 1000000000, algorithm: token_bucket}
"""


@dataclass
class Result:
    checks_per_s: float
    p50_ms: float
    p99_ms: float
    trips_per_check: float
    reads_per_check: float


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def reads(clients: list[Any]) -> int:
    return sum(int(c.info("stats")["total_reads_processed"]) for c in clients)


async def measure(opts: RedisOptions, concurrency: int, seconds: float, keys: int,
                  clients: list[Any]) -> Result:
    store = RedisStore(opts)
    engine = Engine(store, EngineOptions(expiration_jitter_max_seconds=0))
    engine.set_rules(build_rules([RuleFile("bench.yaml", RULES)]))
    requests = [[Descriptor((("user", f"u{k}"),)), Descriptor((("tokens", f"u{k}"),))]
                for k in range(keys)]
    for r in requests[:50]:  # connections open, script loaded
        await engine.should_rate_limit("bench", r)
    latencies: list[float] = []
    stop = time.monotonic() + seconds
    trips = _Trips(store)

    async def worker(w: int) -> None:
        i = w
        while time.monotonic() < stop:
            started = time.perf_counter()
            await engine.should_rate_limit("bench", requests[i % keys])
            latencies.append(time.perf_counter() - started)
            i += concurrency

    reads_before = reads(clients)
    started = time.monotonic()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.monotonic() - started
    read_events = reads(clients) - reads_before - len(clients)
    await store.close()
    n = len(latencies)
    return Result(n / elapsed, statistics.median(latencies) * 1000,
                  percentile(latencies, 0.99) * 1000, trips.count() / n, read_events / n)


class _Trips:
    """Pipelines sent by the store: its batcher's flushes, or one per request without it."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.start = store.batcher.flushes if store.batcher else 0
        self.calls = 0
        if store.batcher is None:
            execute = store.topology.execute

            async def counted(commands: Any) -> Any:
                self.calls += 1
                return await execute(commands)

            store._send = counted  # type: ignore[method-assign]

    def count(self) -> int:
        if self.store.batcher is not None:
            return self.store.batcher.flushes - self.start
        return self.calls


@contextlib.contextmanager
def targets(names: list[str]) -> Iterator[dict[str, tuple[RedisOptions, list[Any]]]]:
    from tests.support.servers import RedisServer
    from tests.topologies import RedisCluster

    started: list[Any] = []
    out: dict[str, tuple[RedisOptions, list[Any]]] = {}
    try:
        if "standalone" in names:
            server = RedisServer().start()
            started.append(server)
            out["standalone"] = (RedisOptions(url=server.url, timeout=1.0, pool_size=64),
                                 [server.client()])
        if "cluster" in names:
            cluster = RedisCluster().start()
            started.append(cluster)
            out["cluster"] = (RedisOptions(url=cluster.startup_nodes, type="cluster",
                                           timeout=1.0, pool_size=64),
                              [m.client() for m in cluster.masters])
        yield out
    finally:
        for _, clients in out.values():
            for c in clients:
                c.close()
        for s in started:
            s.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--concurrency", default="1,16,128")
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--targets", default="standalone,cluster")
    parser.add_argument("--window", type=float, default=0.0,
                        help="REDIS_PIPELINE_WINDOW in seconds for the batching-on runs")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    print(f"{'target':<11} {'conc':>5} {'batching':>8} {'checks/s':>10} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'trips/check':>11} {'reads/check':>11}")
    ratios = []
    with targets(args.targets.split(",")) as found:
        for name, (base, clients) in found.items():
            for concurrency in levels:
                runs = {}
                for batching in (False, True):
                    opts = RedisOptions(**{**base.__dict__, "batching": batching,
                                           "pipeline_window": args.window})
                    r = asyncio.run(measure(opts, concurrency, args.seconds, args.keys,
                                            clients))
                    runs[batching] = r
                    print(f"{name:<11} {concurrency:>5} {'on' if batching else 'off':>8} "
                          f"{r.checks_per_s:>10,.0f} {r.p50_ms:>8.3f} {r.p99_ms:>8.3f} "
                          f"{r.trips_per_check:>11.3f} {r.reads_per_check:>11.3f}", flush=True)
                off, on = runs[False], runs[True]
                ratios.append((name, concurrency, on.checks_per_s / off.checks_per_s,
                               on.p50_ms / off.p50_ms, on.p99_ms / off.p99_ms,
                               on.trips_per_check / off.trips_per_check))
    print("\nbatching on / off (same run)")
    print(f"{'target':<11} {'conc':>5} {'throughput':>10} {'p50':>8} {'p99':>8} {'trips':>8}")
    for name, concurrency, thr, p50, p99, trips in ratios:
        print(f"{name:<11} {concurrency:>5} {thr:>9.2f}x {p50:>7.2f}x {p99:>7.2f}x "
              f"{trips:>7.3f}x")


if __name__ == "__main__":
    main()
