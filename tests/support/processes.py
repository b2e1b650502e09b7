"""Processes a test or a benchmark starts, and always stops.

``stop_process`` ends one child (SIGTERM, SIGKILL after a timeout). ``Processes`` starts each
child in a session (and process group) of its own, so stopping it stops whatever it forked too
(Envoy's threads, the sidecar's workers), and its ``with`` block stops everything it started
however the caller ends (an exception, Ctrl-C, SIGTERM); on leaving, ``pgrep -s`` checks each
of those sessions is empty.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

from tests.support import ROOT


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


def pin(cpu: int | None) -> list[str]:
    """A ``taskset`` prefix placing a command on one CPU (nothing when not asked or possible)."""
    if cpu is None or (os.cpu_count() or 1) < 2 or not shutil.which("taskset"):
        return []
    return ["taskset", "-c", str(cpu)]


class Processes:
    """Starts processes, each in its own session; stops every one of them on leaving.

    Inside the ``with`` block SIGTERM and SIGHUP raise SystemExit, so the cleanup also runs when
    the benchmark itself is terminated.
    """

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.sessions: list[int] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="viva-bench-"))
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Processes:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._old[sig] = signal.signal(sig, _exit_on_signal)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.stop_all()
            left = self.leftovers()
            if left:
                print(f"warning: processes left behind: {left}", file=sys.stderr)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
            for sig, old in self._old.items():
                signal.signal(sig, old)

    def start(self, name: str, cmd: Sequence[str], env: dict[str, str] | None = None,
              cpu: int | None = None, stdout: int | IO[bytes] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        log = stdout if stdout is not None else open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen([*pin(cpu), *cmd], env={**os.environ, **(env or {})},
                                stdout=log, stderr=subprocess.STDOUT if stdout is None else None,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                cwd=str(cwd or ROOT))
        self.procs.append((name, proc))
        self.sessions.append(proc.pid)
        return proc

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
        """SIGTERM to the process group, SIGKILL to it after ``timeout``."""
        self.procs = [(n, p) for n, p in self.procs if p is not proc]
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGCONT)
            _signal_group(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        _signal_group(proc.pid, signal.SIGKILL)  # whatever of the group is still there
        proc.wait()

    def stop_all(self) -> None:
        for _, proc in reversed(list(self.procs)):
            self.stop(proc)

    def leftovers(self) -> list[int]:
        """Processes still alive in any session this object started (expected: none)."""
        if not self.sessions or shutil.which("pgrep") is None:
            return []
        out = subprocess.run(["pgrep", "-s", ",".join(map(str, self.sessions))],
                             capture_output=True, text=True, check=False)
        return [int(p) for p in out.stdout.split()]


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
