"""Key verification with usage counting on, beside the same with it off, in one run (a
benchmark, not a test).

    .venv/bin/python bench/usage.py [--seconds 5] [--rounds 2] [--store memory|redis]
        [--transport fast|grpcio] [--clients 4] [--streams 16] [--no-pin]

Full mode (SQLite catalog, the plan and key of bench/verify.py: one huge limit, every call a
real allowed check). Each round starts a sidecar with VIVA_USAGE=false, then one with
VIVA_USAGE=true (the same settings otherwise, flush every 10 s), and drives each at
saturation with h2load for --seconds on

  gRPC   envoy.service.auth.v3.Authorization/Check, x-api-key  (HTTP/2)
  REST   POST /v1/keys/verify {"key"}                          (HTTP/1.1, keep-alive)
  REST   POST /v1/check in a namespace nobody owns             (HTTP/1.1, keep-alive)
  REST   POST /v1/check in a namespace the customer owns       (counted with usage on)

then prints calls/s of each, the on/off ratio (the target: >= 0.9), and, for the runs with
counting on, that the ledger holds exactly the verifications the sidecar made (its own
``viva_key_verifications_total``; h2load's count leaves out the calls in flight when it
stops) and exactly the checks it decided in the owned namespace (the rule's
``ratelimit_service_rate_limit_total_hits``): the sidecar is stopped with SIGTERM (which
writes its last batch) and the SQLite ledger is summed. The sidecar is pinned
to CPU 0, h2load to CPU 1 (--no-pin: the OS decides). Rounds alternate off/on so a drift of
the machine during the run weighs on both.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Processes, grpc_frame, machine, need, ratio, start_redis, start_sidecar
from verify import (
    CHECK_PATH,
    LOAD_CPU,
    PLANS,
    ROOT_KEY,
    RULES,
    SERVER_CPU,
    admin,
    check_request,
    first_call_ok,
    run,
)

ENDPOINTS = ("ext_authz", "verify", "check", "check_owned")
LABELS = {"ext_authz": "gRPC ext_authz Check", "verify": "REST /v1/keys/verify",
          "check": "REST /v1/check", "check_owned": "/v1/check, owned"}
OWNED = "bench_owned"  # a second domain with the rules of bench/verify.py's, owned


def measure(procs: Processes, args: argparse.Namespace, config: Path, redis: str | None,
            usage: bool, tag: str) -> tuple[dict[str, float], int | None]:
    """One sidecar: calls/s per endpoint; with usage on, the decisions in its ledger."""
    data = procs.tmp / f"data-{tag}"
    sidecar = start_sidecar(procs, config, args.transport, redis, env={
        "MODE": "full", "VIVA_DATA_DIR": str(data), "VIVA_ROOT_KEY": ROOT_KEY,
        "VIVA_VERIFY_FAILURES_PER_MINUTE": "0", "VIVA_USAGE": str(usage).lower(),
        "VIVA_SHUTDOWN_GRACE": "10s"},
        cpu=None if args.no_pin else SERVER_CPU, name=f"sidecar-{tag}")
    customer = admin(sidecar.http_port, "/v1/customers", {"name": "Bench", "plan": "bench",
                                                          "namespaces": [OWNED]})
    key = str(admin(sidecar.http_port, "/v1/keys", {"customer_id": customer["id"]})["key"])
    first_call_ok(sidecar.grpc_port, key)
    if admin(sidecar.http_port, "/v1/keys/verify", {"key": key})["code"] != "VALID":
        raise SystemExit("the bench key does not verify")
    bodies = {"ext_authz": grpc_frame(check_request(key)),
              "verify": json.dumps({"key": key}).encode(),
              "check": json.dumps({"namespace": "bench", "identifier": "b"}).encode(),
              "check_owned": json.dumps({"namespace": OWNED, "identifier": "b"}).encode()}
    check = (f"http://127.0.0.1:{sidecar.http_port}/v1/check", False,
             ["content-type: application/json"])
    targets = {"ext_authz": (f"http://127.0.0.1:{sidecar.grpc_port}{CHECK_PATH}", True, []),
               "verify": (f"http://127.0.0.1:{sidecar.http_port}/v1/keys/verify", False,
                          ["content-type: application/json",
                           f"authorization: Bearer {ROOT_KEY}"]),
               "check": check, "check_owned": check}
    rps: dict[str, float] = {}
    for name in ENDPOINTS:
        body = procs.tmp / f"{name}-{tag}.body"
        body.write_bytes(bodies[name])
        url, is_grpc, headers = targets[name]
        load = run(f"{name}-{tag}", url, body, args, is_grpc, headers, False, procs.tmp)
        rps[name] = load.rps
    made = int(sidecar.metric("viva_key_verifications_total"))
    checked = int(sidecar.metric("ratelimit_service_rate_limit_total_hits_total", domain=OWNED))
    procs.stop(sidecar.proc, timeout=30)  # SIGTERM: the last usage batch is written
    if not usage:
        return rps, None
    with sqlite3.connect(data / "viva.db") as db:
        counted = dict(db.execute(
            "SELECT key_id = '', coalesce(sum(decisions), 0) FROM usage_counts "
            "GROUP BY key_id = ''").fetchall())
    verified, owned = int(counted.get(0, 0)), int(counted.get(1, 0))
    if (verified, owned) != (made, checked):
        raise SystemExit(f"the ledger holds {verified} verifications and {owned} owned checks "
                         f"for {made} and {checked} decided")
    return rps, made + checked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--store", choices=("memory", "redis"), default="memory")
    parser.add_argument("--transport", choices=("fast", "grpcio"), default="fast")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args()
    need("h2load")
    print(f"# {machine()}; store {args.store}, transport {args.transport}")
    results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    with Processes() as procs:
        config = procs.tmp / "config"
        config.mkdir()
        (config / "rules.yaml").write_text(RULES)
        (config / "owned.yaml").write_text(RULES.replace("domain: bench", f"domain: {OWNED}"))
        (config / "plans.yaml").write_text(PLANS)
        redis = start_redis(procs, None if args.no_pin else LOAD_CPU) \
            if args.store == "redis" else None
        for n in range(args.rounds):
            for usage in (False, True):
                rps, counted = measure(procs, args, config, redis, usage,
                                       f"{n}-{'on' if usage else 'off'}")
                results[usage].append(rps)
                extra = f"; ledger = {counted} decisions, exactly" if counted else ""
                print(f"round {n + 1}, usage {'on ' if usage else 'off'}: " + ", ".join(
                    f"{name} {rps[name]:.0f}/s" for name in ENDPOINTS) + extra)
    print(f"{'endpoint':<24}{'off req/s':>11}{'on req/s':>11}{'on/off':>8}")
    for name, label in LABELS.items():
        off = sum(r[name] for r in results[False]) / len(results[False])
        on = sum(r[name] for r in results[True]) / len(results[True])
        print(f"{label:<24}{off:>11.0f}{on:>11.0f}{ratio(on, off):>8}")
    print("(mean of the rounds; target on/off >= 0.9)")


if __name__ == "__main__":
    main()
