"""/v1/check in a customer's namespace over two full-mode sidecar processes on one PostgreSQL and
one Redis, over real HTTP:

- a namespace given to a customer on one instance is counted on the other once it has read
  the change log (within a second, as key changes);
- N concurrent clients call /v1/check on both instances in the customer's namespace and in a
  namespace nobody owns: the ledger holds exactly the decisions answered in the first (allowed
  and over the limit, the refusing rule named) and nothing of the second; GET /v1/usage shows
  them and the running invoice prices the allowed ones as requests;
- a namespace another customer holds, or a malformed one, is refused naming the field and
  changes nothing;
- one instance, on SQLite and on PostgreSQL, reads the owners when it starts, and counts
  nothing with VIVA_USAGE=false."""

from __future__ import annotations

import http.client
import json
import re
import textwrap
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.management.kit import Database, FullSidecar, write_config
from tests.management.postgres import PostgresServer
from tests.support.ports import eventually
from tests.support.servers import RedisServer

PLANS = """
plans:
  metered:
    name: Metered
    limits:
      - {name: hourly, unit: hour, requests_per_unit: 100000}
    price:
      currency: EUR
      base_fee: "10.00"
      meters:
        requests: {included: 100, model: per_unit, unit_price: "0.01"}
"""
# Hour-long windows: a window boundary is unlikely to fall inside a test on real time.
OWNED = """
domain: acme_api
descriptors:
  - key: identifier
    rate_limit: {unit: hour, requests_per_unit: 300, name: per_identifier}
"""
FREE = """
domain: free_api
descriptors:
  - key: identifier
    rate_limit: {unit: hour, requests_per_unit: 300}
"""
CLIENTS = 6
CALLS = 70  # 420 calls in acme_api for 300 allowed: 120 refused
FREE_CALLS = 40


@pytest.fixture
def pair(tmp_path: Path, postgres: PostgresServer, redis_clean: RedisServer
         ) -> Iterator[tuple[FullSidecar, FullSidecar, PostgresServer]]:
    config = write_config(tmp_path / "config", PLANS)
    for name, text in (("acme.yaml", OWNED), ("free.yaml", FREE)):
        (config / name).write_text(textwrap.dedent(text))
    env = {"VIVA_DATABASE_URL": postgres.url, "REDIS_URL": redis_clean.url,
           "REDIS_TIMEOUT": "2s", "VIVA_USAGE_FLUSH_INTERVAL": "300ms"}
    first = FullSidecar(config, tmp_path / "a", env=env)
    second = FullSidecar(config, tmp_path / "b", env=env)
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


class Checker:
    """One keep-alive HTTP connection to one instance's /v1/check."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def allowed(self, namespace: str, identifier: str) -> bool:
        self.conn.request("POST", "/v1/check", body=json.dumps(
            {"namespace": namespace, "identifier": identifier}),
            headers={"Content-Type": "application/json"})
        response = self.conn.getresponse()
        body = json.loads(response.read())
        assert response.status == 200, body
        return bool(body["allowed"])

    def close(self) -> None:
        self.conn.close()


def owned_namespaces(sidecar: FullSidecar) -> float:
    """What the instance's viva_usage_owned_namespaces gauge says."""
    with urllib.request.urlopen(f"{sidecar.http_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.search(r"^viva_usage_owned_namespaces ([0-9.e+]+)$", text, re.M)
    assert found, "viva_usage_owned_namespaces is not exposed"
    return float(found.group(1))


def usage(sidecar: FullSidecar, customer_id: str) -> tuple[int, int]:
    reply = sidecar.api().get(f"/v1/usage?customer_id={customer_id}&granularity=month")
    assert reply.status == 200, reply
    return reply["total"]["allowed"], reply["total"]["denied"]


@pytest.mark.redis
def test_checks_in_a_customers_namespace_are_counted_exactly_over_two_instances(
        pair: tuple[FullSidecar, FullSidecar, PostgresServer]) -> None:
    a, b, postgres = pair
    made = a.api().customer(id="acme", plan="metered", namespaces=["acme_api"])
    assert made["namespaces"] == ["acme_api"]
    eventually(lambda: owned_namespaces(b) == 1, timeout=5)
    answered: Counter[tuple[str, bool]] = Counter()
    lock = threading.Lock()

    def client(n: int, namespace: str, calls: int) -> None:
        checker = Checker((a if n % 2 else b).http_port)
        try:
            for _ in range(calls):  # one identifier: Redis shares its 300 between instances
                outcome = checker.allowed(namespace, "shared")
                with lock:
                    answered[namespace, outcome] += 1
        finally:
            checker.close()

    threads = [threading.Thread(target=client, args=(n, "acme_api", CALLS))
               for n in range(CLIENTS)]
    threads += [threading.Thread(target=client, args=(n, "free_api", FREE_CALLS))
                for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads)
    assert answered == {("acme_api", True): 300, ("acme_api", False): CLIENTS * CALLS - 300,
                        ("free_api", True): 2 * FREE_CALLS}

    denied = CLIENTS * CALLS - 300
    eventually(lambda: usage(b, "acme") == (300, denied), timeout=10)
    assert usage(a, "acme") == (300, denied)
    rows = postgres.sql("SELECT customer_id, key_id, limit_name, outcome, plan, sum(decisions),"
                        " sum(hits) FROM usage_counts GROUP BY customer_id, key_id, limit_name,"
                        " outcome, plan ORDER BY outcome")
    assert rows.split() == [f"acme||per_identifier|RATE_LIMITED|metered|{denied}|0",
                            "acme|||VALID|metered|300|300"]
    period = datetime.now(UTC).strftime("%Y-%m")
    invoice = b.api().get(f"/v1/invoices/preview?customer_id=acme&period={period}")
    assert invoice.status == 200, invoice
    assert [(line["description"], line["quantity"], line["amount"])
            for line in invoice["lines"] if line["meter"] == "requests"] == [
        ("requests: included (100)", "100", "0.00"), ("requests", "200", "2.00")]


@pytest.mark.redis
def test_a_namespace_change_applies_on_the_other_instance_within_a_second(
        pair: tuple[FullSidecar, FullSidecar, PostgresServer]) -> None:
    a, b, _ = pair
    api = a.api()
    api.customer(id="acme", plan="metered", namespaces=["acme_api"])
    api.customer(id="beta", plan="metered")
    eventually(lambda: owned_namespaces(b) == 1, timeout=5)
    before = len(api.get("/v1/audit?limit=100")["items"])
    taken = api.post("/v1/customers", {"id": "gamma", "name": "G", "plan": "metered",
                                       "namespaces": ["gamma_api", "acme_api"]})
    assert (taken.status, taken["field"]) == (409, "namespaces[1]")
    assert "'acme_api' belongs to customer 'acme'" in taken["error"]
    bad = api.patch("/v1/customers/beta", {"namespaces": ["free api"]})
    assert (bad.status, bad["field"]) == (400, "namespaces[0]")
    assert api.get("/v1/customers/gamma").status == 404
    assert api.get("/v1/customers/beta")["namespaces"] == []
    assert len(api.get("/v1/audit?limit=100")["items"]) == before

    changed = api.patch("/v1/customers/beta", {"namespaces": ["free_api"]})
    started = time.monotonic()
    assert changed.status == 200 and changed["namespaces"] == ["free_api"]
    while owned_namespaces(b) != 2:
        assert time.monotonic() - started < 3.0, "B did not learn the change"
        time.sleep(0.02)
    checker = Checker(b.http_port)
    try:
        assert [checker.allowed("free_api", "u") for _ in range(5)] == [True] * 5
    finally:
        checker.close()
    eventually(lambda: usage(b, "beta") == (5, 0), timeout=10)
    assert usage(a, "acme") == (0, 0)


def test_one_instance_counts_a_namespace_after_a_restart_and_not_with_usage_off(
        database: Database, tmp_path: Path) -> None:
    """On SQLite and PostgreSQL: the owners are read at start-up, and VIVA_USAGE=false sets
    no observer at all."""
    config = write_config(tmp_path / "config", PLANS)
    (config / "acme.yaml").write_text(textwrap.dedent(OWNED))
    env = {**database.env, "VIVA_USAGE_FLUSH_INTERVAL": "300ms"}

    def calls(sidecar: FullSidecar, times: int) -> list[bool]:
        checker = Checker(sidecar.http_port)
        try:
            return [checker.allowed("acme_api", "u") for _ in range(times)]
        finally:
            checker.close()

    sidecar = FullSidecar(config, tmp_path / "data", env=env).start()
    try:
        sidecar.api().customer(id="acme", plan="metered", namespaces=["acme_api"])
        assert calls(sidecar, 3) == [True] * 3
        eventually(lambda: usage(sidecar, "acme") == (3, 0), timeout=10)
    finally:
        sidecar.stop()
    sidecar = FullSidecar(config, tmp_path / "data", env=env).start()
    try:
        assert owned_namespaces(sidecar) == 1
        assert calls(sidecar, 2) == [True] * 2
        eventually(lambda: usage(sidecar, "acme") == (5, 0), timeout=10)
    finally:
        sidecar.stop()
    sidecar = FullSidecar(config, tmp_path / "data", env={**env, "VIVA_USAGE": "false"}).start()
    try:
        assert calls(sidecar, 2) == [True] * 2
    finally:
        sidecar.stop()  # a clean stop: anything counted would be written now
    sidecar = FullSidecar(config, tmp_path / "data", env=env).start()
    try:
        assert usage(sidecar, "acme") == (5, 0)
    finally:
        sidecar.stop()
