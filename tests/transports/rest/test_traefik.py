"""End to end: a real Traefik (built from the Go module proxy by .ci/build-traefik) with the
forwardAuth recipe of deploy/traefik/dynamic.yaml → /v1/forward-auth of a sidecar process.

The recipe runs as written, its two addresses pointed at the test's free ports. The app is a
small HTTP server that echoes the rate-limit headers Traefik hands it. Clients are told apart
by their own address (Traefik sets X-Forwarded-For from the connection), so the test speaks
from 127.0.0.2, 127.0.0.3, … to play several clients.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.deploy.tools import require_tool
from tests.support import ROOT
from tests.support.ports import eventually, free_port, wait_port
from tests.support.processes import stop_process
from tests.transports.rest.kit import LOOPBACK, RestSidecar, write_rules

RECIPE = ROOT / "deploy" / "traefik" / "dynamic.yaml"
SIDECAR_ADDRESS = "http://127.0.0.1:8080/v1/forward-auth"
APP_URL = "http://127.0.0.1:9000"
ECHOED = ("RateLimit", "RateLimit-Policy", "X-RateLimit-Remaining", "X-Forwarded-For")


class EchoApp(BaseHTTPRequestHandler):
    """200 'hello from the app', with the rate-limit headers it received as X-Seen-*."""

    def do_GET(self) -> None:
        body = b"hello from the app\n"
        self.send_response(200)
        for name in ECHOED:
            if self.headers.get(name) is not None:
                self.send_header(f"X-Seen-{name}", self.headers[name])
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


class Traefik:
    def __init__(self, binary: str, config: Path, log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.argv = [binary, f"--entryPoints.web.address=127.0.0.1:{self.port}",
                     f"--providers.file.filename={config}", "--log.level=INFO",
                     "--global.checkNewVersion=false", "--global.sendAnonymousUsage=false"]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Traefik:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)
        wait_port(self.port, timeout=60, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def get(self, path: str = "/orders", client: str = "127.0.0.2") -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10,
                                          source_address=(client, 0))
        try:
            conn.request("GET", path, headers={"X-RateLimit-Namespace": "not-this-one",
                                               "X-Forwarded-For": "203.0.113.9"})
            response = conn.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            conn.close()


@pytest.fixture
def traefik(tmp_path: Path) -> Iterator[Traefik]:
    binary = require_tool("traefik")
    sidecar = RestSidecar(write_rules(tmp_path / "rules", unit="hour"), env=LOOPBACK).start()
    app = ThreadingHTTPServer(("127.0.0.1", free_port()), EchoApp)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    recipe = RECIPE.read_text()
    assert SIDECAR_ADDRESS in recipe and APP_URL in recipe
    config = tmp_path / "dynamic.yaml"
    config.write_text(recipe.replace(SIDECAR_ADDRESS, f"http://127.0.0.1:{sidecar.http_port}"
                                     "/v1/forward-auth")
                      .replace(APP_URL, f"http://127.0.0.1:{app.server_address[1]}"))
    proxy = Traefik(binary, config, tmp_path / "traefik.log")
    try:
        proxy.start()
        # The file provider loads after the entry point opens: wait for the route, from a
        # client address of its own so the tests' budgets stay whole.
        eventually(lambda: proxy.get("/ready", client="127.0.0.99").status == 200, timeout=30)
        yield proxy
    finally:
        proxy.stop()
        app.shutdown()
        app.server_close()
        sidecar.stop()


def test_the_limit_plus_first_request_is_refused_with_429(traefik: Traefik) -> None:
    replies = [traefik.get() for _ in range(5)]
    assert [r.status for r in replies] == [200, 200, 200, 429, 429], traefik.log.read_text()
    ok, refused = replies[0], replies[3]
    assert ok.body == b"hello from the app\n"
    # Allowed: the limiter's headers reach the app (authResponseHeaders), counted per client
    # address whatever X-Forwarded-For the client sent.
    assert ok.headers["X-Seen-RateLimit-Policy"] == '"identifier";q=3;w=3600'
    assert ok.headers["X-Seen-RateLimit"].startswith('"identifier";r=2;t=')
    assert ok.headers["X-Seen-X-Forwarded-For"] == "127.0.0.2"
    # Refused: the limiter's answer as it is.
    body = json.loads(refused.body)
    assert (body["allowed"], body["remaining"], body["limit"]) == (False, 0, 3)
    assert 1 <= int(refused.headers["Retry-After"]) <= 3600
    assert refused.headers["RateLimit"].startswith('"identifier";r=0;t=')
    assert refused.headers["RateLimit-Policy"] == '"identifier";q=3;w=3600'
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert "X-Seen-RateLimit" not in refused.headers, "a refused request never reaches the app"


def test_each_client_address_has_its_own_budget(traefik: Traefik) -> None:
    assert [traefik.get(client="127.0.0.3").status for _ in range(4)] == [200, 200, 200, 429]
    assert traefik.get(client="127.0.0.4").status == 200


def test_the_readme_shows_the_tested_recipe() -> None:
    readme = (ROOT / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if "forwardAuth:" in b]
    recipe = yaml.safe_load(RECIPE.read_text())["http"]["middlewares"]
    assert yaml.safe_load(block)["middlewares"] == recipe
