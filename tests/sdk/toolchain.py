"""Running an SDK's own test suite (Maven, Ruby, …) from pytest, so that ./scripts/test runs
every SDK: the toolchain is found or reported missing (a failure under CI, a skip elsewhere),
the suite gets the sidecar executable and redis-server of this environment, and its output is
shown when it fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.servers import missing, redis_binary


def require(*programs: str) -> dict[str, str]:
    """The path of each program on the PATH; missing() for the first one absent."""
    found = {}
    for name in programs:
        path = shutil.which(name)
        if path is None:
            missing(name)
        found[name] = str(path)
    return found


def suite_env() -> dict[str, str]:
    """This environment plus where the suites find the sidecar and redis-server."""
    sidecar = Path(sys.executable).parent / "viva-ratelimit"
    if not sidecar.exists():
        missing(f"the sidecar executable {sidecar}")
    redis = redis_binary()
    if redis is None:
        missing("redis-server")
    return {**os.environ, "VIVA_RATELIMIT_BIN": str(sidecar), "VIVA_REDIS_SERVER": str(redis)}


@dataclass
class Run:
    returncode: int
    output: str
    seconds: float


def run_suite(command: list[str], cwd: Path, timeout: float) -> Run:
    """Run ``command`` in ``cwd``; the assertion message of a failure carries its output."""
    started = time.monotonic()
    done = subprocess.run(
        command,
        cwd=cwd,
        env=suite_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    result = Run(done.returncode, done.stdout, time.monotonic() - started)
    assert result.returncode == 0, (
        f"{' '.join(command)} (in {cwd}) exited with {result.returncode} after "
        f"{result.seconds:.0f}s:\n{tail(result.output)}"
    )
    return result


def tail(text: str, lines: int = 150) -> str:
    return "\n".join(text.splitlines()[-lines:])


def in_ci() -> bool:
    return bool(os.environ.get("CI"))
