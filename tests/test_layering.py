"""Layering: standalone code never imports full mode, and a standalone sidecar does not load
it (nor SQLAlchemy, Alembic and the database drivers) at all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import ROOT


def test_full_mode_is_imported_only_by_the_composition_root() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint), "--no-cache", "--contract", "full-mode",
                             "--contract", "layers"], capture_output=True, text=True,
                            cwd=str(ROOT), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "only app and cli import full mode" in result.stdout and "KEPT" in result.stdout


def test_a_standalone_sidecar_loads_nothing_of_full_mode() -> None:
    code = ("import sys\n"
            "from sidecar.app import Sidecar\n"
            "from sidecar.settings import Settings\n"
            "Sidecar(Settings.load({}, {}))\n"
            "found = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('sqlalchemy', 'alembic', 'asyncpg', 'aiosqlite') "
            "or m.startswith('sidecar.management'))\n"
            "print(found)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=str(ROOT), timeout=60, check=True)
    assert result.stdout.strip() == "[]"
