"""How long the dashboard's pages take to render with a realistic catalog (a benchmark, not a
test).

    .venv/bin/python bench/dashboard.py [--customers 1000] [--days 30] [--repeat 20]

One full-mode sidecar in this process (SQLite catalog in a temp dir, memory store), seeded
through the product's own paths: --customers customers on three plans, each with a key,
created by the catalog's transactions (the tables the admin API writes), and --days of
hourly decisions for every customer fed to the pages' usage source (LiveDecisions, the
Verifier listener, until the usage ledger replaces it; then this seeds the ledger). Then,
signed in with a root key, GET each page --repeat times over loopback HTTP and print the
median, p95 and max time to the last byte (an upper bound of the time spent in the server).
The target: the overview under 300 ms for every period.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sidecar.app import Sidecar
from sidecar.management import schemas as s
from sidecar.management.catalog import Actor
from sidecar.settings import Settings
from tests.support.ports import free_port

ROOT_KEY = "bench-root-key-0123456789abcdefghijklmnopq"
TARGET_MS = 300.0
RULES = """\
domain: bench
descriptors:
  - key: k
    rate_limit: {unit: hour, requests_per_unit: 1}
"""
PLANS = """\
plans:
  free:
    limits: [{name: per_minute, unit: minute, requests_per_unit: 60}]
  pro:
    limits: [{name: per_minute, unit: minute, requests_per_unit: 2000},
             {name: monthly, unit: month, requests_per_unit: 1000000, calendar: true}]
  enterprise:
    limits: [{name: per_second, unit: second, requests_per_unit: 500}]
"""
REFUSALS = ("RATE_LIMITED", "QUOTA_EXCEEDED", "REVOKED", "NOT_FOUND")


async def seed(sidecar: Sidecar, customers: int, days: int) -> float:
    full = sidecar.full
    assert full is not None
    actor = Actor("bench", frozenset({"admin"}))
    started = time.perf_counter()
    plans = ("free", "pro", "enterprise")
    keys: list[tuple[str, str, str]] = []
    for i in range(customers):
        customer = await full.catalog.create_customer(actor, s.CustomerCreate(
            f"Customer {i:04d}", plans[i % 3], f"cus-{i:04d}", f"ops{i}@example.test"))
        key = await full.catalog.create_key(actor, s.KeyCreate(customer.id, "backend"))
        keys.append((customer.id, key.id, customer.plan))
    rng = random.Random(7)
    now = time.time()
    live = full.web.live
    for hour in range(days * 24, 0, -1):
        at = now - hour * 3600
        for customer_id, key_id, plan in keys:
            live.add(customer_id, key_id, plan, "VALID", at, rng.randint(1, 500))
            if rng.random() < 0.2:
                live.add(customer_id, key_id, plan, rng.choice(REFUSALS), at,
                         rng.randint(1, 50))
    return time.perf_counter() - started


async def timed(session: aiohttp.ClientSession, url: str, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        async with session.get(url, allow_redirects=False) as response:
            await response.read()
            assert response.status == 200, (url, response.status)
        out.append((time.perf_counter() - started) * 1000)
    return out


async def run(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="viva-bench-dashboard-"))
    (folder / "config").mkdir()
    (folder / "config" / "rules.yaml").write_text(RULES)
    (folder / "config" / "plans.yaml").write_text(PLANS)
    port = free_port()
    settings = Settings.load({"mode": "full", "config": str(folder / "config"),
                              "http_port": port, "grpc_port": free_port(),
                              "debug_port": free_port()},
                             {"VIVA_DATA_DIR": str(folder / "data"), "VIVA_ROOT_KEY": ROOT_KEY,
                              "HOST": "127.0.0.1", "GRPC_HOST": "127.0.0.1",
                              "DEBUG_HOST": "127.0.0.1", "LOG_LEVEL": "warning"})
    sidecar = Sidecar(settings)
    await sidecar.start()
    try:
        took = await seed(sidecar, args.customers, args.days)
        print(f"seeded {args.customers} customers and keys, {args.days} days of hourly "
              f"decisions in {took:.1f} s")
        base = f"http://127.0.0.1:{port}"
        # unsafe: keep cookies set by an IP address (127.0.0.1)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            async with session.post(f"{base}/dashboard/sign-in", data={"root_key": ROOT_KEY},
                                    headers={"Origin": base}, allow_redirects=False) as r:
                assert r.status == 303, r.status
            pages = [("overview, last hour", "/dashboard?period=hour"),
                     ("overview, last 24 hours", "/dashboard?period=day"),
                     ("overview, last 30 days", "/dashboard?period=month"),
                     ("customers (search 'customer 09')", "/dashboard/customers?q=customer+09"),
                     ("a customer, last 30 days", "/dashboard/customers/cus-0500?period=month")]
            print(f"{'page':36} {'median':>9} {'p95':>9} {'max':>9}")
            worst = 0.0
            for name, path in pages:
                times = sorted(await timed(session, base + path, args.repeat))
                p95 = times[max(0, int(len(times) * 0.95) - 1)]
                print(f"{name:36} {statistics.median(times):8.1f}ms {p95:8.1f}ms "
                      f"{times[-1]:8.1f}ms")
                if name.startswith("overview"):
                    worst = max(worst, statistics.median(times))
        verdict = "met" if worst < TARGET_MS else "NOT met"
        print(f"overview: slowest median {worst:.1f} ms; target < {TARGET_MS:.0f} ms: {verdict}")
    finally:
        await sidecar.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=20)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
