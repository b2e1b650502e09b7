"""Forward-auth through a real nginx: nginx with ``auth_request`` to our /v1/forward-auth,
against the same nginx without it (a benchmark).

    .venv/bin/python bench/forward_auth.py [--seconds 8] [--rate-seconds 5] [--rates 1000]
        [--store memory|redis] [--no-pin]

nginx (one worker) serves the application itself (a fixed 200) and, with auth_request,
asks the sidecar on every request first, as the README's nginx example does (keep-alive to the
sidecar, the identifier from the client's address). No peer has an nginx to compare with, so
the figure is the ratio to the same nginx without the subrequest: what rate limiting costs a
site behind nginx. The sidecar runs on the native path (the fast HTTP/1.1 path answering
forward-auth inside Rust, with the native engine) and, for comparison, with
``VIVA_REST_FAST=0`` (aiohttp answering, over the same engine); limits are never reached
(every request must pass).

nginx and the sidecar share CPU 0 (the server side of one site), wrk (keep-alive, 10
connections) and redis-server CPU 1.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    Load,
    Processes,
    duration,
    free_port,
    h2load,
    machine,
    native_built,
    need,
    start_redis,
    start_sidecar,
    wait_port,
    write_rules,
    wrk,
)

from tests.transports.rest.nginx import BACKEND, MAIN, SITE, nginx_binary

SERVER_CPU, LOAD_CPU = 0, 1
RULES = """\
domain: api_requests
descriptors:
  - key: identifier
    rate_limit: {unit: second, requests_per_unit: 1000000000}
"""
# The same site without the subrequest: the application straight behind nginx.
PLAIN_SITE = """
server {{
    listen 127.0.0.1:{port};
    location / {{
        proxy_pass http://127.0.0.1:{backend_port};
    }}
}}
"""


@dataclass
class Result:
    name: str
    saturation: Load = field(default_factory=Load)
    at_rate: dict[int, Load] = field(default_factory=dict)


def start_nginx(procs: Processes, name: str, sidecar_port: int | None,
                cpu: int | None) -> int:
    binary = nginx_binary()
    if binary is None:
        raise SystemExit("nginx not found (Debian package nginx)")
    folder = procs.tmp / name
    folder.mkdir()
    folder.chmod(0o755)
    port, backend_port = free_port(), free_port()
    site = PLAIN_SITE.format(port=port, backend_port=backend_port) if sidecar_port is None \
        else SITE.format(sidecar_port=sidecar_port, port=port, backend_port=backend_port,
                         auth_query="?deny_status=403")
    conf = folder / "nginx.conf"
    conf.write_text(MAIN.format(dir=folder, site=site,
                                backend=BACKEND.format(backend_port=backend_port))
                    .replace("worker_connections 64", "worker_connections 1024"))
    command = [binary, "-p", str(folder), "-c", str(conf), "-e", str(folder / "error.log")]
    subprocess.run([*command, "-t"], check=True, capture_output=True)
    proc = procs.start(name, command, cpu=cpu)
    wait_port(port, proc)
    return port


def measure(procs: Processes, name: str, port: int, args: argparse.Namespace,
            cpu: int | None) -> Result:
    url = f"http://127.0.0.1:{port}/"
    wrk(url, 2, 10, cpu=cpu)  # warm-up
    result = Result(name, wrk(url, args.seconds, 10, cpu=cpu))
    if result.saturation.failed:
        raise RuntimeError(f"{name}: {result.saturation.failed} requests did not pass")
    for rate in args.rates:
        result.at_rate[rate] = h2load(url, ["--h1", "-D", duration(args.rate_seconds), "-c", "4",
                                            "-m", "1", "--rps", str(max(1, rate // 4))],
                                      None, cpu, log_file=procs.tmp / "latency.log",
                                      grpc=False)
    return result


def run(args: argparse.Namespace) -> None:
    need("wrk", "h2load")
    server_cpu = None if args.no_pin else SERVER_CPU
    load_cpu = None if args.no_pin else LOAD_CPU
    results: list[Result] = []
    with Processes() as procs:
        redis_url = start_redis(procs, cpu=load_cpu) if args.store == "redis" else None
        rules = write_rules(procs.tmp / "rules", RULES)
        plain = start_nginx(procs, "nginx-plain", None, server_cpu)
        results.append(measure(procs, "nginx alone", plain, args, load_cpu))
        for fast in ("1", "0"):
            sidecar = start_sidecar(procs, rules, redis_url=redis_url, cpu=server_cpu,
                                    env={"VIVA_REST_FAST": fast}, name=f"sidecar-{fast}")
            port = start_nginx(procs, f"nginx-auth-{fast}", sidecar.http_port, server_cpu)
            path = ("aiohttp, sidecar._native not built" if not native_built() else
                    "fast path, native engine" if fast == "1" else
                    "VIVA_REST_FAST=0, native engine")
            results.append(measure(procs, f"nginx + auth_request ({path})", port, args,
                                   load_cpu))
            checked = sidecar.metric("ratelimit_service_total_requests_total",
                                     grpc_method="forward_auth")
            if checked < results[-1].saturation.requests:
                raise RuntimeError(f"the sidecar checked {checked:.0f} of "
                                   f"{results[-1].saturation.requests} requests")
            procs.stop(sidecar.proc)
    pinning = "not pinned" if args.no_pin else "nginx and the sidecar on CPU 0, wrk on CPU 1"
    print(f"\n{machine()}; {pinning}; store: {args.store}")
    print(f"{'':56} {'req/s':>9} {'/alone':>7}"
          + "".join(f" {'p50@' + str(r):>9} {'p99@' + str(r):>9}" for r in args.rates))
    alone = results[0].saturation.rps
    for r in results:
        cells = "".join(f" {r.at_rate[rate].p50:8.2f}m {r.at_rate[rate].p99:8.2f}m"
                        for rate in args.rates)
        print(f"{r.name:56} {r.saturation.rps:9,.0f} {r.saturation.rps / alone:7.2f}{cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate-seconds", type=float, default=5.0)
    parser.add_argument("--rates", default="1000",
                        type=lambda s: [int(x) for x in s.split(",") if x])
    parser.add_argument("--store", choices=("memory", "redis"), default="memory")
    parser.add_argument("--no-pin", action="store_true")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
