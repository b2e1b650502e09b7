"""Which hot path the sidecars of a test run: the native one when ``sidecar._native`` is built
and VIVA_NATIVE does not turn it off, else the pure-Python one. CI runs the engine, store and
transport suites both ways (``./scripts/test`` with VIVA_NATIVE=false a second time), so a test
that checks something only one path does asks here."""

from __future__ import annotations

import importlib.util
import os

from sidecar.envvars import parse_bool


def native_runs() -> bool:
    if not parse_bool("VIVA_NATIVE", os.environ.get("VIVA_NATIVE", "true")):
        return False
    return importlib.util.find_spec("sidecar._native") is not None
