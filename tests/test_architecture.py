"""The project's own checks, run as part of the suite: the import layers of
docs/architecture.md (import-linter's contracts in pyproject.toml), mypy --strict on sidecar/
and ruff. A change that imports upward, loosens a type or breaks the style fails here."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    found = BIN / name
    if found.exists():
        return str(found)
    located = shutil.which(name)
    if located is None:
        pytest.fail(f"{name} is not installed; expected it from the dev/test extras "
                    "(./scripts/test installs them)", pytrace=False)
    return located


def run(argv: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_import_layers_are_kept() -> None:
    out = run([tool("lint-imports"), "--no-cache"])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_an_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    """The contracts really bite: a copy of the package where the model imports a transport
    is refused, naming the import."""
    shutil.copytree(ROOT / "sidecar", tmp_path / "sidecar",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    model = tmp_path / "sidecar" / "model.py"
    model.write_text(model.read_text() + "\nimport sidecar.transports.http  # noqa\n")
    out = run([tool("lint-imports"), "--no-cache"], cwd=tmp_path,
              env={"PYTHONPATH": str(tmp_path), "PATH": str(BIN)})
    assert out.returncode == 1, out.stdout + out.stderr
    assert "sidecar.model -> sidecar.transports.http" in out.stdout


def test_h2_imports_nothing_else_of_sidecar(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "sidecar", tmp_path / "sidecar",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    frames = tmp_path / "sidecar" / "h2" / "frames.py"
    frames.write_text(frames.read_text() + "\nimport sidecar.errors  # noqa\n")
    out = run([tool("lint-imports"), "--no-cache"], cwd=tmp_path,
              env={"PYTHONPATH": str(tmp_path), "PATH": str(BIN)})
    assert out.returncode == 1, out.stdout + out.stderr
    assert "sidecar.h2.frames -> sidecar.errors" in out.stdout


def test_mypy_strict() -> None:
    out = run([tool("mypy")], timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff() -> None:
    out = run([tool("ruff"), "check", "sidecar", "tests", "bench"])
    assert out.returncode == 0, out.stdout + out.stderr
