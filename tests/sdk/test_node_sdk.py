"""The Node.js SDK (sdk/node) with its own toolchain: npm ci (when node_modules is missing or
older than the lock), the ESM + CJS build, tsc --noEmit (strict), Biome, and node --test, whose
tests run sdk/contract against real sidecars and a real Express app."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.sdk.toolchain import SDK, run, sdk_env, tool

pytestmark = pytest.mark.sdk
NODE = SDK / "node"


@pytest.fixture(scope="module")
def npm() -> Iterator[str]:
    """npm, with the dev dependencies installed and the package built."""
    node, npm = tool("node"), tool("npm")
    version = run([node, "--version"], NODE).strip()
    major = int(re.match(r"v(\d+)", version).group(1))  # type: ignore[union-attr]
    assert major >= 20, f"node {version}; the SDK needs Node 20 or later"
    installed = NODE / "node_modules" / ".package-lock.json"
    lock = NODE / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        run([npm, "ci", "--no-audit", "--no-fund"], NODE)
    run([npm, "run", "build"], NODE)
    yield npm


def test_builds_esm_cjs_and_types(npm: str) -> None:
    for build in ("esm", "cjs"):
        for name in ("index.js", "index.d.ts", "client.js", "middleware.js"):
            assert (NODE / "dist" / build / name).exists(), f"dist/{build}/{name}"
    assert '"commonjs"' in (NODE / "dist" / "cjs" / "package.json").read_text()


def test_typecheck_strict(npm: str) -> None:
    run([npm, "run", "typecheck"], NODE)


def test_lint(npm: str) -> None:
    run([npm, "run", "lint"], NODE)


def test_node_tests(npm: str) -> None:
    output = run([npm, "test"], NODE, sdk_env())
    counts = dict(re.findall(r"^# (pass|fail|skipped|cancelled) (\d+)$", output, re.M))
    assert counts.get("fail") == "0" and counts.get("cancelled") == "0", output
    assert counts.get("skipped") == "0", output  # the toolchain ran: nothing may be skipped
    assert int(counts.get("pass", "0")) >= 40, output
