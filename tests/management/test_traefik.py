"""Full mode behind a real Traefik: deploy/traefik/dynamic-full.yaml's forwardAuth to
/v1/keys/forward-auth, run as written with its two addresses on the test's ports."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.deploy.tools import require_tool
from tests.management.kit import Admin, FullSidecar, write_config
from tests.support import ROOT
from tests.support.ports import eventually, free_port
from tests.transports.rest.test_traefik import APP_URL, Reply, Traefik

RECIPE = ROOT / "deploy" / "traefik" / "dynamic-full.yaml"
SIDECAR = "http://127.0.0.1:8080/v1/keys/forward-auth"
SEEN = ("X-Viva-Customer-Id", "X-Viva-Plan", "RateLimit")


class EchoApp(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello from the app\n"
        self.send_response(200)
        for name in SEEN:
            if self.headers.get(name) is not None:
                self.send_header(f"X-Seen-{name}", self.headers[name])
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class KeyTraefik(Traefik):
    def call(self, path: str, headers: dict[str, str]) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            conn.close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[KeyTraefik, Admin]]:
    binary = require_tool("traefik")
    sidecar = FullSidecar(write_config(tmp_path / "config"), tmp_path / "data").start()
    app = ThreadingHTTPServer(("127.0.0.1", free_port()), EchoApp)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    recipe = RECIPE.read_text()
    assert SIDECAR in recipe and APP_URL in recipe
    config = tmp_path / "dynamic.yaml"
    config.write_text(recipe.replace("http://127.0.0.1:8080",
                                     f"http://127.0.0.1:{sidecar.http_port}")
                      .replace(APP_URL, f"http://127.0.0.1:{app.server_address[1]}"))
    proxy = KeyTraefik(binary, config, tmp_path / "traefik.log")
    try:
        proxy.start()
        eventually(lambda: proxy.call("/ready", {}).status == 401, timeout=30)
        yield proxy, sidecar.api()
    finally:
        proxy.stop()
        app.shutdown()
        app.server_close()
        sidecar.stop()


def test_traefik_forward_auth_with_a_key(stack: tuple[KeyTraefik, Admin]) -> None:
    traefik, api = stack
    customer = api.customer()
    key = api.key(customer["id"])["key"]
    missing = traefik.call("/orders", {})
    assert (missing.status, missing.headers["X-Viva-Code"]) == (401, "MISSING")
    ok = traefik.call("/orders", {"X-Api-Key": key, "X-Viva-Customer-Id": "someone-else"})
    assert ok.status == 200 and ok.body == b"hello from the app\n", traefik.log.read_text()
    assert ok.headers["X-Seen-X-Viva-Customer-Id"] == customer["id"]
    assert ok.headers["X-Seen-X-Viva-Plan"] == "basic"
    assert ok.headers["X-Seen-RateLimit"].startswith('"per_minute";r=2;t=')
    forbidden = traefik.call("/exports/1", {"Authorization": f"Bearer {key}"})
    assert (forbidden.status, forbidden.headers["X-Viva-Code"]) == (403, "FORBIDDEN")
    assert [traefik.call("/orders", {"X-Api-Key": key}).status for _ in range(2)] == [200, 200]
    limited = traefik.call("/orders", {"X-Api-Key": key})
    assert (limited.status, limited.headers["X-Viva-Code"]) == (429, "RATE_LIMITED")
    assert 1 <= int(limited.headers["Retry-After"]) <= 3600
