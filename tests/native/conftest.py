"""The native engine's tests need the extension: skipped when it is not built, except under CI,
where its absence is a failure (``.ci/run`` builds it)."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


@pytest.fixture(scope="session")
def native() -> ModuleType:
    try:
        return importlib.import_module("sidecar._native")
    except ImportError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"sidecar._native is required in CI but was not built: {exc}",
                        pytrace=False)
        pytest.skip(f"sidecar._native is not built: {exc}")
