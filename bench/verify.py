"""Key verification beside plain checks, on the same limits, in one run (a benchmark, not a
test).

    .venv/bin/python bench/verify.py [--seconds 5] [--rate 1000] [--rate-seconds 5]
        [--store memory|redis] [--transport fast|grpcio] [--clients 4] [--streams 16]
        [--no-pin]

One full-mode sidecar (MODE=full, SQLite catalog in a temp dir) with one plan limit and one
rule of the same size (a huge fixed window, so every call is a real check that is allowed),
a customer and a key made through the admin API. Then, one after the other, h2load at
saturation for --seconds and at --rate requests/s for --rate-seconds (p50/p99 from h2load's
per-request log) on:

  REST   POST /v1/check {"namespace", "identifier"}          (HTTP/1.1, keep-alive)
  REST   POST /v1/keys/verify {"key"} with a keys:verify root key
  gRPC   ShouldRateLimit, one descriptor                       (HTTP/2)
  gRPC   envoy.service.auth.v3.Authorization/Check, x-api-key  (HTTP/2)

and prints each, with verify/check ratios measured in this run (the target: >= 0.8). Each
endpoint first answers one real call that must be allowed; every run must have no failure.
The sidecar is pinned to CPU 0, h2load to CPU 1 (--no-pin: the OS decides).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    Load,
    Processes,
    duration,
    grpc_frame,
    h2load,
    machine,
    need,
    ratio,
    rls_request,
    start_redis,
    start_sidecar,
)

ROOT_KEY = "bench-root-key-0123456789abcdefghijklmnopq"
HUGE = 1_000_000_000
# The same limit both ways: a plan's limits are charged atomically and never count refused
# requests, so the rule does the same (the same algorithm path in the engine and in Redis).
RULES = f"""\
domain: bench
atomic: true
count_rejected: false
descriptors:
  - key: identifier
    rate_limit: {{unit: hour, requests_per_unit: {HUGE}}}
"""
PLANS = f"""\
plans:
  bench:
    name: Bench
    limits:
      - {{name: per_hour, unit: hour, requests_per_unit: {HUGE}}}
"""
SERVER_CPU, LOAD_CPU = 0, 1
CHECK_PATH = "/envoy.service.auth.v3.Authorization/Check"
RLS_PATH = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"


def admin(port: int, path: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {ROOT_KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return dict(json.load(resp))


def check_request(key: str) -> bytes:
    from envoy.service.auth.v3 import external_auth_pb2 as authz

    request = authz.CheckRequest()
    request.attributes.request.http.headers["x-api-key"] = key
    request.attributes.request.http.path = "/orders"
    request.attributes.source.address.socket_address.address = "127.0.0.1"
    return bytes(request.SerializeToString())


def first_call_ok(port: int, key: str) -> None:
    """One real ext_authz Check through grpcio: must be allowed (status code 0)."""
    import grpc
    from envoy.service.auth.v3 import external_auth_pb2 as authz

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(CHECK_PATH, request_serializer=lambda m: m,
                                   response_deserializer=authz.CheckResponse.FromString)
        response = call(check_request(key), timeout=5)
    if response.status.code != 0:
        raise SystemExit(f"ext_authz refused the bench key: {response}")


def run(name: str, url: str, body: Path, args: argparse.Namespace, grpc: bool,
        headers: list[str], rate: bool, tmp: Path) -> Load:
    cpu = None if args.no_pin else LOAD_CPU
    extra = [arg for h in headers for arg in ("-H", h)]
    if not grpc:
        extra = ["--h1", *extra]
    if rate:
        clients = 10
        cmd = [*extra, "-c", str(clients), "-m", "1", "--rps", f"{args.rate / clients:g}",
               "-D", duration(args.rate_seconds)]
    else:
        cmd = [*extra, "-c", str(args.clients), "-m", str(args.streams if grpc else 1),
               "-D", duration(args.seconds)]
    load = h2load(url, cmd, data=body, cpu=cpu, log_file=tmp / f"{name}.log", grpc=grpc)
    if load.failed:
        raise SystemExit(f"{name}: {load.failed} failed requests")
    return load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--rate-seconds", type=float, default=5.0)
    parser.add_argument("--store", choices=("memory", "redis"), default="memory")
    parser.add_argument("--transport", choices=("fast", "grpcio"), default="fast")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args()
    need("h2load")
    print(f"# {machine()}; store {args.store}, transport {args.transport}")
    with Processes() as procs:
        config = procs.tmp / "config"
        config.mkdir()
        (config / "rules.yaml").write_text(RULES)
        (config / "plans.yaml").write_text(PLANS)
        redis = start_redis(procs, None if args.no_pin else LOAD_CPU) \
            if args.store == "redis" else None
        sidecar = start_sidecar(procs, config, args.transport, redis, env={
            "MODE": "full", "VIVA_DATA_DIR": str(procs.tmp / "data"),
            "VIVA_ROOT_KEY": ROOT_KEY, "VIVA_VERIFY_FAILURES_PER_MINUTE": "0"},
            cpu=None if args.no_pin else SERVER_CPU)
        customer = admin(sidecar.http_port, "/v1/customers", {"name": "Bench", "plan": "bench"})
        key = str(admin(sidecar.http_port, "/v1/keys", {"customer_id": customer["id"]})["key"])
        first_call_ok(sidecar.grpc_port, key)
        if admin(sidecar.http_port, "/v1/keys/verify", {"key": key})["code"] != "VALID":
            raise SystemExit("the bench key does not verify")
        bodies = {
            "check": json.dumps({"namespace": "bench", "identifier": "client-1"}).encode(),
            "verify": json.dumps({"key": key}).encode(),
            "rls": grpc_frame(rls_request("bench", [[("identifier", "client-1")]])),
            "ext_authz": grpc_frame(check_request(key)),
        }
        files = {}
        for name, data in bodies.items():
            files[name] = procs.tmp / f"{name}.body"
            files[name].write_bytes(data)
        http = f"http://127.0.0.1:{sidecar.http_port}"
        grpc = f"http://127.0.0.1:{sidecar.grpc_port}"
        json_header = ["content-type: application/json"]
        targets = {
            "check": (f"{http}/v1/check", False, json_header),
            "verify": (f"{http}/v1/keys/verify", False,
                       [*json_header, f"authorization: Bearer {ROOT_KEY}"]),
            "rls": (f"{grpc}{RLS_PATH}", True, []),
            "ext_authz": (f"{grpc}{CHECK_PATH}", True, []),
        }
        results: dict[tuple[str, bool], Load] = {}
        for rate in (False, True):
            for name, (url, is_grpc, headers) in targets.items():
                results[name, rate] = run(f"{name}-{rate}", url, files[name], args, is_grpc,
                                          headers, rate, procs.tmp)
        codes = sidecar.metric("viva_key_verifications_total", code="VALID")
        print(f"verifications counted VALID by the sidecar: {codes:.0f}")
    print(f"{'endpoint':<26}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'  at ' + format(args.rate, 'g') + '/s: p50':>18}{'p99 ms':>9}")
    for name, label in (("check", "REST /v1/check"), ("verify", "REST /v1/keys/verify"),
                        ("rls", "gRPC ShouldRateLimit"), ("ext_authz", "gRPC ext_authz Check")):
        sat, paced = results[name, False], results[name, True]
        print(f"{label:<26}{sat.rps:>10.0f}{sat.p50:>9.2f}{sat.p99:>9.2f}"
              f"{paced.p50:>18.2f}{paced.p99:>9.2f}")
    rest = ratio(results["verify", False].rps, results["check", False].rps)
    grpc = ratio(results["ext_authz", False].rps, results["rls", False].rps)
    print(f"verify / check (REST): {rest};  ext_authz / ShouldRateLimit (gRPC): {grpc}  "
          "(target >= 0.8)")


if __name__ == "__main__":
    main()
