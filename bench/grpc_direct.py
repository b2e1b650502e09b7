"""gRPC straight at the rate-limit port, beside a no-op grpcio servicer (a benchmark, not a test).

    .venv/bin/python bench/grpc_direct.py [--seconds 6] [--rate-seconds 4]
        [--rates 500,1000,2000] [--stores memory,redis] [--transports fast,grpcio]
        [--clients 4] [--streams 16] [--workers 1,2] [--rounds 1] [--no-pin] [--profile]

In one run, one after the other, each server alone on its own process:
  noop                 a grpc.aio servicer answering a constant OK RateLimitResponse: the floor,
                       what grpcio costs with nothing to compute (bench/common.py noop-rls)
  ours <transport>/<store>
                       `python -m sidecar serve --transport T` on the memory store, or on a
                       redis-server started for the run (BACKEND_TYPE=redis)
Each is loaded with h2load and one prepared frame (a 5-byte gRPC prefix and a serialized
RateLimitRequest with one descriptor, under a rule with a huge limit, so every call is a real
check that is allowed): first at saturation (-c/-m for --seconds), then at fixed rates
(-c 4 -m 1 --rps rate/4 for --rate-seconds each), percentiles from h2load's per-request log.
h2load only sees HTTP/2 statuses, so each server first answers one real call through grpcio
(must be OK) and afterwards the sidecar's error counter must still be 0.

The server is pinned to CPU 0; h2load (and redis-server) to CPU 1 (--no-pin: the OS decides;
a sidecar with --workers above 1 is never pinned, its workers share the machine's CPUs).
Prints req/s and latency per server and the ratios ours/noop measured in this run. With
--profile, one more saturation run per sidecar under `py-spy record --nonblocking` prints where
its CPU goes (self time by area and by frame) and each thread's share of the CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    RLS_PATH,
    Load,
    Processes,
    Sidecar,
    check_once,
    duration,
    grpc_frame,
    h2load,
    machine,
    need,
    ratio,
    rls_request,
    start_noop,
    start_profile,
    start_redis,
    start_sidecar,
    summarise_profile,
    thread_split,
    thread_ticks,
    write_rules,
)

RULES = """\
domain: bench
descriptors:
  - key: client
    rate_limit: {unit: second, requests_per_unit: 1000000000}
"""
SERVER_CPU, LOAD_CPU = 0, 1
PROFILED = ("ShouldRateLimit (sidecar", "Method.decide", "Engine.should_rate_limit",
            "descriptors_from_proto", "ResponseBuilder.build", "prometheus_client", "sidecar/h2",
            "redis/")


@dataclass
class Result:
    name: str
    store: str
    saturation: list[Load] = field(default_factory=list)  # one per round
    at_rate: dict[int, list[Load]] = field(default_factory=dict)
    threads: str = ""
    errors: dict[str, float] = field(default_factory=dict)  # the sidecar's, by err_type
    warmup_errors: float = 0.0  # the same, during the warm-up (first connections to Redis)
    calls: float = 0.0  # calls the sidecar counted

    @property
    def rps(self) -> float:
        return statistics.median(r.rps for r in self.saturation)

    def latency(self, rate: int) -> Load:
        """The round with the median p99 at ``rate``."""
        runs = sorted(self.at_rate[rate], key=lambda r: r.p99)
        return runs[len(runs) // 2]


@dataclass
class Target:
    name: str
    store: str  # "-" for the no-op servicer
    transport: str = ""
    workers: int = 1  # --workers of the sidecar (more than one: not pinned, Redis only)

    @property
    def ours(self) -> bool:
        return self.store != "-"


@contextmanager
def server(target: Target, procs: Processes, rules: Path, redis_url: str | None,
           args: argparse.Namespace) -> Iterator[tuple[int, int, Sidecar | None]]:
    """(port, pid, sidecar or None) of the target, stopped on leaving."""
    cpu = None if args.no_pin or target.workers > 1 else SERVER_CPU
    if not target.ours:
        port, pid = start_noop(procs, cpu=cpu)
        try:
            yield port, pid, None
        finally:
            for _, proc in [p for p in procs.procs if p[1].pid == pid]:
                procs.stop(proc)
        return
    sidecar = start_sidecar(procs, rules, transport=target.transport,
                            redis_url=redis_url if target.store == "redis" else None, cpu=cpu,
                            workers=target.workers, env=dict(e.split("=", 1) for e in args.env))
    try:
        yield sidecar.grpc_port, sidecar.proc.pid, sidecar
    finally:
        procs.stop(sidecar.proc)


def measure(target: Target, result: Result, procs: Processes, rules: Path, data: Path,
            message: bytes, redis_url: str | None, args: argparse.Namespace) -> None:
    load_cpu = LOAD_CPU if not args.no_pin else None
    with server(target, procs, rules, redis_url, args) as (port, pid, sidecar):
        code = check_once(port, message)
        if code != 1:
            raise RuntimeError(f"{target.name}: overall_code {code}, expected OK (1)")
        url = f"http://127.0.0.1:{port}{RLS_PATH}"
        h2load(url, ["-n", "3000", "-c", str(args.clients), "-m", str(args.streams)], data,
               load_cpu)  # warm-up
        before_errors = errors(sidecar) if sidecar else {}
        result.warmup_errors += sum(before_errors.values())
        before, started = thread_ticks(pid), time.monotonic()
        sat = h2load(url, ["-D", duration(args.seconds), "-c", str(args.clients),
                           "-m", str(args.streams)], data, load_cpu)
        result.threads = thread_split(before, thread_ticks(pid), pid,
                                      time.monotonic() - started)
        result.saturation.append(sat)
        for rate in args.rates:
            run = h2load(url, ["-D", duration(args.rate_seconds), "-c", "4", "-m", "1",
                               "--rps", str(max(1, rate // 4))], data, load_cpu,
                         log_file=procs.tmp / "latency.log")
            result.at_rate.setdefault(rate, []).append(run)
        if sidecar is not None:
            result.calls += sidecar.metric("ratelimit_service_total_requests_total")
            for kind, n in errors(sidecar).items():
                n -= before_errors.get(kind, 0.0)
                if n:
                    result.errors[kind] = result.errors.get(kind, 0.0) + n
        if args.profile and target.ours:
            profile(target, url, pid, data, procs, load_cpu, args)


def errors(sidecar: Sidecar) -> dict[str, float]:
    """The sidecar's error counters by err_type."""
    return {kind: sidecar.metric("ratelimit_service_should_rate_limit_error_total",
                                 err_type=kind)
            for kind in ("service_error", "redis_error", "no_config", "internal")}


def profile(target: Target, url: str, pid: int, data: Path, procs: Processes,
            load_cpu: int | None, args: argparse.Namespace) -> None:
    raw = procs.tmp / f"profile-{target.transport}-{target.store}.txt"
    spy = start_profile(procs, pid, args.seconds, raw, rate=args.profile_rate)
    time.sleep(0.5)  # py-spy attaches
    load = h2load(url, ["-D", duration(args.seconds), "-c", str(args.clients),
                        "-m", str(args.streams)], data, load_cpu)
    spy.wait(args.seconds + 30)
    procs.stop(spy)
    summary = summarise_profile(raw, PROFILED)
    print(f"\n-- profile of {target.name} under saturation ({load.rps:,.0f} req/s while "
          f"sampled), py-spy {args.profile_rate} Hz, non-blocking --")
    print("\n".join(summary.lines()))
    if args.keep_profiles:
        dest = Path(args.keep_profiles) / raw.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(raw.read_bytes())
        print(f"raw stacks: {dest}")


def report(results: list[Result], args: argparse.Namespace) -> None:
    noop = next((r for r in results if r.store == "-"), None)
    print(f"\n{machine()}; h2load -c {args.clients} -m {args.streams} for {args.seconds:g}s; "
          f"{'server on CPU 0, h2load and redis on CPU 1' if not args.no_pin else 'not pinned'}"
          f"; rounds: {args.rounds} (medians)")
    print(f"{'server':22} {'store':6} {'req/s':>9} {'failed':>6} {'ours/noop':>9}  "
          "CPU by thread during saturation")
    for r in results:
        failed = sum(s.failed for s in r.saturation)
        rel = ratio(r.rps, noop.rps) if noop and r is not noop else ""
        print(f"{r.name:22} {r.store:6} {r.rps:9,.0f} {failed:6d} {rel:>9}  {r.threads}")
    print(f"\nlatency at fixed rates (-c 4 -m 1 --rps rate/4, {args.rate_seconds:g}s each); "
          "ms; p99 ours/noop")
    print(f"{'server':22} {'store':6} {'rate':>5} {'achieved':>8} {'p50':>7} {'p99':>7} "
          f"{'p99.9':>7} {'p99 ratio':>9}")
    for r in results:
        for rate in args.rates:
            lat = r.latency(rate)
            rel = ratio(lat.p99, noop.latency(rate).p99) if noop and r is not noop else ""
            print(f"{r.name:22} {r.store:6} {rate:5d} {lat.rps:8,.0f} {lat.p50:7.3f} "
                  f"{lat.p99:7.3f} {lat.p999:7.3f} {rel:>9}")
    for r in results:
        if r.errors:
            kinds = ", ".join(f"{n:.0f} {k}" for k, n in r.errors.items())
            print(f"WARNING: {r.name}/{r.store} answered {kinds} out of {r.calls:,.0f} calls "
                  "(errors, not checks: h2load counts them as successes)")
        if r.warmup_errors:
            print(f"note: {r.name}/{r.store} answered {r.warmup_errors:.0f} errors during the "
                  "warm-up (3,000 calls on a fresh process), not counted above")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="saturation run length")
    parser.add_argument("--rate-seconds", type=float, default=4.0,
                        help="length of each fixed-rate run")
    parser.add_argument("--rates", default="500,1000,2000",
                        type=lambda s: [int(x) for x in s.split(",") if x])
    parser.add_argument("--stores", default="memory,redis")
    parser.add_argument("--transports", default="fast,grpcio")
    parser.add_argument("--clients", type=int, default=4, help="h2load -c at saturation")
    parser.add_argument("--streams", type=int, default=16, help="h2load -m at saturation")
    parser.add_argument("--workers", default="1",
                        type=lambda s: [int(x) for x in s.split(",") if x],
                        help="sidecar worker counts to measure, e.g. 1,2 (more than one: Redis "
                             "only, not pinned)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the whole sequence; medians are reported")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the sidecar, e.g. REDIS_TIMEOUT=50ms (repeatable)")
    parser.add_argument("--profile", action="store_true",
                        help="one more saturation run per sidecar under py-spy")
    parser.add_argument("--profile-rate", type=int, default=200, help="py-spy samples/s")
    parser.add_argument("--keep-profiles", metavar="DIR", help="copy py-spy's raw stacks here")
    args = parser.parse_args()
    need("h2load", *(("redis-server",) if "redis" in args.stores else ()))
    targets = [Target("noop (grpc.aio)", "-")]
    for store in args.stores.split(","):
        for transport in args.transports.split(","):
            for workers in args.workers:
                if workers > 1 and store != "redis":
                    continue  # the memory store refuses several workers
                name = f"ours {transport}" + (f" x{workers}" if workers > 1 else "")
                targets.append(Target(name, store, transport, workers))
    results = {id(t): Result(t.name, t.store) for t in targets}
    message = rls_request("bench", [[("client", "bench")]])
    with Processes() as procs:
        rules = write_rules(procs.tmp / "rules", RULES)
        data = procs.tmp / "request.bin"
        data.write_bytes(grpc_frame(message))
        redis_url = (start_redis(procs, cpu=None if args.no_pin else LOAD_CPU)
                     if "redis" in args.stores else None)
        for _ in range(args.rounds):
            for target in targets:
                started = time.monotonic()
                measure(target, results[id(target)], procs, rules, data, message, redis_url,
                        args)
                print(f"{target.name} {target.store}: "
                      f"{results[id(target)].saturation[-1].rps:,.0f} req/s "
                      f"({time.monotonic() - started:.0f}s)", file=sys.stderr, flush=True)
    report([results[id(t)] for t in targets], args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
