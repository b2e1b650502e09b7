"""How long the dashboard's pages take to render with a realistic catalog (a benchmark, not a
test).

    .venv/bin/python bench/dashboard.py [--customers 1000] [--days 30] [--repeat 20]

One full-mode sidecar in this process (SQLite catalog in a temp dir, or the PostgreSQL of
--database-url; memory store), seeded through the product's own paths: --customers
customers on three plans, each with a key, created by the catalog's transactions (the tables
the admin API writes), and --days of hourly decisions for every customer written to the
usage ledger by its own batch writer (usage/ledger.write_batch, what the flusher calls): an
allowed row every hour and a refused one in one hour of five. Then, signed in with a root
key, GET each page --repeat times over loopback HTTP and print the median, p95 and max time
to the last byte (an upper bound of the time spent in the server). The target: the overview
under 300 ms for every period. The first visit of the 30-day overview reads each day that is
over once (the pages keep those days' totals for about an hour): its time is the max column.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sidecar.app import Sidecar
from sidecar.management import schemas as s
from sidecar.management.catalog import Actor
from sidecar.management.usage.ledger import Batch, Bucket, write_batch
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
    price:
      currency: EUR
      base_fee: 49.00
      meters: {requests: {included: 100000, model: per_unit, unit_price: 0.0001}}
  enterprise:
    limits: [{name: per_second, unit: second, requests_per_unit: 500}]
"""
REFUSALS = ("RATE_LIMITED", "QUOTA_EXCEEDED", "REVOKED", "DISABLED")


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
    first_hour = int(now // 3600) - days * 24
    for day in range(days + 1):  # one batch (one transaction) per day of hours
        counts: dict[Bucket, list[int]] = {}
        for hour in range(first_hour + day * 24, min(first_hour + (day + 1) * 24,
                                                     int(now // 3600) + 1)):
            for customer_id, key_id, plan in keys:
                n = rng.randint(1, 500)
                counts[(customer_id, key_id, "", "VALID", plan, hour)] = [n, n]
                if rng.random() < 0.2:
                    code = rng.choice(REFUSALS)
                    limit = "per_minute" if code == "RATE_LIMITED" else \
                        "monthly" if code == "QUOTA_EXCEEDED" else ""
                    counts[(customer_id, key_id, limit, code, plan, hour)] = \
                        [rng.randint(1, 50), 0]
        if counts:
            async with full.catalog.sessions.begin() as session:
                await write_batch(session, Batch(counts, now), datetime.now(UTC))
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
                              "DEBUG_HOST": "127.0.0.1", "LOG_LEVEL": "warning",
                              "VIVA_DATABASE_URL": args.database_url})
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
                     ("a customer, last 30 days", "/dashboard/customers/cus-0502?period=month"),
                     ("a customer's running invoice", "/dashboard/customers/cus-0502/"
                      "invoices/running")]
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
    parser.add_argument("--database-url", default="",
                        help="a PostgreSQL URL (an empty database); default: SQLite")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
