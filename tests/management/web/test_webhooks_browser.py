"""The dashboard's webhook pages in a real headless Chromium, against a full-mode sidecar and
a real receiver on loopback: create an endpoint (the signing secret shown once), see a failed
delivery on the overview and on the endpoint's page, retry it once the receiver is back, and
see it delivered. Every page is screenshotted and checked with axe-core."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.management.kit import ROOT_KEY, FullSidecar, write_config
from tests.management.web.browser import look
from tests.support.ports import eventually


class Receiver:
    """An HTTP endpoint that answers 500 until told to accept."""

    def __init__(self) -> None:
        self.accept = False
        self.received: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                owner.received.append(self.headers.get("webhook-id", ""))
                self.send_response(204 if owner.accept else 500)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.stop()


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[FullSidecar]:
    env = {"VIVA_SECRET_KEY": "web-test-secret-key-0123456789abcdef",
           "VIVA_WEBHOOKS_ALLOW_PRIVATE": "true",  # the receiver is on loopback
           "VIVA_WEBHOOKS_BACKOFF": "3600s"}  # no automatic retry within the test
    process = FullSidecar(write_config(tmp_path / "config"), tmp_path / "data", env=env).start()
    yield process
    process.stop()


def test_a_failed_delivery_is_seen_and_retried(browser: Any, sidecar: FullSidecar,
                                               receiver: Receiver) -> None:
    api = sidecar.api()
    context = browser.new_context(base_url=sidecar.http_url,
                                  viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        page.goto("/dashboard/sign-in")
        page.get_by_label("Root key").fill(ROOT_KEY)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Webhooks").click()
        page.locator("#hook-url").fill(receiver.url)
        page.locator("#hook-description").fill("Billing system")
        page.get_by_label("key.created").check()
        page.get_by_role("button", name="Create webhook").click()
        secret = page.locator("#secret").input_value()
        assert secret.startswith("whsec_")
        look(page, "webhooks-01-created")
        page.get_by_role("link", name="Done, to the webhook").click()
        webhook_id = page.url.rsplit("/", 1)[1]
        assert secret not in page.content()

        api.key(api.customer(id="acme")["id"])  # key.created: delivered to a failing receiver
        deliveries = f"/v1/webhooks/{webhook_id}/deliveries"
        eventually(lambda: api.get(deliveries)["items"][0]["attempts"] == 1, timeout=10)
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Overview").click()
        failures = page.locator("#failures-h + table")
        assert "key.created" in failures.inner_text() and "HTTP 500" in failures.inner_text()
        look(page, "webhooks-02-overview-failure")

        failures.get_by_role("link", name=receiver.url).click()
        row = page.locator("table.deliveries tbody tr").first
        assert "pending" in row.inner_text() and "HTTP 500" in row.inner_text()
        receiver.accept = True
        row.get_by_role("button", name="Retry").click()
        page.get_by_text("Delivery queued to be sent again now.").wait_for()
        eventually(lambda: api.get(deliveries)["items"][0]["status"] == "delivered", timeout=10)
        page.goto(f"/dashboard/webhooks/{webhook_id}")
        assert "delivered" in page.locator("table.deliveries tbody tr").first.inner_text()
        assert len(set(receiver.received)) == 1 and len(receiver.received) == 2  # one event
        look(page, "webhooks-03-delivered")
        actions = [e["action"] for e in api.get(f"/v1/audit?target=webhook:{webhook_id}")["items"]]
        assert actions == ["webhook.retry", "webhook.create"]
    finally:
        context.close()
