"""Memory: the sidecar's resident size idle and per 100k active keys, beside its floors
(a benchmark, not a test).

    .venv/bin/python bench/memory.py [--keys 100000] [--batch 1000] [--settle 2]

In one run:
  idle RSS      VmRSS (/proc/PID/status) of processes started for the run, --settle seconds
                after their ports open: a bare interpreter (`python -c` sleeping: the floor of
                any Python service), the no-op grpc.aio servicer (bench/common.py: Python plus
                grpcio and the Envoy protos), and the sidecar with the example rules (config/)
                on the memory store with each gRPC transport, on Redis, and on Redis with
                --workers 2 (supervisor + workers, summed). Target: < 50 MB.
  keys (RSS)    the sidecar on the memory store (example rules: `remote_address` has a
                per-value default limit, so each distinct value is one counter), then --keys
                distinct addresses through HTTP /json, --batch descriptors per request, twice;
                VmRSS before and after each --keys gives the growth per 100k keys.
  keys (heap)   in this process, under tracemalloc: bytes per key held by MemoryStore (its
                counters and expiry index), by `limits`' MemoryStorage (the peer, when
                installed), and by a plain dict of the same key strings to ints (the floor),
                the key strings included in all three.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
import tracemalloc
import urllib.request
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    PYTHON,
    ROOT,
    Processes,
    machine,
    need,
    rss_kib,
    start_noop,
    start_redis,
    start_sidecar,
    tree_rss_kib,
    wait_port,
)

EXAMPLE_RULES = ROOT / "config"
MiB = 1024


def idle(procs: Processes, settle: float) -> list[tuple[str, float]]:
    """(what, RSS in MiB) of each idle process."""
    rows = []
    bare = procs.start("bare", [PYTHON, "-c", "import time; time.sleep(600)"])
    time.sleep(settle)
    rows.append(("python -c sleep (bare interpreter)", rss_kib(bare.pid) / MiB))
    procs.stop(bare)
    port, pid = start_noop(procs)
    wait_port(port)
    time.sleep(settle)
    rows.append(("noop grpc.aio servicer (the floor)", rss_kib(pid) / MiB))
    procs.stop_all()
    for transport in ("fast", "grpcio"):
        sidecar = start_sidecar(procs, EXAMPLE_RULES, transport=transport)
        time.sleep(settle)
        rss = rss_kib(sidecar.proc.pid) / MiB
        rows.append((f"sidecar {transport}, memory store, config/", rss))
        procs.stop(sidecar.proc)
    redis_url = start_redis(procs)
    sidecar = start_sidecar(procs, EXAMPLE_RULES, redis_url=redis_url)
    time.sleep(settle)
    rows.append(("sidecar fast, redis store, config/", rss_kib(sidecar.proc.pid) / MiB))
    procs.stop(sidecar.proc)
    sidecar = start_sidecar(procs, EXAMPLE_RULES, redis_url=redis_url, workers=2)
    time.sleep(settle + 2)  # the supervisor starts its workers after its own start-up
    pid = sidecar.proc.pid
    rows.append(("  --workers 2: the supervisor", rss_kib(pid) / MiB))
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        rows.append(("  --workers 2: a worker", rss_kib(int(child)) / MiB))
    rows.append(("sidecar fast, redis, --workers 2 (all 3 processes)", tree_rss_kib(pid) / MiB))
    procs.stop_all()
    return rows


# What the idle size is made of: a fresh interpreter's RSS after importing each group.
CORE = ("import asyncio, yaml, watchdog.observers, prometheus_client, google.protobuf.json_format, "
        "sidecar.limiter.engine, sidecar.rules.watcher, sidecar.storage.memory; "
        "from envoy.service.ratelimit.v3 import rls_pb2")
IMPORTS = (
    ("interpreter alone", "pass"),
    ("core: engine, rules, memory store, protobuf, metrics", CORE),
    ("core + grpcio", CORE + "; import grpc.aio"),
    ("core + aiohttp (the HTTP ports)", CORE + "; import aiohttp.web"),
    ("core + redis.asyncio", CORE + "; import redis.asyncio"),
    ("core + grpcio + aiohttp", CORE + "; import grpc.aio, aiohttp.web"),
    ("core + grpcio + aiohttp + redis.asyncio", CORE + "; import grpc.aio, aiohttp.web, "
                                                       "redis.asyncio"),
    ("import sidecar.app (what `serve` loads today)", "import sidecar.app"),
)


def imports() -> list[tuple[str, float]]:
    rows = []
    for label, code in IMPORTS:
        out = subprocess.run([PYTHON, "-c", code + "; import re; print(re.search(r'VmRSS:\\s+"
                              "(\\d+)', open('/proc/self/status').read()).group(1))"],
                             capture_output=True, text=True, check=True, cwd=str(ROOT))
        rows.append((label, int(out.stdout.split()[-1]) / MiB))
    return rows


def post_json(port: int, body: bytes) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/json", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=60) as resp:
        if resp.status != 200:
            raise RuntimeError(f"/json answered {resp.status}")
        resp.read()


def address(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def grow(procs: Processes, keys: int, batch: int, settle: float) -> list[tuple[str, float]]:
    """RSS (MiB) after start, then after each ``keys`` more distinct counters."""
    sidecar = start_sidecar(procs, EXAMPLE_RULES)
    time.sleep(settle)
    rows = [("after start", rss_kib(sidecar.proc.pid) / MiB)]
    start = 0
    for round_ in (1, 2):
        began = time.monotonic()
        for first in range(start, start + keys, batch):
            descriptors = [{"entries": [{"key": "remote_address", "value": address(i)}]}
                           for i in range(first, min(first + batch, start + keys))]
            post_json(sidecar.http_port, json.dumps(
                {"domain": "example", "descriptors": descriptors}).encode())
        start += keys
        time.sleep(settle)
        rows.append((f"after {round_ * keys:,} keys ({time.monotonic() - began:.1f}s to add)",
                     rss_kib(sidecar.proc.pid) / MiB))
    procs.stop(sidecar.proc)
    return rows


def heap_per_key(keys: int) -> list[tuple[str, float]]:
    """Bytes per key each structure holds, key strings included (tracemalloc)."""
    from sidecar.storage.memory import MemoryStore

    now = int(time.time())
    window = now - now % 60
    rows = []

    def measure(label: str, fill: Callable[[list[str]], object]) -> None:
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        # The key strings are made inside the count: each structure holds them.
        names = [f"example_remote_address_{address(i)}_{window}" for i in range(keys)]
        keep = fill(names)
        del names
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        rows.append((label, used / keys))
        del keep

    def ours(ks: list[str]) -> object:
        store = MemoryStore()
        store.increment_now([(k, 1, 60, None) for k in ks], now)
        return store

    def floor(ks: list[str]) -> object:
        return {k: 1 for k in ks}

    measure("MemoryStore (ours)", ours)
    try:
        from limits.storage import MemoryStorage

        def peer(ks: list[str]) -> object:
            storage = MemoryStorage()
            for k in ks:
                storage.incr(k, 60)
            return storage

        measure("limits MemoryStorage (peer)", peer)
    except ImportError:
        rows.append(("limits MemoryStorage (peer): not installed", 0.0))
    measure("dict[str, int] (floor)", floor)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000, help="descriptors per /json call")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds between a process being ready and its RSS being read")
    args = parser.parse_args()
    need("redis-server")
    with Processes() as procs:
        idle_rows = idle(procs, args.settle)
        import_rows = imports()
        grow_rows = grow(procs, args.keys, args.batch, args.settle)
    heap_rows = heap_per_key(args.keys)

    print(f"\n{machine()}")
    floor = idle_rows[1][1]
    print(f"{'idle':52} {'RSS MiB':>8} {'/noop':>6}")
    for label, mib in idle_rows:
        print(f"{label:52} {mib:8.1f} {mib / floor:6.2f}")
    print(f"\n{'fresh interpreter after importing':52} {'RSS MiB':>8} {'+core':>6}")
    core = import_rows[1][1]
    for label, mib in import_rows:
        print(f"{label:52} {mib:8.1f} {mib - core:+6.1f}")
    print(f"\n{'sidecar on the memory store (fast), /json':52} {'RSS MiB':>8} {'+MiB':>6}")
    for i, (label, mib) in enumerate(grow_rows):
        added = f"{mib - grow_rows[i - 1][1]:+6.1f}" if i else ""
        print(f"{label:52} {mib:8.1f} {added:>6}")
    per_100k = [(grow_rows[i][1] - grow_rows[i - 1][1]) * 100_000 / args.keys
                for i in (1, 2)]
    print(f"RSS growth per 100k keys: {per_100k[0]:.1f} MiB (first), {per_100k[1]:.1f} MiB "
          f"(second); {per_100k[1] * MiB * 1024 / 100_000:.0f} bytes per key")
    print(f"\n{'in-process heap (tracemalloc), ' + format(args.keys, ',') + ' keys':52} "
          f"{'B/key':>8} {'/dict':>6}")
    floor_bytes = heap_rows[-1][1]
    for label, per_key in heap_rows:
        print(f"{label:52} {per_key:8.0f} {per_key / floor_bytes:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
