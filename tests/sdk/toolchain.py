"""Running an SDK's own toolchain (go, npm, node) from pytest: the environment its contract
runner needs (the sidecar executable, redis-server), and a command's output on failure."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT
from tests.support.servers import missing, redis_binary

SDK = ROOT / "sdk"


def tool(name: str) -> str:
    """The program's path; fails under CI, skips elsewhere, when it is not installed."""
    found = shutil.which(name)
    if found is None:
        missing(name)
    return str(found)


def sdk_env() -> dict[str, str]:
    """This environment plus VIVA_RATELIMIT_BIN and VIVA_REDIS_SERVER for the runners."""
    sidecar = os.environ.get("VIVA_RATELIMIT_BIN") or str(Path(sys.executable).parent /
                                                          "viva-ratelimit")
    if not Path(sidecar).exists():
        missing(f"the sidecar executable {sidecar}")
    redis = os.environ.get("VIVA_REDIS_SERVER") or redis_binary()
    if redis is None:
        missing("redis-server")
    return {**os.environ, "VIVA_RATELIMIT_BIN": sidecar, "VIVA_REDIS_SERVER": str(redis)}


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 900) -> str:
    """Run a command, failing the test with its output when it does not exit 0."""
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} (in {cwd.relative_to(ROOT)}) exited "
                             f"{done.returncode}:\n{output[-12000:]}")
    return output
