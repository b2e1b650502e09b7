"""Which hot path the sidecars of a test run: the native one when ``sidecar._native`` is built
and VIVA_NATIVE does not turn it off, else the pure-Python one. CI runs the engine, store and
transport suites both ways (``./scripts/test`` with VIVA_NATIVE=false a second time), so a test
that checks something only one path does asks here."""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType

from sidecar.envvars import parse_bool


def native_allowed() -> bool:
    """Whether VIVA_NATIVE leaves the native path on (built or not)."""
    return parse_bool("VIVA_NATIVE", os.environ.get("VIVA_NATIVE", "true"))


def native_runs() -> bool:
    if not native_allowed():
        return False
    return importlib.util.find_spec("sidecar._native") is not None


def native_module() -> ModuleType | None:
    """``sidecar._native`` when ``native_runs()``, else None."""
    return importlib.import_module("sidecar._native") if native_runs() else None
