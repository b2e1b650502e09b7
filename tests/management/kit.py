"""Full-mode sidecar processes and a small admin API client for the tests."""

from __future__ import annotations

import http.client
import json
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.servers import SidecarProcess
from tests.transports.rest.kit import LOOPBACK

ROOT_KEY = "test-root-key-0123456789abcdefghijklmnop"

# Hour-long windows: a window boundary is unlikely to fall inside a test on real time.
PLANS = """
plans:
  basic:
    name: Basic
    max_keys: 3
    features: [reports]
    limits:
      - {name: per_minute, unit: hour, requests_per_unit: 3}
      - {name: monthly, unit: month, requests_per_unit: 5, calendar: true}
  bigger:
    name: Bigger
    features: [reports, exports]
    limits:
      - {name: per_minute, unit: hour, requests_per_unit: 100}
"""

RULES = """
domain: api_requests
descriptors:
  - key: identifier
    rate_limit: {unit: hour, requests_per_unit: 3}
"""


@dataclass
class Database:
    """A catalog database for sidecar processes: their environment, and every byte it holds
    (to look for secrets)."""

    env: dict[str, str]
    dump: Callable[[], bytes]


def write_config(folder: Path, plans: str = PLANS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "api.yaml").write_text(textwrap.dedent(RULES))
    (folder / "plans.yaml").write_text(textwrap.dedent(plans))
    return folder


class FullSidecar(SidecarProcess):
    """``MODE=full python -m sidecar serve`` with a root key, on free ports."""

    def __init__(self, config: Path, data_dir: Path, env: dict[str, str] | None = None,
                 args: list[str] | None = None) -> None:
        super().__init__(config, {**LOOPBACK, "MODE": "full", "VIVA_DATA_DIR": str(data_dir),
                                  "VIVA_ROOT_KEY": ROOT_KEY, **(env or {})}, args)
        self.data_dir = data_dir

    def api(self) -> Admin:
        return Admin("127.0.0.1", self.http_port)

    def kill(self) -> None:
        """SIGKILL: the process ends without any clean-up, as in a crash."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self._log.close()
        self.proc = None


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: Any

    def __getitem__(self, name: str) -> Any:
        return self.body[name]


class Admin:
    """The admin API over real HTTP (one connection per call)."""

    def __init__(self, host: str, port: int, root_key: str = ROOT_KEY) -> None:
        self.host, self.port, self.root_key = host, port, root_key

    def call(self, method: str, path: str, body: Any = None, key: str | None = "",
             headers: dict[str, str] | None = None) -> Reply:
        sent = dict(headers or {})
        token = self.root_key if key == "" else key
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        data = None if body is None else (body if isinstance(body, bytes)
                                          else json.dumps(body).encode())
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            conn.request(method, path, body=data, headers=sent)
            resp = conn.getresponse()
            raw = resp.read()
            found = {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()
        parsed = json.loads(raw) if raw and found.get("content-type", "").startswith(
            "application/json") else raw
        return Reply(resp.status, found, parsed)

    def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return self.call("POST", path, body, **kw)

    def get(self, path: str, **kw: Any) -> Reply:
        return self.call("GET", path, **kw)

    def patch(self, path: str, body: Any, **kw: Any) -> Reply:
        return self.call("PATCH", path, body, **kw)

    def customer(self, plan: str = "basic", **more: Any) -> dict[str, Any]:
        reply = self.post("/v1/customers", {"name": "Acme", "plan": plan, **more})
        assert reply.status == 201, reply
        return dict(reply.body)

    def key(self, customer_id: str, **more: Any) -> dict[str, Any]:
        reply = self.post("/v1/keys", {"customer_id": customer_id, **more})
        assert reply.status == 201, reply
        return dict(reply.body)

    def verify(self, key: str, **more: Any) -> Reply:
        reply = self.post("/v1/keys/verify", {"key": key, **more})
        assert reply.status == 200, reply
        return reply

    def code(self, key: str, **more: Any) -> str:
        return str(self.verify(key, **more)["code"])
