"""Which connection the fast transport runs: the native one when sidecar._native is built and
VIVA_NATIVE is not 0, the Python one otherwise, and one log line says which."""

from __future__ import annotations

import sys

import pytest

from sidecar.server.h2 import H2Options, H2Server
from sidecar.server.h2.connection import Connection
from sidecar.server.h2.native_connection import NativeConnection, load_native
from sidecar.server.health import Health
from sidecar.server.metrics import Metrics
from tests.h2.conftest import make_engine, native_module


def server(native: bool | None = None) -> H2Server:
    return H2Server(make_engine(), Health(), Metrics(), H2Options(native=native))


async def test_native_when_built(monkeypatch: pytest.MonkeyPatch,
                                 caplog: pytest.LogCaptureFixture) -> None:
    module = native_module()
    monkeypatch.delenv("VIVA_NATIVE", raising=False)
    h2 = server()
    assert h2.native is module
    caplog.set_level("INFO", logger="sidecar.h2")
    await h2.start("127.0.0.1", 0)
    try:
        assert isinstance(h2._connection_factory()(), NativeConnection)
    finally:
        await h2.stop(0.1)
    assert "HTTP/2 wire in Rust (sidecar._native)" in caplog.text


async def test_viva_native_0_keeps_python(monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("VIVA_NATIVE", "0")
    h2 = server()
    assert h2.native is None
    caplog.set_level("INFO", logger="sidecar.h2")
    await h2.start("127.0.0.1", 0)
    try:
        assert isinstance(h2._connection_factory()(), Connection)
    finally:
        await h2.stop(0.1)
    assert "HTTP/2 wire in Python" in caplog.text


def test_options_decide_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    module = native_module()
    monkeypatch.setenv("VIVA_NATIVE", "0")
    assert server(native=True).native is module
    monkeypatch.delenv("VIVA_NATIVE")
    assert server(native=False).native is None


def test_without_the_extension(monkeypatch: pytest.MonkeyPatch) -> None:
    # As on an install without cargo: importing sidecar._native fails.
    monkeypatch.setitem(sys.modules, "sidecar._native", None)
    assert load_native(None) is None
    with pytest.raises(RuntimeError, match=r"sidecar\._native is not built"):
        load_native(True)
