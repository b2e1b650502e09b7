"""The Go SDK (sdk/go) with its own toolchain: gofmt, go vet and go test -race on both modules
(the core, and the Gin middleware's), whose tests run sdk/contract against real sidecars."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sdk.toolchain import SDK, run, sdk_env, tool

pytestmark = pytest.mark.sdk


def test_the_core_module_has_no_dependencies() -> None:
    assert "require" not in (SDK / "go" / "go.mod").read_text()


@pytest.mark.parametrize("module", [SDK / "go", SDK / "go" / "ginlimiter"], ids=["core", "gin"])
def test_go_module(module: Path) -> None:
    go, env = tool("go"), sdk_env()
    unformatted = run([tool("gofmt"), "-l", "."], module).strip()
    assert not unformatted, f"gofmt would change: {unformatted}"
    run([go, "vet", "./..."], module, env)
    output = run([go, "test", "-race", "-count=1", "-v", "./..."], module, env)
    assert "--- SKIP" not in output, output  # the toolchain ran: no vector may be skipped
    assert "--- PASS: TestContract" in output, output
