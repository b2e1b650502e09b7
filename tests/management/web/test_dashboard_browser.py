"""The dashboard in a real headless Chromium, used as a person would, against a full-mode
sidecar process (SQLite, and once on a real PostgreSQL): sign in by keyboard, create a
customer and a key, copy the key once, call /v1/keys/verify with it over HTTP, watch the
usage charts and the decisions change, read the running invoice (HTML, CSV), change the plan,
rotate with grace, revoke, disable, read the audit log, see the alert on the overview; every
page is screenshotted and checked with axe-core."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.management.kit import ROOT_KEY, Admin, FullSidecar, write_config
from tests.management.postgres import PostgresServer
from tests.management.web.browser import look, screenshot
from tests.management.web.kit import WEB_ENV, WEB_PLANS
from tests.support.ports import eventually


@pytest.fixture(params=["sqlite", "postgresql"])
def sidecar(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FullSidecar]:
    env = dict(WEB_ENV)
    if request.param == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres")
        env["VIVA_DATABASE_URL"] = server.url
    process = FullSidecar(write_config(tmp_path / "config", WEB_PLANS), tmp_path / "data",
                          env=env).start()
    yield process
    process.stop()


@pytest.fixture
def page(browser: Any, sidecar: FullSidecar) -> Iterator[Any]:
    context = browser.new_context(base_url=sidecar.http_url,
                                  viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=sidecar.http_url)
    tab = context.new_page()
    tab.on("dialog", lambda dialog: dialog.accept())  # the revoke confirmation
    yield tab
    context.close()


def used(page: Any, limit: str) -> str:
    """The "Used" figure of a limit in the usage table."""
    row = page.locator("table.limits tbody tr", has_text=limit)
    return str(row.locator("td").nth(1).inner_text())


def shown(page: Any, check: Any, timeout: float = 10) -> None:
    """Reload until ``check(page)`` holds: usage reaches the ledger within a flush."""
    def reloaded() -> bool:
        page.reload()
        return bool(check(page))
    eventually(reloaded, timeout=timeout)


def decided(page: Any, code: str) -> int:
    """How many decisions with ``code`` the decisions table lists over the period."""
    table = page.locator("details.data table")
    headers = [h.strip() for h in table.locator("thead th").all_text_contents()]
    if code not in headers:
        return 0
    column = headers.index(code)
    cells = table.locator(f"tbody tr td:nth-child({column + 1})").all_text_contents()
    return sum(int(c.replace(",", "")) for c in cells)


def nav(page: Any, name: str) -> Any:
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name,
                                                                    exact=True)


def key_row(page: Any, key_id: str) -> Any:
    return page.locator(f"#key-{key_id}")


def test_a_provider_manages_a_customer_and_its_keys(page: Any, sidecar: FullSidecar,
                                                    request: pytest.FixtureRequest) -> None:
    db = request.node.callspec.params["sidecar"]
    api: Admin = sidecar.api()

    # Sign in with the keyboard: the field has the focus, Enter submits; then the skip
    # link is the first stop and takes the focus to the content.
    page.goto("/dashboard")
    assert page.url.endswith("/dashboard/sign-in")
    look(page, f"{db}-01-sign-in")
    assert page.evaluate("document.activeElement.id") == "root_key"
    page.keyboard.type(ROOT_KEY)
    page.keyboard.press("Enter")
    page.wait_for_url("**/dashboard")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    look(page, f"{db}-02-overview-empty")

    # A customer, created from the Customers page.
    nav(page, "Customers").click()
    page.locator("#new-name").fill("Acme Corp")
    page.locator("#new-id").fill("acme")
    page.locator("#new-email").fill("ops@acme.test")
    page.locator("#new-plan").select_option("basic")
    page.get_by_role("button", name="Create customer").click()
    page.wait_for_url("**/dashboard/customers/acme?done=created")
    assert page.get_by_role("status").inner_text() == "Customer created."
    assert used(page, "per_minute") == "0"

    # A key: shown once, copied with the button.
    page.locator("#key-name").fill("backend")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#secret").input_value()
    assert re.fullmatch(r"viva_[1-9A-HJ-NP-Za-km-z]{28}", secret)
    page.get_by_role("button", name="Copy").click()
    page.get_by_text("Copied to the clipboard.").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    look(page, f"{db}-03-key-created")
    page.get_by_role("link", name="Done, back to the customer").click()
    assert secret not in page.content()  # never shown again
    key_id = api.get("/v1/keys?customer_id=acme")["items"][0]["id"]

    # Calls with the key over real HTTP: three allowed, then the hourly limit refuses. The
    # limits' bars read the counters now; decisions and the period's requests, the ledger.
    assert [api.code(secret) for _ in range(4)] == ["VALID"] * 3 + ["RATE_LIMITED"]
    shown(page, lambda p: decided(p, "RATE_LIMITED") == 1)
    assert used(page, "per_minute") == "3" and used(page, "monthly") == "3"
    assert decided(page, "VALID") == 3
    description = page.locator("svg.usage desc").first.text_content()
    assert "per_minute: 3 of 3 used" in description and "monthly: 3 of 5 used" in description
    this_month = page.locator("table.periods-table tbody tr").first.inner_text()
    assert "basic" in this_month and "3" in this_month and "5 (monthly)" in this_month
    look(page, f"{db}-04-customer-used")

    # The running invoice: billing's printable page, its inline style allowed by hash.
    invoices = page.locator("table.invoices")
    assert "EUR" in invoices.inner_text()
    invoices.get_by_role("link", name="Running invoice", exact=True).click()
    page.get_by_role("heading", name="Invoice").wait_for()
    assert "requests" in page.content() and "Acme Corp" in page.content()
    assert page.evaluate("getComputedStyle(document.body).maxWidth") != "none"  # styled
    look(page, f"{db}-05-running-invoice")
    table = page.request.get(page.url + "?format=csv")
    assert table.headers["content-type"].startswith("text/csv")
    assert table.text().splitlines()[0].startswith("invoice,period,customer_id")
    page.go_back()

    # A bigger plan lifts the refusal at once.
    page.locator("#plan").select_option("bigger")
    page.get_by_role("button", name="Change plan").click()
    page.get_by_text("Plan changed").wait_for()
    assert api.code(secret) == "VALID"

    # Rotate with an hour of grace: both keys work; the new one is shown once.
    row = key_row(page, key_id)
    row.get_by_label("Old key stops").select_option("3600")
    row.get_by_role("button", name="Rotate").click()
    page.get_by_role("heading", name="Key rotated").wait_for()
    rotated = page.locator("#secret").input_value()
    assert rotated != secret and key_id in page.content()
    look(page, f"{db}-06-key-rotated")
    assert (api.code(secret), api.code(rotated)) == ("VALID", "VALID")
    page.get_by_role("link", name="Done, back to the customer").click()
    new_id = next(k["id"] for k in api.get("/v1/keys?customer_id=acme")["items"]
                  if k["id"] != key_id)

    # Revoke the old key; disable and enable the new one.
    key_row(page, key_id).get_by_role("button", name="Revoke").click()
    page.get_by_text("Key revoked").wait_for()
    eventually(lambda: api.code(secret) == "REVOKED", timeout=3)
    assert "revoked" in key_row(page, key_id).inner_text()
    key_row(page, new_id).get_by_role("button", name="Disable").click()
    page.get_by_text("Key disabled").wait_for()
    assert api.code(rotated) == "DISABLED"
    key_row(page, new_id).get_by_role("button", name="Enable").click()
    page.get_by_text("Key enabled.").wait_for()
    assert api.code(rotated) == "VALID"
    look(page, f"{db}-07-customer-keys")

    # The audit log tells who did what, newest first.
    nav(page, "Audit log").click()
    page.locator("#target").fill(f"key:{key_id}")
    page.get_by_role("button", name="Filter").click()
    actions = page.locator("table.audit tbody tr td:nth-child(3)").all_inner_texts()
    assert actions == ["key.revoke", "key.rotate", "key.create"]
    look(page, f"{db}-08-audit")

    # The overview counts what happened, from the ledger, and the alert the refusal raised.
    nav(page, "Overview").click()
    page.get_by_role("link", name="Last hour").click()
    shown(page, lambda p: decided(p, "REVOKED") == 1)
    assert decided(page, "VALID") == 7
    assert page.locator("#top-customers-h + table").get_by_text("Acme Corp").is_visible()
    refused = page.locator("#top-keys-h + table tbody tr").first.inner_text()
    assert secret[:9] in refused and "RATE_LIMITED 1" in refused and "REVOKED 1" in refused
    alerts = page.locator("#alerts-h + table").inner_text()
    assert "usage.threshold" in alerts and "acme reached 100 % of per_minute" in alerts
    look(page, f"{db}-09-overview")

    # The plans and their validation state: a broken edit is refused, the plans stay.
    nav(page, "Plans").click()
    assert page.get_by_text("Valid: every plans file was checked and loaded.").is_visible()
    look(page, f"{db}-10-plans")
    plans = Path(sidecar.config) / "plans.yaml"
    good = plans.read_text()
    plans.write_text(good.replace("unit: hour", "unit: fortnight", 1))
    shown(page, lambda p: p.get_by_role("alert").count() == 1)
    refusal = page.get_by_role("alert").inner_text()
    assert "plans.basic.limits[0].unit" in refusal and "fortnight" in refusal
    assert page.get_by_role("heading", name="Basic basic").is_visible()  # still in force
    look(page, f"{db}-11-plans-refused")
    plans.write_text(good)
    shown(page, lambda p: p.get_by_text("Valid: every plans file").count() == 1)

    nav(page, "Customers").click()
    page.get_by_label("Search by id, name or e-mail").fill("ACME")
    page.get_by_role("button", name="Search").click()
    assert page.get_by_role("link", name="Acme Corp").is_visible()
    look(page, f"{db}-12-customers")

    # A portal link for the customer, and signing out.
    page.get_by_role("link", name="Acme Corp").click()
    page.get_by_role("button", name="Create portal link").click()
    link = page.locator("#secret").input_value()
    assert "/portal/enter?token=vlink_" in link
    look(page, f"{db}-13-portal-link")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/dashboard/sign-in")
    page.goto("/dashboard")
    assert page.url.endswith("/dashboard/sign-in")


def test_the_forms_work_without_javascript(browser: Any, tmp_path: Path) -> None:
    process = FullSidecar(write_config(tmp_path / "config"), tmp_path / "data").start()
    context = browser.new_context(base_url=process.http_url, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto("/dashboard/sign-in")
        page.get_by_label("Root key").fill(ROOT_KEY)
        page.get_by_role("button", name="Sign in").click()
        nav(page, "Customers").click()
        page.locator("#new-name").fill("No Script Ltd")
        page.get_by_role("button", name="Create customer").click()
        page.get_by_role("button", name="Create key").click()
        secret = page.locator("#secret").input_value()
        copy = page.locator("button.copy")
        assert copy.count() == 1 and not copy.is_visible()  # nothing to run it: kept hidden
        screenshot(page, "nojs-key-created")  # (axe itself needs script: not run here)
        assert process.api().code(secret) == "VALID"
        page.go_back()
        page.reload()  # the customer's page, now with its key
        page.get_by_role("button", name="Revoke").click()  # no confirmation without script
        page.get_by_text("Key revoked").wait_for()
        eventually(lambda: process.api().code(secret) == "REVOKED", timeout=3)
    finally:
        context.close()
        process.stop()
