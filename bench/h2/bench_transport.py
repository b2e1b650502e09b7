"""Fast HTTP/2 transport vs grpcio, measured with h2load (a benchmark, not a test).

    .venv/bin/python bench/h2/bench_transport.py [--duration 10] [--clients 4] [--streams 32]
                                                 [--rate 5000] [--uvloop] [--no-eager]

Each server runs alone in its own process, on the in-process memory store with one rule:

    fast    sidecar.h2.H2Server (the transport under test), its Python connection
    native  the same server with the native connection (wire side in Rust, sidecar._native)
    grpcio  sidecar.transports.grpcio.RateLimitServicer on grpc.aio (the transport it replaces)
    noop    a grpc.aio servicer that returns a constant OK response (grpcio's ceiling)

For each: a short warm-up, then h2load at full speed for --duration seconds (-c/-m), then
h2load at a fixed --rate (spread over the clients with --rps) with a per-request log, from
which the latency percentiles are computed. The server is pinned to CPU 0 and h2load to CPU 1
when the machine has two CPUs and taskset exists. Prints req/s, the ratios native/fast,
fast/grpcio and fast/noop, and p50/p99 latency; every process it starts is stopped before it
exits.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.ports import free_port, wait_port  # noqa: E402
from tests.support.processes import pin  # noqa: E402
from tests.support.servers import redis_argv, redis_binary  # noqa: E402

PATH = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
RULES = """\
domain: bench
descriptors:
  - key: client
    rate_limit:
      unit: second
      requests_per_unit: 1000000000
"""
MODES = ("fast", "native", "grpcio", "noop")


@dataclass
class Run:
    rps: float = 0.0
    failed: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    p999_ms: float = 0.0
    rate_achieved: float = 0.0


# -- the servers (child processes) ----------------------------------------------------------------


def request_message() -> bytes:
    from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
    from envoy.service.ratelimit.v3 import rls_pb2

    entry = ratelimit_pb2.RateLimitDescriptor.Entry(key="client", value="bench")
    request = rls_pb2.RateLimitRequest(
        domain="bench", descriptors=[ratelimit_pb2.RateLimitDescriptor(entries=[entry])])
    return bytes(request.SerializeToString())


def make_engine() -> Any:
    from sidecar.limiter.engine import Engine
    from sidecar.rules.loader import RuleFile, build_rules
    from sidecar.storage.memory import MemoryStore

    url = os.environ.get("BENCH_REDIS_URL")
    if url:
        from sidecar.storage.redis.options import RedisOptions
        from sidecar.storage.redis.store import RedisStore

        store: Any = RedisStore(RedisOptions(url=url, timeout=1.0, pool_size=64))
    else:
        store = MemoryStore()
    engine = Engine(store)
    engine.set_rules(build_rules([RuleFile("bench.yaml", RULES)]))
    return engine


async def serve(mode: str, port: int, eager: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if mode in ("fast", "native"):
        import importlib

        from sidecar.h2 import H2Options
        from sidecar.observability.health import Health
        from sidecar.observability.metrics import Metrics
        from sidecar.service import RateLimitService
        from sidecar.transports.fast import rls_server

        native = importlib.import_module("sidecar._native") if mode == "native" else None
        server = rls_server(RateLimitService(make_engine(), Metrics()), Health(),
                            H2Options(eager_start=eager), native=native)
        await server.start("127.0.0.1", port)
        print("ready", flush=True)
        await stop.wait()
        await server.stop(1.0)
        return
    grpc_server = grpcio_server(mode, port)
    await grpc_server.start()
    print("ready", flush=True)
    await stop.wait()
    await grpc_server.stop(1.0)


def grpcio_server(mode: str, port: int) -> Any:
    import grpc
    from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

    from sidecar.observability.metrics import Metrics
    from sidecar.service import RateLimitService
    from sidecar.transports.grpcio import RateLimitServicer

    class NoopServicer(rls_pb2_grpc.RateLimitServiceServicer):  # type: ignore[misc]
        response = rls_pb2.RateLimitResponse(overall_code=rls_pb2.RateLimitResponse.OK)

        async def ShouldRateLimit(self, request: Any, context: Any) -> Any:
            return self.response

    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    servicer = NoopServicer() if mode == "noop" else \
        RateLimitServicer(RateLimitService(make_engine(), Metrics()))
    rls_pb2_grpc.add_RateLimitServiceServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    return server


def serve_main(mode: str, port: int, eager: bool, use_uvloop: bool) -> None:
    factory = asyncio.new_event_loop
    if use_uvloop and mode in ("fast", "native"):
        from sidecar.app import event_loop_factory

        factory = event_loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(mode, port, eager))


# -- the driver ------------------------------------------------------------------------------------


PIN = True


def pinned(cpu: int) -> list[str]:
    return pin(cpu) if PIN else []


@contextmanager
def server_process(mode: str, args: argparse.Namespace) -> Iterator[int]:
    port = free_port()
    cmd = [*pinned(0), sys.executable, __file__, "--serve", mode, "--port", str(port)]
    if args.no_eager:
        cmd.append("--no-eager")
    if args.uvloop:
        cmd.append("--uvloop")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if b"ready" not in line:
            raise RuntimeError(f"{mode} server did not start")
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def h2load(port: int, data: Path, extra: list[str], timeout: float) -> str:
    cmd = [*pinned(1), "h2load", "-H", "content-type: application/grpc", "-H", "te: trailers",
           "-d", str(data), *extra, f"http://127.0.0.1:{port}{PATH}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"h2load failed: {out.stderr or out.stdout}")
    return out.stdout


def parse_h2load(output: str) -> tuple[float, int]:
    rps = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", output)
    counts = re.search(r"(\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", output)
    if rps is None or counts is None:
        raise RuntimeError(f"unexpected h2load output:\n{output}")
    failed = sum(int(counts.group(i)) for i in (2, 3, 4))
    return float(rps.group(1)), failed


def measure(mode: str, args: argparse.Namespace, data: Path, log: Path) -> Run:
    run = Run()
    limit = args.duration + 30
    with server_process(mode, args) as port:
        h2load(port, data, ["-n", "5000", "-c", str(args.clients), "-m", str(args.streams)],
               limit)
        out = h2load(port, data, ["-D", str(args.duration), "-c", str(args.clients),
                                  "-m", str(args.streams)], limit)
        run.rps, run.failed = parse_h2load(out)
        per_client = max(1, args.rate // args.clients)
        out = h2load(port, data, ["-D", str(args.duration), "-c", str(args.clients),
                                  "-m", str(args.latency_streams), "--rps", str(per_client),
                                  "--log-file", str(log)], limit)
        run.rate_achieved, failed = parse_h2load(out)
        run.failed += failed
    latencies = sorted(int(line.split("\t")[2]) / 1000 for line in log.read_text().splitlines()
                       if line.count("\t") == 2)
    if latencies:
        q = statistics.quantiles(latencies, n=1000, method="inclusive")
        run.p50_ms, run.p99_ms, run.p999_ms = q[499], q[989], q[998]
    return run


def report(results: dict[str, Run], args: argparse.Namespace) -> None:
    print(f"\nh2load -D {args.duration} -c {args.clients} -m {args.streams}; latency at "
          f"{args.rate} req/s (-c {args.clients} -m {args.latency_streams} "
          f"--rps {args.rate // args.clients}); Python {sys.version.split()[0]}"
          f"{', uvloop' if args.uvloop else ''}{', no eager start' if args.no_eager else ''}"
          f"{'' if PIN else ', not pinned'}"
          f"; store: {'redis' if args.redis else 'memory'}")
    print(f"{'server':8} {'req/s':>10} {'failed':>7} {'at rate':>9} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'p99.9 ms':>9}")
    for mode, r in results.items():
        print(f"{mode:8} {r.rps:10.0f} {r.failed:7d} {r.rate_achieved:9.0f} {r.p50_ms:8.3f} "
              f"{r.p99_ms:8.3f} {r.p999_ms:9.3f}")
    fast = results.get("fast")
    native = results.get("native")
    if fast and native and fast.rps:
        print(f"native/fast: {native.rps / fast.rps:.2f}x")
    for other in ("grpcio", "noop"):
        if fast and other in results and results[other].rps:
            print(f"fast/{other}: {fast.rps / results[other].rps:.2f}x")


@contextmanager
def redis_server(wanted: bool, folder: str) -> Iterator[None]:
    """A throw-away redis-server for the run, its URL passed to the servers through the
    environment; nothing when not wanted."""
    if not wanted:
        yield
        return
    port = free_port()
    proc = subprocess.Popen([*pinned(1), *redis_argv(redis_binary() or "redis-server", port,
                                                     folder)],
                            stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_port(port, proc)
        os.environ["BENCH_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        yield
    finally:
        os.environ.pop("BENCH_REDIS_URL", None)
        proc.terminate()
        proc.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per h2load run")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--streams", type=int, default=32)
    parser.add_argument("--rate", type=int, default=5000, help="req/s for the latency run")
    parser.add_argument("--latency-streams", type=int, default=1,
                        help="-m of the latency run; h2load's --rps pacing adds latency of its "
                             "own with -m > 1, whatever the server")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--uvloop", action="store_true", help="run the fast server on uvloop")
    parser.add_argument("--no-eager", action="store_true",
                        help="fast server: no eager start on Python 3.11 (a Task per call)")
    parser.add_argument("--no-pin", action="store_true",
                        help="let the OS place the server and h2load (grpcio then spreads its "
                             "threads over every CPU)")
    parser.add_argument("--redis", action="store_true",
                        help="count in a real redis-server started for the run (it shares the "
                             "second CPU with h2load), instead of the memory store")
    parser.add_argument("--serve", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        # Eager start runs a call's first step outside a Task: fine on the memory store, but
        # the Redis store's asyncio.timeout needs a current task.
        eager = not args.no_eager and not os.environ.get("BENCH_REDIS_URL")
        serve_main(args.serve, args.port, eager, args.uvloop)
        return 0
    global PIN
    PIN = not args.no_pin
    if shutil.which("h2load") is None:
        print("h2load not found (Debian package nghttp2-client)", file=sys.stderr)
        return 1
    results: dict[str, Run] = {}
    with tempfile.TemporaryDirectory() as tmp, redis_server(args.redis, tmp):
        data = Path(tmp, "request.bin")
        message = request_message()
        data.write_bytes(b"\x00" + len(message).to_bytes(4, "big") + message)
        for mode in args.modes.split(","):
            started = time.monotonic()
            results[mode] = measure(mode, args, data, Path(tmp, f"{mode}.log"))
            print(f"{mode}: {results[mode].rps:.0f} req/s ({time.monotonic() - started:.0f}s)",
                  file=sys.stderr)
    report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
