"""The usage and billing endpoints over real HTTP, against a full-mode sidecar process on
SQLite and on a real PostgreSQL: report usage for a past month, preview it, close it (twice),
read the invoice as JSON, CSV and a printable page that Chromium turns into a PDF with
nothing fetched; invoice.created reaches a webhook receiver, signed; scopes; the current
month cannot be closed yet."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sidecar.management.billing.period import Period
from tests.management.alerts.kit import WEBHOOK_ENV, settled, subscribe
from tests.management.alerts.receiver import Receiver
from tests.management.kit import Admin, FullSidecar, write_config
from tests.management.postgres import PostgresServer
from tests.support.ports import eventually
from tests.support.servers import missing

PLANS = """
meters:
  tokens: {aggregation: sum}
plans:
  pro:
    name: Pro
    limits:
      - {name: hourly, unit: hour, requests_per_unit: 100}
    price:
      currency: EUR
      base_fee: "49.00"
      meters:
        requests: {included: 1, model: per_unit, unit_price: "0.25"}
        tokens: {included: 1000, model: graduated,
                 tiers: [{up_to: 500, unit_price: "0.01"}, {unit_price: "0.005"}]}
"""


@dataclass
class Database:
    env: dict[str, str]
    sql: Callable[[str], None]  # run a statement (test set-up: moving a customer back)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "sqlite":
        def run(statement: str) -> None:
            with sqlite3.connect(tmp_path / "data" / "viva.db") as connection:
                connection.execute(statement)

        return Database({}, run)
    server: PostgresServer = request.getfixturevalue("postgres")

    def run_pg(statement: str) -> None:
        server.sql(statement)

    return Database({"VIVA_DATABASE_URL": server.url}, run_pg)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def sidecar(database: Database, tmp_path: Path) -> Iterator[FullSidecar]:
    process = FullSidecar(write_config(tmp_path / "config", PLANS), tmp_path / "data",
                          env={**database.env, **WEBHOOK_ENV,
                               "VIVA_USAGE_FLUSH_INTERVAL": "200ms"}).start()
    yield process
    process.stop()


def test_report_preview_close_and_read_an_invoice(sidecar: FullSidecar, database: Database,
                                                  receiver: Receiver, tmp_path: Path) -> None:
    api = sidecar.api()
    webhook = subscribe(api, receiver.url(), ["invoice.created"])
    now = datetime.now(UTC)
    billed = Period.of(now)
    for _ in range(2):  # two months back: surely over, whatever the day of the test
        billed = Period(billed.year - (billed.month == 1), (billed.month - 2) % 12 + 1)
    api.customer(id="acme", plan="pro", email="billing@acme.test")
    # the customer has been on pro since before that month (set-up: its history moved back)
    since = billed.start.replace(year=billed.year - 1).strftime("%Y-%m-%d %H:%M:%S")
    database.sql(f"UPDATE customers SET created_at = '{since}' WHERE id = 'acme'")
    database.sql(f"UPDATE plan_periods SET starts_at = '{since}' WHERE customer_id = 'acme'")

    day = billed.start.replace(day=10).isoformat()
    events = [{"id": f"tok-{i}", "customer_id": "acme", "meter": "tokens", "value": 400,
               "time": day} for i in range(5)]  # 2,000 tokens: 1,000 included, 500 + 500
    reply = api.post("/v1/usage/events", events + events[:2])
    assert (reply.status, reply["accepted"], reply["duplicates"]) == (200, 5, 2)
    series = api.get(f"/v1/usage?customer_id=acme&meter=tokens&granularity=day"
                     f"&from={billed.start.isoformat()}&to={billed.end.isoformat()}"
                     .replace("+", "%2B"))
    assert series.status == 200 and series["total"]["value"] == "2000"
    assert [p["value"] for p in series["series"] if p["value"] != "0"] == ["2000"]

    # decisions now are counted (flushed every 200 ms) in this month, not the billed one
    key = api.key("acme")["key"]
    assert [api.code(key) for _ in range(3)] == ["VALID"] * 3
    eventually(lambda: api.get("/v1/usage?customer_id=acme")["total"]["allowed"] == 3)

    preview = api.get(f"/v1/invoices/preview?customer_id=acme&period={billed}")
    assert preview.status == 200 and preview["status"] == "draft"
    expected = [("Pro base fee", "1", "49.00", "49.00"),
                ("requests: included (1)", "0", "0", "0.00"), ("requests", "0", "0.25", "0.00"),
                ("tokens: included (1000)", "1000", "0", "0.00"),
                ("tokens: tier 1 (graduated)", "500", "0.01", "5.00"),
                ("tokens: tier 2 (graduated)", "500", "0.005", "2.50")]
    assert [(x["description"], x["quantity"], x["unit_price"], x["amount"])
            for x in preview["lines"]] == expected
    assert preview["total"] == "56.50"
    running = api.get("/v1/invoices/preview?customer_id=acme")  # this month, so far
    assert [x["quantity"] for x in running["lines"] if x["description"] == "requests"] == ["2"]

    closed = api.post(f"/v1/billing/periods/{billed}/close")
    assert closed.status == 200 and len(closed["invoices"]) == 1
    assert api.post(f"/v1/billing/periods/{billed}/close").body == closed.body
    invoice_id = closed["invoices"][0]
    invoice = api.get(f"/v1/invoices/{invoice_id}")
    assert (invoice["status"], invoice["number"], invoice["total"]) == ("final", "INV-000001",
                                                                         "56.50")
    assert api.get("/v1/invoices?customer_id=acme")["items"] == [invoice.body]
    settled(api, webhook["id"], 1)  # invoice.created, written with the invoice, delivered
    (sent,) = receiver.verify_all(webhook["secret"])
    assert (sent["type"], sent["data"]) == ("invoice.created", invoice.body)
    late = api.post("/v1/usage/events", [{**events[0], "id": "late"}])
    assert late["rejected"][0]["error"].startswith(f"time: the billing period {billed} is "
                                                   "closed")

    table = api.get(f"/v1/invoices/{invoice_id}?format=csv")
    assert table.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(table.body.decode())))
    assert rows[0][:3] == ["invoice", "period", "customer_id"]
    assert [r[5:] for r in rows[1:]] == [
        [d, "" if d.startswith("Pro") else d.split(":")[0], "2" if "tier 2" in d else
         "1" if "tier 1" in d else "", q, p, a] for d, q, p, a in expected] + [
        ["subtotal", "", "", "", "", "56.50"]]
    page = api.get(f"/v1/invoices/{invoice_id}?format=html")
    assert page.headers["content-type"].startswith("text/html")
    html = page.body.decode()
    assert "INV-000001" in html and "billing@acme.test" in html and "56.50 EUR" in html
    assert not re.search(r"""(src|href)\s*=|url\(|@import""", html), "an external asset"
    _prints_to_pdf(html, tmp_path)

    with urllib.request.urlopen(f"{sidecar.http_url}/metrics", timeout=5) as response:
        metrics = response.read().decode()
    assert re.search(r"^viva_usage_flush_lag_seconds [0-9.e+-]+$", metrics, re.M)
    assert re.search(r"^viva_usage_ledger_rows_written_total [1-9]", metrics, re.M)
    assert 'viva_usage_events_total{result="duplicate"} 2.0' in metrics

    this_month = Period.of(now)
    early = api.post(f"/v1/billing/periods/{this_month}/close")
    assert (early.status, early["field"]) == (409, "period")
    assert api.post("/v1/billing/periods/2026-13/close").status == 400
    assert api.get("/v1/invoices/inv_nothing").status == 404


def _prints_to_pdf(html: str, folder: Path) -> None:
    """Headless Chromium prints the page to a PDF, offline (what a customer's browser does
    with File > Print > Save as PDF)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        missing("Chromium")
    page = folder / "invoice.html"
    page.write_text(html)
    pdf = folder / "invoice.pdf"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-pdf-header-footer", f"--print-to-pdf={pdf}",
                    page.as_uri()], check=True, capture_output=True, timeout=120)
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and data.count(b"/Type /Page") - data.count(
        b"/Type /Pages") == 1  # one A4 page


def test_usage_and_billing_need_their_scopes(sidecar: FullSidecar) -> None:
    env = {**os.environ, "VIVA_DATA_DIR": str(sidecar.data_dir),
           "VIVA_DATABASE_URL": sidecar.env.get("VIVA_DATABASE_URL", "")}
    made = subprocess.run([sys.executable, "-m", "sidecar", "admin", "create-root-key",
                           "--scopes", "usage:read,billing:read"], capture_output=True,
                          text=True, env=env, timeout=60, check=True)
    reader = Admin("127.0.0.1", sidecar.http_port, made.stdout.strip())
    api = sidecar.api()
    api.customer(id="acme", plan="pro")
    eventually(lambda: reader.get("/v1/usage?customer_id=acme").status == 200, timeout=5)
    assert reader.get("/v1/invoices").status == 200
    assert reader.get("/v1/invoices/preview?customer_id=acme").status == 200
    denied = [reader.post("/v1/usage/events", [{"id": "a", "customer_id": "acme",
                                                "meter": "tokens", "value": 1}]),
              reader.post("/v1/billing/periods/2020-01/close")]
    assert [(r.status, r["error"]) for r in denied] == [
        (403, "the root key lacks the scope 'usage:write'"),
        (403, "the root key lacks the scope 'billing:write'")]
    assert api.get("/v1/usage?customer_id=acme", key=None).status == 401
