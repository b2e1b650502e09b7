"""The self-service portal in a real headless Chromium: a customer opens the one-time link
its provider got from the admin API, creates keys up to its plan's max_keys, uses one over
HTTP, watches its usage against its limits and quota for this and past billing periods,
reads its invoices (HTML, CSV), rotates and revokes, and sees nothing of another customer;
ids of the other customer's keys and invoices, sent with the customer's own session and
token, are answered 404 exactly as ids that do not exist. Every page is screenshotted and
checked with axe-core."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sidecar.management.billing.period import Period
from tests.management.kit import Admin, FullSidecar, write_config
from tests.management.web.browser import look
from tests.management.web.kit import WEB_ENV, WEB_PLANS
from tests.support.ports import eventually


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[FullSidecar]:
    process = FullSidecar(write_config(tmp_path / "config", WEB_PLANS), tmp_path / "data",
                          env=WEB_ENV).start()
    yield process
    process.stop()


def invoiced_last_quarter(sidecar: FullSidecar, api: Admin) -> Period:
    """Every customer's history moved a year back (set-up, in the database), and the period
    of three months ago closed through the admin API: each gets a final invoice."""
    billed = Period.of(datetime.now(UTC))
    for _ in range(3):
        billed = Period.of(billed.start - timedelta(days=1))
    since = billed.start.replace(year=billed.year - 1).strftime("%Y-%m-%d %H:%M:%S")
    with sqlite3.connect(sidecar.data_dir / "viva.db") as db:
        db.execute(f"UPDATE customers SET created_at = '{since}'")
        db.execute(f"UPDATE plan_periods SET starts_at = '{since}'")
    closed = api.post(f"/v1/billing/periods/{billed}/close")
    assert closed.status == 200 and len(closed["invoices"]) == 2, closed
    return billed


@pytest.fixture
def page(browser: Any, sidecar: FullSidecar) -> Iterator[Any]:
    context = browser.new_context(base_url=sidecar.http_url,
                                  viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=sidecar.http_url)
    tab = context.new_page()
    tab.on("dialog", lambda dialog: dialog.accept())
    yield tab
    context.close()


def create_key(page: Any, name: str) -> str:
    page.locator("#key-name").fill(name)
    page.get_by_role("button", name="Create key").click()
    page.get_by_role("heading", name="Key created").wait_for()
    secret = str(page.locator("#secret").input_value())
    page.get_by_role("link", name="Done, back to the portal").click()
    page.wait_for_url("**/portal")
    return secret


def test_a_customer_manages_its_own_keys_and_nothing_else(page: Any,
                                                          sidecar: FullSidecar) -> None:
    api = sidecar.api()
    api.customer(id="acme", name="Acme Corp")
    api.customer(id="globex", name="Globex Inc", plan="bigger")
    other = api.key("globex", name="globex-backend")
    billed = invoiced_last_quarter(sidecar, api)
    (mine,) = api.get("/v1/invoices?customer_id=acme")["items"]
    (theirs,) = api.get("/v1/invoices?customer_id=globex")["items"]
    link = api.post("/v1/portal/sessions", {"customer_id": "acme"})
    assert link.status == 201

    page.goto(link["url"])
    look(page, "portal-01-enter")
    page.get_by_role("button", name="Open my portal").click()
    page.wait_for_url("**/portal")
    assert page.get_by_role("heading", level=1).inner_text() == "Acme Corp"
    look(page, "portal-02-empty")

    # Keys up to the plan's max_keys (3 on "basic"), the first copied and used.
    first = page.locator("#key-name")
    first.fill("production")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#secret").input_value()
    page.get_by_role("button", name="Copy").click()
    page.get_by_text("Copied to the clipboard.").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    look(page, "portal-03-key-created")
    page.get_by_role("link", name="Done, back to the portal").click()
    assert [api.code(secret) for _ in range(2)] == ["VALID", "VALID"]
    create_key(page, "staging")
    create_key(page, "ci")
    assert page.get_by_text("Your plan allows 3 active keys").is_visible()
    assert page.get_by_role("button", name="Create key").count() == 0
    # Usage against the limits now, and per billing period against the monthly quota: this
    # one (once flushed) and those before, back to the year-old start.
    def counted(p: Any) -> bool:
        p.reload()
        row = p.locator("table.periods-table tbody tr").first.inner_text()
        return "\t2\t" in row and "5 (monthly)" in row
    eventually(lambda: counted(page), timeout=10)
    description = page.locator("svg.usage desc").first.text_content()
    assert "per_minute: 2 of 3 used" in description
    assert page.locator("table.periods-table tbody tr").count() == 6
    look(page, "portal-04-keys")

    # Nothing of the other customer is on the page.
    content = page.content()
    for foreign in ("Globex", "globex", other["id"], other["start"], theirs["id"],
                    theirs["number"]):
        assert foreign not in content

    # Its invoices: the running one and last quarter's, as a page and as CSV.
    invoices = page.locator("table.invoices")
    assert "Running invoice" in invoices.inner_text() and str(billed) in invoices.inner_text()
    invoices.get_by_role("link", name=mine["number"], exact=True).click()
    page.get_by_role("heading", name=f"Invoice {mine['number']}").wait_for()
    assert "FINAL" in page.inner_text("body").upper() and "Acme Corp" in page.content()
    look(page, "portal-05-invoice")
    table = page.request.get(page.url + "?format=csv")
    assert table.status == 200 and f"{mine['number']},{billed},acme" in table.text()
    page.go_back()

    # Rotate the production key at once, then revoke the new one.
    keys = {k["name"]: k for k in api.get("/v1/keys?customer_id=acme")["items"]}
    row = page.locator(f"#key-{keys['production']['id']}")
    row.get_by_label("Old key stops").select_option("0")
    row.get_by_role("button", name="Rotate").click()
    rotated = page.locator("#secret").input_value()
    page.get_by_role("link", name="Done, back to the portal").click()
    assert (api.code(secret), api.code(rotated)) == ("EXPIRED", "VALID")
    new_id = next(k["id"] for k in api.get("/v1/keys?customer_id=acme")["items"]
                  if k["rotated_from"] == keys["production"]["id"])
    page.locator(f"#key-{new_id}").get_by_role("button", name="Revoke").click()
    page.get_by_text("Key revoked").wait_for()
    eventually(lambda: api.code(rotated) == "REVOKED", timeout=3)
    look(page, "portal-06-after-rotate-and-revoke")

    # Tampering: the customer's own session and token, another customer's key ids.
    token = page.locator('input[name="csrf"]').first.input_value()
    origin = {"Origin": sidecar.http_url}
    for path in (f"/portal/keys/{other['id']}/revoke", f"/portal/keys/{other['id']}/rotate",
                 "/portal/keys/key_doesnotexist/revoke"):
        reply = page.request.post(path, form={"csrf": token, "grace_seconds": "0"},
                                  headers=origin, max_redirects=0)
        assert reply.status == 404, path
        assert "Not found" in reply.text() and "no key" in reply.text()
    for path in (f"/portal/invoices/{theirs['id']}", f"/portal/invoices/{theirs['id']}"
                 "?format=csv", "/portal/invoices/inv_doesnotexist"):
        reply = page.request.get(path, max_redirects=0)
        assert reply.status == 404 and "no invoice" in reply.text(), path
    sneaky = page.request.post("/portal/keys", form={"csrf": token, "name": "x",
                                                     "customer_id": "globex"},
                               headers=origin, max_redirects=0)
    assert sneaky.status == 201  # a key was made, for acme: the form's customer_id is ignored
    made = [k for k in api.get("/v1/keys?customer_id=acme")["items"] if k["name"] == "x"]
    assert len(made) == 1
    assert api.code(other["key"]) == "VALID"
    assert len(api.get("/v1/keys?customer_id=globex")["items"]) == 1
    page.goto("/portal?customer_id=globex")
    assert page.get_by_role("heading", level=1).inner_text() == "Acme Corp"
    assert page.request.get("/dashboard/customers/globex", max_redirects=0).status == 303

    # Signing out ends the session; the spent link cannot start another.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/portal/enter")
    assert page.request.get("/portal").status == 401
    page.goto(link["url"])
    page.get_by_role("button", name="Open my portal").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Link not valid"
    look(page, "portal-07-link-spent")
