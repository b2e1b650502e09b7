"""A real Envoy for end-to-end tests: the shipped bootstrap on free ports, started and stopped.

``EnvoyProcess.shipped(grpc_port)`` runs deploy/envoy/envoy.yaml with every port it binds or
dials moved to a free one and its ``ratelimit`` cluster pointed at a test sidecar.
"""

from __future__ import annotations

import http.client
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support import ROOT
from tests.support.ports import free_port
from tests.support.processes import stop_process
from tests.support.servers import envoy_binary, missing

SHIPPED_BOOTSTRAP = ROOT / "deploy" / "envoy" / "envoy.yaml"
# The ports written in the shipped file, by role.
SHIPPED_ADMIN, SHIPPED_LISTENER, SHIPPED_BACKEND, SHIPPED_GRPC = 9901, 10000, 10001, 8081


def require_envoy() -> str:
    binary = envoy_binary()
    if binary is None:
        missing("envoy")
    return str(binary)


def rewrite_ports(text: str, ports: Mapping[int, int]) -> str:
    """``text`` with every ``port_value`` found in ``ports`` replaced by its value.

    Raises if a port to replace is absent, so a changed sample fails loudly instead of silently
    binding its default ports.
    """
    doc = yaml.safe_load(text)
    seen: set[int] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            port = node.get("port_value")
            if isinstance(port, int) and port in ports:
                node["port_value"] = ports[port]
                seen.add(port)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(doc)
    if set(ports) - seen:
        raise ValueError(f"port(s) {sorted(set(ports) - seen)} not found in the bootstrap")
    return str(yaml.safe_dump(doc, sort_keys=False))


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    seconds: float


class EnvoyProcess:
    """``envoy -c <bootstrap>`` in a temp dir; ``start`` returns once admin /ready says LIVE."""

    def __init__(self, bootstrap: str, admin_port: int, listener_port: int) -> None:
        self.binary = require_envoy()
        self.admin_port = admin_port
        self.listener_port = listener_port
        self.dir = Path(tempfile.mkdtemp(prefix="viva-envoy-"))
        self.config_path = self.dir / "envoy.yaml"
        self.config_path.write_text(bootstrap)
        self.log_path = self.dir / "envoy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def shipped(cls, grpc_port: int, bootstrap: Path = SHIPPED_BOOTSTRAP) -> EnvoyProcess:
        """A shipped bootstrap, talking to the sidecar's gRPC port ``grpc_port``."""
        admin, listener = free_port(), free_port()
        text = rewrite_ports(bootstrap.read_text(), {
            SHIPPED_ADMIN: admin, SHIPPED_LISTENER: listener, SHIPPED_BACKEND: free_port(),
            SHIPPED_GRPC: grpc_port})
        return cls(text, admin, listener)

    def start(self, timeout: float = 15.0) -> EnvoyProcess:
        with open(self.log_path, "wb") as log:
            # A dynamic base id keeps Envoys of parallel test runs off each other's shared memory.
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.config_path), "--use-dynamic-base-id",
                 "--concurrency", "1", "-l", "warning"],
                stdout=log, stderr=subprocess.STDOUT, cwd=str(self.dir))
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"envoy exited with {self.proc.returncode}:\n{self.log()}")
            if self._ready():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"envoy not ready within {timeout}s:\n{self.log()}")
            time.sleep(0.05)

    def _ready(self) -> bool:
        url = f"http://127.0.0.1:{self.admin_port}/ready"
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return bool(resp.status == 200 and resp.read().strip() == b"LIVE")
        except (urllib.error.URLError, OSError):
            return False

    def request(self, path: str, method: str = "GET",
                headers: Mapping[str, str] | None = None, timeout: float = 5.0) -> Reply:
        """One HTTP/1.1 request to the listener, on a fresh connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.listener_port, timeout=timeout)
        started = time.monotonic()
        try:
            conn.request(method, path, headers=dict(headers or {}))
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body,
                     time.monotonic() - started)

    def stat(self, name: str) -> int:
        """One counter or gauge from the admin /stats (0 when Envoy has not created it yet)."""
        url = f"http://127.0.0.1:{self.admin_port}/stats?filter=^{name}$"
        with urllib.request.urlopen(url, timeout=2) as resp:
            for line in resp.read().decode().splitlines():
                key, _, value = line.partition(": ")
                if key == name:
                    return int(value)
        return 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
