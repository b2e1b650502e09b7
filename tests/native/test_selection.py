"""Which path runs: the native one when sidecar._native is built and VIVA_NATIVE is not false,
the pure-Python one otherwise, and the start-up log says which."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sidecar.h2.connection import Connection
from sidecar.h2.native_connection import NativeConnection
from sidecar.limiter.native import load
from sidecar.observability.health import Health
from sidecar.observability.metrics import Metrics
from sidecar.service import RateLimitService
from sidecar.settings import Settings
from sidecar.transports.fast import rls_server
from tests.h2.conftest import make_engine, native_module


def test_the_extension_when_built_and_allowed() -> None:
    module = native_module()
    extension = load(True)
    assert extension.module is module
    assert extension.reason == f"sidecar._native {module.__version__}"


def test_viva_native_false_declines_it() -> None:
    native_module()
    assert load(False).module is None
    assert load(False).reason == "VIVA_NATIVE=false"
    assert Settings.load(env={"VIVA_NATIVE": "0"}).native is False
    assert Settings.load(env={}).native is True


def test_a_bad_value_is_a_settings_error() -> None:
    from sidecar.errors import SettingsError

    with pytest.raises(SettingsError, match=r"^VIVA_NATIVE='perhaps' is not a boolean"):
        Settings.load(env={"VIVA_NATIVE": "perhaps"})


def test_without_the_extension() -> None:
    # A fresh interpreter where the extension cannot be imported, as on a machine without cargo.
    code = ("import sys; sys.modules['sidecar._native'] = None; "
            "from sidecar.limiter.native import load; e = load(True); "
            "assert e.module is None; print(e.reason)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.startswith("sidecar._native is not built:")


@pytest.mark.parametrize("native", [True, False])
async def test_the_fast_transport_connection(native: bool) -> None:
    module = native_module() if native else None
    server = rls_server(RateLimitService(make_engine(), Metrics()), Health(), native=module)
    await server.start("127.0.0.1", 0)
    try:
        connection = server._connection_factory()()
        assert isinstance(connection, NativeConnection if native else Connection)
    finally:
        await server.stop(0.1)
