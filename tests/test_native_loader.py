"""Which engine path runs: one clear log line either way, VIVA_NATIVE=0 forces Python."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys

import pytest

from sidecar.errors import SettingsError
from sidecar.limiter import native

BUILT = importlib.util.find_spec("sidecar._native") is not None


def test_viva_native_0_forces_the_python_path(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="sidecar.native"):
        assert native.load({"VIVA_NATIVE": "0"}) is None
    assert caplog.messages == ["engine path: pure Python (VIVA_NATIVE=0)"]


def test_the_native_path_when_built(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="sidecar.native"):
        module = native.load({})
    if BUILT:
        assert module is not None
        assert caplog.messages == [f"engine path: native (sidecar._native {module.__version__})"]
    else:
        assert module is None
        assert caplog.messages[0].startswith("engine path: pure Python (sidecar._native is not "
                                             "built")


def test_a_bad_value_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match=r"^VIVA_NATIVE='perhaps' is not a boolean"):
        native.load({"VIVA_NATIVE": "perhaps"})


def test_the_python_path_when_not_built() -> None:
    # A fresh interpreter where the extension cannot be imported, as on a machine without cargo.
    code = ("import sys, logging; sys.modules['sidecar._native'] = None; "
            "logging.basicConfig(level=logging.INFO, format='%(message)s'); "
            "from sidecar.limiter import native; assert native.load({}) is None")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stderr.startswith("engine path: pure Python (sidecar._native is not built:")
