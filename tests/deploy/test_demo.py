"""deploy/local/run-demo.sh: lint-clean, and run for real — it brings redis-server, the sidecar
and Envoy up, Envoy limits /slow, and it leaves no process behind on exit or on Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.deploy.tools import require_envoy, require_tool
from tests.support import ROOT
from tests.support.servers import missing, redis_binary

DEMO = ROOT / "deploy" / "local" / "run-demo.sh"
PORT_IN_USE = 3  # the script's exit status when one of its fixed ports is taken


def test_syntax() -> None:
    out = subprocess.run(["bash", "-n", str(DEMO)], capture_output=True, text=True, timeout=30,
                         check=False)
    assert out.returncode == 0, out.stderr


def test_shellcheck() -> None:
    shellcheck = require_tool("shellcheck")
    out = subprocess.run([shellcheck, "--severity=style", str(DEMO)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_executable_with_a_bash_shebang() -> None:
    assert os.access(DEMO, os.X_OK)
    assert DEMO.read_text().startswith("#!/usr/bin/env bash\n")


def session_processes(sid: int) -> dict[int, str]:
    """Processes still in the demo's session (it was started as a session leader)."""
    left = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            left[int(stat.parent.name)] = text.split(")", 1)[0] + ")"
    return left


def kill_session(proc: subprocess.Popen[str]) -> None:
    """Whatever a failed run left: the script and everything it started."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for pid in session_processes(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def needs_servers() -> None:
    require_envoy()
    if redis_binary() is None:
        missing("redis-server")


def ports_taken(code: int, output: str) -> None:
    if code == PORT_IN_USE:
        if os.environ.get("CI"):
            pytest.fail(f"the demo's ports are in use: {output}", pytrace=False)
        pytest.skip(f"the demo's ports are in use: {output.strip()}")


def test_smoke_run_leaves_nothing_behind() -> None:
    needs_servers()
    # A generous REDIS_TIMEOUT (the sidecar reads it from the environment the demo inherits):
    # on a busy machine the first call, which opens the connection and loads the scripts, can
    # exceed the default 15 ms and be allowed by the failure policy instead of counted.
    proc = subprocess.Popen([str(DEMO), "--smoke"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, text=True,
                            env={**os.environ, "REDIS_TIMEOUT": "1s"})
    try:
        output, _ = proc.communicate(timeout=120)
        left = session_processes(proc.pid)
    finally:
        kill_session(proc)
    ports_taken(proc.returncode, output)
    assert proc.returncode == 0, output
    assert "GET /slow x4 -> 200 200 200 429" in output
    assert "curl" in output  # the examples were printed
    assert not left, f"left running: {left}\n{output}"
    assert "did not stop on SIGTERM" not in output


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stops_everything_on_a_signal(sig: signal.Signals) -> None:
    needs_servers()
    proc = subprocess.Popen([str(DEMO), "--duration", "120"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, text=True)
    lines: list[str] = []
    up = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Stopping by itself" in line:
                up.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not up.wait(0.2):
            if proc.poll() is not None or time.monotonic() > deadline:
                break
        if not up.is_set():
            proc.wait(timeout=30)
            reader.join(5)
            ports_taken(proc.returncode, "".join(lines))
            raise AssertionError("the demo did not come up:\n" + "".join(lines))
        # Ctrl-C in a terminal: SIGINT to the script (and, there, its whole process group).
        proc.send_signal(sig)
        proc.wait(timeout=30)
        reader.join(5)
        left = session_processes(proc.pid)
    finally:
        kill_session(proc)
    output = "".join(lines)
    assert proc.returncode == 128 + sig, output
    assert "stopped redis sidecar envoy" in output
    assert not left, f"left running: {left}\n{output}"
    assert "did not stop on SIGTERM" not in output
