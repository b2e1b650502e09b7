"""The self-service portal in a real headless Chromium: a customer opens the one-time link
its provider got from the admin API, creates keys up to its plan's max_keys, uses one over
HTTP, rotates and revokes, and sees nothing of another customer; ids of the other customer's
keys, sent with the customer's own session and token, are answered 404 exactly as ids that
do not exist. Every page is screenshotted and checked with axe-core."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.management.kit import FullSidecar, write_config
from tests.management.web.browser import look
from tests.support.ports import eventually


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[FullSidecar]:
    process = FullSidecar(write_config(tmp_path / "config"), tmp_path / "data").start()
    yield process
    process.stop()


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
    page.reload()
    description = page.locator("svg.usage desc").text_content()
    assert "per_minute: 2 of 3 used" in description
    look(page, "portal-04-keys")

    # Nothing of the other customer is on the page.
    content = page.content()
    for foreign in ("Globex", "globex", other["id"], other["start"]):
        assert foreign not in content

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
    look(page, "portal-05-after-rotate-and-revoke")

    # Tampering: the customer's own session and token, another customer's key ids.
    token = page.locator('input[name="csrf"]').first.input_value()
    origin = {"Origin": sidecar.http_url}
    for path in (f"/portal/keys/{other['id']}/revoke", f"/portal/keys/{other['id']}/rotate",
                 "/portal/keys/key_doesnotexist/revoke"):
        reply = page.request.post(path, form={"csrf": token, "grace_seconds": "0"},
                                  headers=origin, max_redirects=0)
        assert reply.status == 404, path
        assert "Not found" in reply.text() and "no key" in reply.text()
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
    look(page, "portal-06-link-spent")
