"""Ways to serve the same RateLimitService logic, measured side by side (a benchmark, not a test):
grpc.aio or grpcio's thread-pool server, asyncio's event loop or uvloop.

    .venv/bin/python bench/serving_options.py [--seconds 5] [--threads 8] [--rate 1000]
        [--options aio,aio-uvloop,sync,fast,fast-uvloop] [--no-pin]

Each option runs in its own process on the memory store with one rule (limit 10^9/s), pinned to
CPU 0 (h2load on CPU 1), and is loaded with h2load at saturation (-c 4 -m 16 for --seconds),
then at a fixed --rate (-c 4 -m 1, percentiles from h2load's log):
  aio          sidecar.transports.grpcio.RateLimitServicer on grpc.aio, asyncio's loop
  aio-uvloop   the same on uvloop's loop
  sync         the same logic on grpcio's synchronous server (a ThreadPoolExecutor of
               --threads): the servicer's coroutine driven to completion on the pool thread
               (the memory store never suspends), one lock around it because the engine and
               the store are single-threaded by design
  fast         the sidecar's own HTTP/2 transport (sidecar.h2), asyncio's loop
  fast-uvloop  the same on uvloop
and, as floors, a servicer returning a constant OK response on the same server: noop-aio,
noop-aio-uvloop, noop-sync (bench/common.py noop-rls). Prints req/s, latency, and the ratios
ours/noop of the same server and each option / aio.

uvloop is not a dependency: install it to measure the uvloop rows (`.venv/bin/pip install
uvloop`, or into a folder of its own with `pip install --target DIR uvloop` and
`PYTHONPATH=DIR`); without it those rows are skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import signal
import sys
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    PYTHON,
    RLS_PATH,
    Load,
    Processes,
    check_once,
    duration,
    free_port,
    grpc_frame,
    h2load,
    machine,
    need,
    ratio,
    rls_request,
    start_noop,
    thread_split,
    thread_ticks,
    wait_port,
)

RULES = """\
domain: bench
descriptors:
  - key: client
    rate_limit: {unit: second, requests_per_unit: 1000000000}
"""
OPTIONS = ("aio", "aio-uvloop", "sync", "fast", "fast-uvloop")
FLOORS = {"aio": ("aio", "asyncio"), "aio-uvloop": ("aio", "uvloop"), "sync": ("sync", "asyncio")}
SERVER_CPU, LOAD_CPU = 0, 1


# -- the servers (child processes) ----------------------------------------------------------------


def make_engine() -> Any:
    from sidecar.limiter.engine import Engine
    from sidecar.rules.loader import RuleFile, build_rules
    from sidecar.storage.memory import MemoryStore

    engine = Engine(MemoryStore())
    engine.set_rules(build_rules([RuleFile("bench.yaml", RULES)]))
    return engine


def drive(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends (the memory store) without an event loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the coroutine suspended; use an event loop")


def servicer() -> Any:
    from sidecar.observability.metrics import Metrics
    from sidecar.service import RateLimitService
    from sidecar.transports.grpcio import RateLimitServicer

    return RateLimitServicer(RateLimitService(make_engine(), Metrics()))


async def serve_async(option: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if option.startswith("fast"):
        from sidecar.h2 import H2Options
        from sidecar.observability.health import Health
        from sidecar.observability.metrics import Metrics
        from sidecar.service import RateLimitService
        from sidecar.transports.fast import rls_server

        server: Any = rls_server(RateLimitService(make_engine(), Metrics()), Health(),
                                 H2Options(eager_start=True))
        await server.start("127.0.0.1", port)
    else:
        import grpc
        from envoy.service.ratelimit.v3 import rls_pb2_grpc

        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        rls_pb2_grpc.add_RateLimitServiceServicer_to_server(servicer(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
    print("ready", flush=True)
    await stop.wait()
    await server.stop(0.5)


def serve_sync(port: int, threads: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import grpc
    from envoy.service.ratelimit.v3 import rls_pb2_grpc

    inner = servicer()
    lock = threading.Lock()

    class SyncServicer(rls_pb2_grpc.RateLimitServiceServicer):  # type: ignore[misc]
        def ShouldRateLimit(self, request: Any, context: Any) -> Any:
            with lock:
                return drive(inner.ShouldRateLimit(request, context))

    server = grpc.server(ThreadPoolExecutor(max_workers=threads),
                         options=[("grpc.so_reuseport", 0)])
    rls_pb2_grpc.add_RateLimitServiceServicer_to_server(SyncServicer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    while not done.wait(0.1):
        pass
    server.stop(0.5).wait()


def serve_main(option: str, port: int, threads: int) -> None:
    if option == "sync":
        serve_sync(port, threads)
        return
    factory = asyncio.new_event_loop
    if option.endswith("uvloop"):
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve_async(option, port))


# -- the driver -----------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    saturated: Load
    at_rate: Load
    threads: str


def start(option: str, procs: Processes, args: argparse.Namespace) -> tuple[int, int]:
    """(port, pid) of the server for ``option`` (``noop-…`` for the floors)."""
    cpu = None if args.no_pin else SERVER_CPU
    if option.startswith("noop-"):
        server, loop = FLOORS[option.removeprefix("noop-")]
        return start_noop(procs, cpu=cpu, loop=loop, server=server)
    port = free_port()
    proc = procs.start(option, [PYTHON, __file__, "--serve", option, "--port", str(port),
                                "--threads", str(args.threads)], cpu=cpu)
    wait_port(port, proc)
    return port, proc.pid


def measure(option: str, procs: Processes, data: Path, message: bytes,
            args: argparse.Namespace) -> Row:
    load_cpu = None if args.no_pin else LOAD_CPU
    port, pid = start(option, procs, args)
    try:
        if check_once(port, message) != 1:
            raise RuntimeError(f"{option}: the check was not OK")
        url = f"http://127.0.0.1:{port}{RLS_PATH}"
        h2load(url, ["-n", "3000", "-c", "4", "-m", "16"], data, load_cpu)  # warm-up
        before, started = thread_ticks(pid), time.monotonic()
        sat = h2load(url, ["-D", duration(args.seconds), "-c", "4", "-m", "16"], data, load_cpu)
        threads = thread_split(before, thread_ticks(pid), pid, time.monotonic() - started)
        at_rate = h2load(url, ["-D", duration(args.rate_seconds), "-c", "4", "-m", "1",
                               "--rps", str(max(1, args.rate // 4))], data, load_cpu,
                         log_file=procs.tmp / "latency.log")
    finally:
        for _, proc in [p for p in procs.procs if p[1].pid == pid]:
            procs.stop(proc)
    return Row(option, sat, at_rate, threads)


def report(rows: dict[str, Row], skipped: list[str], args: argparse.Namespace) -> None:
    print(f"\n{machine()}; memory store; h2load -c 4 -m 16 for {args.seconds:g}s, then "
          f"-c 4 -m 1 at {args.rate}/s; sync: {args.threads} threads; "
          f"{'server on CPU 0, h2load on CPU 1' if not args.no_pin else 'not pinned'}")
    base = rows.get("aio")
    print(f"{'option':16} {'req/s':>9} {'/noop':>6} {'/aio':>6} {'p50 ms':>7} {'p99 ms':>7}  "
          "CPU by thread at saturation")
    for name, row in rows.items():
        floor = rows.get(f"noop-{name}")
        rel_floor = ratio(row.saturated.rps, floor.saturated.rps) if floor else ""
        rel_aio = ratio(row.saturated.rps, base.saturated.rps) if base else ""
        failed = f" ({row.saturated.failed + row.at_rate.failed} failed)" if (
            row.saturated.failed or row.at_rate.failed) else ""
        print(f"{name:16} {row.saturated.rps:9,.0f} {rel_floor:>6} {rel_aio:>6} "
              f"{row.at_rate.p50:7.3f} {row.at_rate.p99:7.3f}  {row.threads}{failed}")
    if skipped:
        print(f"skipped (uvloop not importable): {', '.join(skipped)}")
    ours = {k: v for k, v in rows.items() if not k.startswith("noop-")}
    if ours:
        best = max(ours.values(), key=lambda r: r.saturated.rps)
        print(f"fastest: {best.name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="saturation run length")
    parser.add_argument("--rate", type=int, default=1000, help="req/s of the latency run")
    parser.add_argument("--rate-seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=8, help="sync server's thread pool")
    parser.add_argument("--options", default=",".join(OPTIONS))
    parser.add_argument("--no-floors", action="store_true", help="skip the noop rows")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--serve", choices=OPTIONS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_main(args.serve, args.port, args.threads)
        return 0
    need("h2load")
    has_uvloop = importlib.util.find_spec("uvloop") is not None
    options, skipped = [], []
    for option in args.options.split(","):
        wanted = [option] + ([f"noop-{option}"] if option in FLOORS and not args.no_floors
                             else [])
        for name in wanted:
            (options if has_uvloop or "uvloop" not in name else skipped).append(name)
    message = rls_request("bench", [[("client", "bench")]])
    rows: dict[str, Row] = {}
    with Processes() as procs:
        data = procs.tmp / "request.bin"
        data.write_bytes(grpc_frame(message))
        for option in options:
            rows[option] = measure(option, procs, data, message, args)
            print(f"{option}: {rows[option].saturated.rps:,.0f} req/s", file=sys.stderr,
                  flush=True)
    report(rows, skipped, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
