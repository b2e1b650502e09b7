"""A small cookie-keeping HTTP client for the pages (no redirects followed, so tests see
them), and the sidecar the page tests run against."""

from __future__ import annotations

import html
import http.client
import os
import re
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path

from tests.management.kit import ROOT_KEY
from tests.support import ROOT

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Page:
    status: int
    headers: http.client.HTTPMessage
    text: str

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")

    def csrf(self) -> str:
        found = _CSRF.search(self.text)
        assert found, "no CSRF token on the page"
        return html.unescape(found.group(1))


@dataclass
class Browserless:
    """Sends what a browser would (cookies per path, Origin on POST), one request each."""

    port: int
    cookies: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (path, value)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def send(self, method: str, path: str, form: dict[str, str] | None = None,
             headers: dict[str, str] | None = None, origin: bool = True) -> Page:
        sent = {"Host": f"127.0.0.1:{self.port}", **(headers or {})}
        cookie = "; ".join(f"{name}={value}" for name, (scope, value) in self.cookies.items()
                           if path.startswith(scope))
        if cookie:
            sent["Cookie"] = cookie
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
            if origin:
                sent.setdefault("Origin", self.origin)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            conn.request(method, path, body=body, headers=sent)
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", "replace")
        finally:
            conn.close()
        for header in resp.headers.get_all("Set-Cookie") or []:
            jar = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                if morsel.value:
                    self.cookies[name] = (morsel["path"] or "/", morsel.value)
                else:
                    self.cookies.pop(name, None)
        return Page(resp.status, resp.headers, text)

    def get(self, path: str, **kw: object) -> Page:
        return self.send("GET", path, **kw)  # type: ignore[arg-type]

    def post(self, path: str, form: dict[str, str], **kw: object) -> Page:
        return self.send("POST", path, form, **kw)  # type: ignore[arg-type]

    def sign_in(self, root_key: str = ROOT_KEY) -> Page:
        return self.post("/dashboard/sign-in", {"root_key": root_key})


def create_root_key(data_dir: Path, scopes: str, env: dict[str, str] | None = None) -> str:
    """A root key made by the CLI, as an operator makes one."""
    made = subprocess.run([sys.executable, "-m", "sidecar", "admin", "create-root-key",
                           "--scopes", scopes], capture_output=True, text=True, timeout=60,
                          cwd=str(ROOT), env={**os.environ, "VIVA_DATA_DIR": str(data_dir),
                                              **(env or {})})
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


# The plans of the page tests: kit.PLANS priced (so customers have running invoices) and
# alerting when a window or quota is used up (so the overview lists alerts).
WEB_PLANS = """
plans:
  basic:
    name: Basic
    max_keys: 3
    features: [reports]
    limits:
      - {name: per_minute, unit: hour, requests_per_unit: 3}
      - {name: monthly, unit: month, requests_per_unit: 5, calendar: true}
    alerts: {thresholds: [1.0]}
    price:
      currency: EUR
      base_fee: "10.00"
      meters:
        requests: {model: per_unit, unit_price: "0.50"}
  bigger:
    name: Bigger
    features: [reports, exports]
    limits:
      - {name: per_minute, unit: hour, requests_per_unit: 100}
    price: {currency: EUR, base_fee: "90.00"}
"""
# Usage reaches the ledger within 200 ms, alerts and plans edits within a second.
WEB_ENV = {"VIVA_USAGE_FLUSH_INTERVAL": "200ms", "VIVA_ALERTS_INTERVAL": "300ms",
           "VIVA_RELOAD_POLL_INTERVAL": "200ms"}
