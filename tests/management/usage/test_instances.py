"""Usage over two full-mode sidecar processes on one PostgreSQL and one Redis, over real HTTP:

- duplicate event ids sent concurrently to both instances are stored and counted once;
- N concurrent clients verify keys on both instances while one of them is stopped with
  SIGTERM in the middle (its flush interval is an hour: its counts exist only in its memory
  until it stops); afterwards the ledger holds exactly the decisions the clients were
  answered, per customer, per key and per outcome."""

from __future__ import annotations

import http.client
import json
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.management.kit import ROOT_KEY, FullSidecar, write_config
from tests.management.postgres import PostgresServer
from tests.support.ports import eventually
from tests.support.servers import RedisServer

PLANS = """
meters:
  tokens: {aggregation: sum}
plans:
  metered:
    name: Metered
    limits:
      - {name: hourly, unit: hour, requests_per_unit: 500}
"""
CLIENTS_PER_CUSTOMER = 4
CALLS_PER_CLIENT = 150  # 600 calls a customer for 500 allowed: 100 refused each


@pytest.fixture
def pair(tmp_path: Path, postgres: PostgresServer, redis_clean: RedisServer
         ) -> Iterator[tuple[FullSidecar, FullSidecar, PostgresServer]]:
    config = write_config(tmp_path / "config", PLANS)
    env = {"VIVA_DATABASE_URL": postgres.url, "REDIS_URL": redis_clean.url,
           "REDIS_TIMEOUT": "2s", "VIVA_VERIFY_FAILURES_PER_MINUTE": "0",
           "VIVA_SHUTDOWN_GRACE": "10s"}
    # A writes its counts only when it stops; B every 300 ms, concurrently with the other
    first = FullSidecar(config, tmp_path / "a",
                        env={**env, "VIVA_USAGE_FLUSH_INTERVAL": "1h"})
    second = FullSidecar(config, tmp_path / "b",
                         env={**env, "VIVA_USAGE_FLUSH_INTERVAL": "300ms"})
    first.start(wait=False)
    second.start(wait=False)
    try:
        for process in (first, second):
            try:
                process.start_wait()
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}\n{process.log()}") from None
        yield first, second, postgres
    finally:
        first.stop()
        second.stop()


class Client:
    """One keep-alive HTTP connection to one instance."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def post(self, path: str, body: Any) -> Any:
        self.conn.request("POST", path, body=json.dumps(body), headers={
            "Authorization": f"Bearer {ROOT_KEY}", "Content-Type": "application/json"})
        response = self.conn.getresponse()
        data = json.loads(response.read())
        assert response.status == 200, data
        return data

    def close(self) -> None:
        self.conn.close()


def test_concurrent_duplicate_events_over_two_instances_count_once(
        pair: tuple[FullSidecar, FullSidecar, PostgresServer]) -> None:
    a, b, _ = pair
    a.api().customer(id="acme", plan="metered")
    batches = [[{"id": f"ev-{(7 * n + i) % 50}", "customer_id": "acme", "meter": "tokens",
                 "value": (7 * n + i) % 50} for i in range(25)] for n in range(16)]
    results: list[dict[str, Any]] = []

    def send(n: int) -> None:
        client = Client((a if n % 2 else b).http_port)
        try:
            results.append(client.post("/v1/usage/events", batches[n]))
        finally:
            client.close()

    threads = [threading.Thread(target=send, args=(n,)) for n in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 16 and all(r["rejected"] == [] for r in results)
    assert sum(r["accepted"] for r in results) == 50  # 400 events, 50 distinct ids
    assert sum(r["duplicates"] for r in results) == 350
    total = a.api().get("/v1/usage?customer_id=acme&meter=tokens&granularity=month")
    assert total.status == 200 and total["total"]["value"] == str(sum(range(50)))


@pytest.mark.redis
def test_the_ledger_holds_every_decision_of_two_instances_across_a_sigterm(
        pair: tuple[FullSidecar, FullSidecar, PostgresServer]) -> None:
    a, b, postgres = pair
    api = b.api()
    keys: dict[str, list[dict[str, Any]]] = {}
    for customer in ("c1", "c2"):
        api.customer(id=customer, plan="metered")
        keys[customer] = [api.key(customer) for _ in range(2)]
    answered: Counter[tuple[str, str, str]] = Counter()  # (customer, key id, code)
    lock = threading.Lock()
    halfway = threading.Event()
    on_a = Counter[str]()

    def client(n: int, customer: str) -> None:
        key = keys[customer][n % 2]
        instance = a if n % 2 else b
        connection = Client(instance.http_port)
        done = 0
        while done < CALLS_PER_CLIENT:
            try:
                code = connection.post("/v1/keys/verify", {"key": key["key"]})["code"]
            except (ConnectionError, http.client.HTTPException, OSError):
                # A closed its connections (never in the middle of a request: it lets the
                # running ones finish): nothing was decided, go on with B
                connection.close()
                instance = b
                connection = Client(b.http_port)
                continue
            done += 1
            with lock:
                answered[customer, key["id"], code] += 1
                if instance is a:
                    on_a["calls"] += 1
                    if on_a["calls"] >= 250:
                        halfway.set()
        connection.close()

    threads = [threading.Thread(target=client, args=(n, customer))
               for customer in keys for n in range(CLIENTS_PER_CUSTOMER)]
    for thread in threads:
        thread.start()
    assert halfway.wait(60), "the clients on A did not get going"
    assert a.proc is not None
    a.proc.send_signal(signal.SIGTERM)  # in the middle of the traffic
    assert a.proc.wait(30) == 0
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads)
    assert "decisions to the usage ledger before stopping" not in a.log()

    made = sum(answered.values())
    assert made == 2 * CLIENTS_PER_CUSTOMER * CALLS_PER_CLIENT
    for customer in keys:  # Redis shares the limit: exactly 500 allowed each
        assert sum(n for (c, _, code), n in answered.items()
                   if c == customer and code == "VALID") == 500
    # B flushes every 300 ms; A wrote its counts when it stopped
    for customer, customer_keys in keys.items():
        want = totals(answered, customer)
        eventually(lambda c=customer, w=want: usage(b, f"customer_id={c}") == w, timeout=10)
        for key in customer_keys:
            assert usage(b, f"key_id={key['id']}") == totals(answered, customer, key["id"])
    rows = postgres.sql("SELECT outcome, sum(decisions), sum(hits) FROM usage_counts "
                        "GROUP BY outcome ORDER BY outcome")
    assert rows.split() == ["RATE_LIMITED|200|0", "VALID|1000|1000"]


def totals(answered: Counter[tuple[str, str, str]], customer: str,
           key_id: str | None = None) -> tuple[int, int]:
    mine = {(k, code): n for (c, k, code), n in answered.items() if c == customer}
    allowed = sum(n for (k, code), n in mine.items() if code == "VALID" and key_id in (None, k))
    denied = sum(n for (k, code), n in mine.items() if code != "VALID" and key_id in (None, k))
    return allowed, denied


def usage(sidecar: FullSidecar, scope: str) -> tuple[int, int]:
    reply = sidecar.api().get(f"/v1/usage?{scope}&granularity=month")
    assert reply.status == 200, reply
    return reply["total"]["allowed"], reply["total"]["denied"]
