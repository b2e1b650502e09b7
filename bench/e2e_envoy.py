"""HTTP through a real Envoy whose rate-limit filter asks the sidecar on Redis, beside the same
Envoy asking a no-op servicer and the same Envoy with no rate-limit filter (a benchmark).

    .venv/bin/python bench/e2e_envoy.py [--seconds 10] [--connections 10] [--rate 1000]
        [--rate-seconds 5] [--transports fast,grpcio] [--workers 1] [--envoy-concurrency 1]

Every process runs on loopback, started for the run and stopped at its end: a redis-server,
the sidecar (`python -m sidecar serve`, BACKEND_TYPE=redis, once per --transports), the no-op
grpc.aio RateLimitService of bench/common.py, and, one after the other, an Envoy per target
built from deploy/envoy/envoy.yaml (its ports moved to free ones):
  ours <transport>  the filter's `ratelimit` cluster points at the sidecar
  noop              it points at the no-op servicer: the floor of a grpcio rate-limit service
  no filter         envoy.filters.http.ratelimit removed: the proxy's own ceiling
The shipped route actions send two descriptors per request, (remote_address, 127.0.0.1) and
(path, /); the bench's rules give both a limit of 10^9 per second, so every request is checked
and allowed (a check, not a 429). For each target: `wrk --latency` for --seconds (req/s, p50,
p99 from wrk), then `h2load --h1` at a fixed --rate for --rate-seconds (percentiles from its
per-request log), so the latency the check adds is measured where it is not saturated.
Envoy's own counters (cluster.backend.ratelimit.ok/error/failure_mode_allowed) must show that
every request was checked: Envoy lets a request through unchecked when the service fails
(failure_mode_deny: false), which would flatter the figures.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    BOOT_ADMIN,
    BOOT_BACKEND,
    BOOT_LISTENER,
    BOOT_RLS,
    ENVOY_BOOTSTRAP,
    PYTHON,
    CpuMeter,
    Load,
    Processes,
    free_port,
    h2load,
    machine,
    need,
    ratio,
    start_noop,
    start_redis,
    start_sidecar,
    wait_port,
    write_rules,
    wrk,
)

RULES = """\
domain: example
descriptors:
  - key: remote_address
    rate_limit: {unit: second, requests_per_unit: 1000000000}
  - key: path
    rate_limit: {unit: second, requests_per_unit: 1000000000}
"""
ENVOY = str(Path(PYTHON).parent / "envoy")
RATELIMIT_FILTER = "envoy.filters.http.ratelimit"


@dataclass
class Result:
    name: str
    saturated: Load = field(default_factory=Load)
    at_rate: Load = field(default_factory=Load)
    checks: dict[str, int] = field(default_factory=dict)  # Envoy's ratelimit.* counters
    cpu: str = ""  # each process' share of a core during the wrk run


def bootstrap(rls_port: int | None, admin: int, listener: int) -> str:
    """The shipped bootstrap on free ports; without the rate-limit filter when no RLS port."""
    doc = yaml.safe_load(ENVOY_BOOTSTRAP.read_text())
    ports = {BOOT_ADMIN: admin, BOOT_LISTENER: listener, BOOT_BACKEND: free_port(),
             BOOT_RLS: rls_port or free_port()}
    seen: set[int] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            port = node.get("port_value")
            if port in ports:
                node["port_value"] = ports[port]
                seen.add(port)
            if rls_port is None and isinstance(node.get("http_filters"), list):
                node["http_filters"] = [f for f in node["http_filters"]
                                        if f.get("name") != RATELIMIT_FILTER]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(doc)
    if set(ports) != seen:
        raise RuntimeError(f"ports {sorted(set(ports) - seen)} not in {ENVOY_BOOTSTRAP}")
    doc["static_resources"]["listeners"][0]["address"]["socket_address"]["address"] = \
        "127.0.0.1"  # loopback only
    return str(yaml.safe_dump(doc, sort_keys=False))


def envoy_stats(admin: int) -> dict[str, int]:
    url = f"http://127.0.0.1:{admin}/stats?filter=ratelimit"
    with urllib.request.urlopen(url, timeout=5) as resp:
        lines = resp.read().decode().splitlines()
    out = {}
    for line in lines:
        name, _, value = line.partition(": ")
        if name.startswith("cluster.backend.ratelimit.") and value.strip().isdigit():
            out[name.rsplit(".", 1)[1]] = int(value)
    return out


def wait_ready(admin: int, proc: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"envoy exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=1) as r:
                if r.read().strip() == b"LIVE":
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError("envoy not ready")


def measure(name: str, rls: tuple[int, int] | None, procs: Processes, others: dict[str, int],
            args: argparse.Namespace) -> Result:
    """One target: ``rls`` is the (port, pid) of the rate-limit service, None for no filter;
    ``others`` the pids whose CPU is also shown (Redis)."""
    rls_port = rls[0] if rls else None
    admin, listener = free_port(), free_port()
    config = procs.tmp / f"envoy-{listener}.yaml"
    config.write_text(bootstrap(rls_port, admin, listener))
    proc = procs.start(f"envoy-{listener}", [
        ENVOY, "-c", str(config), "--use-dynamic-base-id", "--concurrency",
        str(args.envoy_concurrency), "-l", "warning"], cwd=procs.tmp)
    result = Result(name)
    try:
        wait_ready(admin, proc)
        wait_port(listener, proc)
        url = f"http://127.0.0.1:{listener}/"
        wrk(url, 2, args.connections)  # warm-up: connections, Redis keys, caches
        pids = {"envoy": proc.pid, **({"rls": rls[1]} if rls else {}), **others}
        meter = CpuMeter(pids)
        meter.start()
        result.saturated = wrk(url, args.seconds, args.connections)
        meter.stop("wrk")
        result.cpu = meter.line()
        per_client = max(1, args.rate // 4)
        result.at_rate = h2load(url, ["--h1", "-c", "4", "--rps", str(per_client),
                                      "-D", f"{round(args.rate_seconds * 1000)}ms"],
                                grpc=False, log_file=procs.tmp / "latency.log")
        if rls_port is not None:
            result.checks = envoy_stats(admin)
    finally:
        procs.stop(proc)
    return result


def report(results: list[Result], args: argparse.Namespace) -> None:
    by_name = {r.name: r for r in results}
    noop, bare = by_name.get("noop"), by_name.get("no filter")
    print(f"\n{machine()}; Envoy 1.40 --concurrency {args.envoy_concurrency}; sidecar on the "
          f"{args.store} store{f', {args.workers} workers' if args.workers > 1 else ''}; "
          "nothing pinned")
    print(f"wrk -t 1 -c {args.connections} -d {args.seconds:g}s --latency (ms):")
    print(f"{'target':14} {'req/s':>9} {'p50':>7} {'p99':>7} {'failed':>6} {'/noop':>6} "
          f"{'/no filter':>10}  checks (Envoy: ok / error / failure_mode_allowed)")
    for r in results:
        s = r.saturated
        checks = (f"{r.checks.get('ok', 0):,} / {r.checks.get('error', 0):,} / "
                  f"{r.checks.get('failure_mode_allowed', 0):,}" if r.checks else "-")
        rel_noop = ratio(s.rps, noop.saturated.rps) if noop and r.name.startswith("ours") else ""
        rel_bare = ratio(s.rps, bare.saturated.rps) if bare and r is not bare else ""
        print(f"{r.name:14} {s.rps:9,.0f} {s.p50:7.3f} {s.p99:7.3f} {s.failed:6d} "
              f"{rel_noop:>6} {rel_bare:>10}  {checks}")
    print("CPU during wrk (share of one core; 2 cores in all):")
    for r in results:
        print(f"  {r.name:14} {r.cpu}")
    print(f"\nh2load --h1 -c 4 at {args.rate} req/s for {args.rate_seconds:g}s (ms); added = "
          "this target minus no filter:")
    print(f"{'target':14} {'achieved':>8} {'p50':>7} {'p99':>7} {'p99.9':>7} {'+p50':>7} "
          f"{'+p99':>7} {'failed':>6}")
    for r in results:
        a = r.at_rate
        add50 = f"{a.p50 - bare.at_rate.p50:+7.3f}" if bare and r is not bare else ""
        add99 = f"{a.p99 - bare.at_rate.p99:+7.3f}" if bare and r is not bare else ""
        print(f"{r.name:14} {a.rps:8,.0f} {a.p50:7.3f} {a.p99:7.3f} {a.p999:7.3f} {add50:>7} "
              f"{add99:>7} {a.failed:6d}")
    unchecked = [r.name for r in results if r.checks and (r.checks.get("error", 0) or
                                                          r.checks.get("failure_mode_allowed", 0))]
    if unchecked:
        print(f"WARNING: {', '.join(unchecked)}: some requests passed unchecked (see errors)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk run length")
    parser.add_argument("--connections", type=int, default=10, help="wrk -c")
    parser.add_argument("--rate", type=int, default=1000, help="req/s of the latency run")
    parser.add_argument("--rate-seconds", type=float, default=5.0)
    parser.add_argument("--transports", default="fast,grpcio",
                        help="the sidecar's gRPC transports to measure")
    parser.add_argument("--store", choices=("redis", "memory"), default="redis",
                        help="the sidecar's counter store (memory: to tell Redis' share apart)")
    parser.add_argument("--workers", type=int, default=1, help="sidecar --workers")
    parser.add_argument("--envoy-concurrency", type=int, default=1)
    args = parser.parse_args()
    need("wrk", "h2load", "redis-server", ENVOY)
    results = []
    with Processes() as procs:
        rules = write_rules(procs.tmp / "rules", RULES)
        redis_url = start_redis(procs)
        redis = {"redis": procs.procs[-1][1].pid}
        targets: list[tuple[str, tuple[int, int] | None]] = []
        for transport in args.transports.split(","):
            sidecar = start_sidecar(procs, rules, transport=transport,
                                    redis_url=redis_url if args.store == "redis" else None,
                                    workers=args.workers, name=f"sidecar-{transport}")
            targets.append((f"ours {transport}", (sidecar.grpc_port, sidecar.proc.pid)))
        targets += [("noop", start_noop(procs)), ("no filter", None)]
        for name, rls in targets:
            started = time.monotonic()
            results.append(measure(name, rls, procs, redis if rls and name.startswith("ours")
                                   else {}, args))
            print(f"{name}: {results[-1].saturated.rps:,.0f} req/s "
                  f"({time.monotonic() - started:.0f}s)", file=sys.stderr, flush=True)
    report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
