"""The dashboard's webhook pages in a real headless Chromium, against a full-mode sidecar and
a real receiver on loopback that checks signatures on its own: create an endpoint (the
signing secret shown once, with a copy button), see a failed delivery on the overview, on
the endpoint's page and in its attempts, retry it once the receiver is back, see it
delivered and signed with that secret, then delete the endpoint. Every page is
screenshotted and checked with axe-core."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.management.alerts.kit import WEBHOOK_ENV
from tests.management.alerts.receiver import Receiver
from tests.management.kit import ROOT_KEY, FullSidecar, write_config
from tests.management.web.browser import look
from tests.support.ports import eventually


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[FullSidecar]:
    # No automatic retry within the test: the person on the page retries.
    env = {**WEBHOOK_ENV, "VIVA_WEBHOOKS_BACKOFF": "1h", "VIVA_WEBHOOKS_BACKOFF_MAX": "1h"}
    process = FullSidecar(write_config(tmp_path / "config"), tmp_path / "data", env=env).start()
    yield process
    process.stop()


def test_a_failed_delivery_is_seen_and_retried(browser: Any, sidecar: FullSidecar,
                                               receiver: Receiver) -> None:
    api = sidecar.api()
    context = browser.new_context(base_url=sidecar.http_url,
                                  viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # the delete confirmation
    try:
        page.goto("/dashboard/sign-in")
        page.get_by_label("Root key").fill(ROOT_KEY)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Webhooks").click()
        page.locator("#hook-url").fill(receiver.url())
        page.locator("#hook-description").fill("Billing system")
        page.get_by_label("key.created").check()
        look(page, "webhooks-01-new")
        page.get_by_role("button", name="Create webhook").click()
        secret = page.locator("#secret").input_value()
        assert secret.startswith("whsec_")
        look(page, "webhooks-02-created")
        page.get_by_role("link", name="Done, to the webhook").click()
        webhook_id = page.url.rsplit("/", 1)[1]
        assert secret not in page.content()

        receiver.fail_next(1)
        api.key(api.customer(id="acme")["id"])  # key.created, to a failing receiver
        deliveries = f"/v1/webhooks/{webhook_id}/deliveries"
        eventually(lambda: api.get(deliveries)["items"][0]["attempts"] == 1, timeout=10)
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Overview").click()
        failures = page.locator("#failures-h + table")
        assert "key.created" in failures.inner_text() and "HTTP 500" in failures.inner_text()
        look(page, "webhooks-03-overview-failure")

        failures.get_by_role("link", name="key.created").click()
        page.get_by_role("heading", name="Delivery of key.created").wait_for()
        attempts = page.locator("table.attempts tbody tr")
        assert attempts.count() == 1 and "HTTP 500" in attempts.first.inner_text()
        assert '"customer_id": "acme"' in page.locator("pre.payload").inner_text()
        look(page, "webhooks-04-delivery")
        page.get_by_role("link", name="Billing system").click()
        row = page.locator("table.deliveries tbody tr").first
        assert "pending" in row.inner_text() and "HTTP 500" in row.inner_text()
        row.get_by_role("button", name="Retry").click()
        page.get_by_text("Delivery queued to be sent again now.").wait_for()
        eventually(lambda: api.get(deliveries)["items"][0]["status"] == "delivered", timeout=10)
        page.reload()
        assert "delivered" in page.locator("table.deliveries tbody tr").first.inner_text()
        look(page, "webhooks-05-delivered")
        (event,) = {r.event_id for r in receiver.snapshot()}  # one event, sent twice
        sent = receiver.verify_all(secret)  # signed with the secret shown once
        assert len(sent) == 2 and sent[1]["type"] == "key.created" and event
        actions = [e["action"] for e in api.get(f"/v1/audit?target=webhook:{webhook_id}")
                   ["items"]]
        assert actions == ["webhook.retry", "webhook.create"]

        page.get_by_role("button", name="Delete").click()
        page.get_by_text("Webhook deleted").wait_for()
        assert api.get(f"/v1/webhooks/{webhook_id}").status == 404
    finally:
        context.close()
