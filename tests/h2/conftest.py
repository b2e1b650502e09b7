"""Fixtures for the fast transport: an engine on the memory store, and H2Server running in a
thread with its own event loop, so that blocking clients (grpcio sync, h2load, h2spec, raw
sockets) can talk to it from the test.

Every test that starts a server runs twice, once per connection implementation (the ``wire``
fixture): the pure-Python connection and the one whose wire side is in Rust (sidecar._native;
skipped when it is not built, a failure under CI). Modules that set ``RUST_ENGINE = True``
(the conformance and interop tests) run a third time, on the whole native path: the native
wire with the native engine answering inside Rust (a test's own Python Engine becomes its
native twin: same rules, options and clock; stand-in engines stay as they are)."""

from __future__ import annotations

import asyncio
import importlib
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sidecar.h2 import H2Options, H2Server, NativeMethods
from sidecar.h2 import server as h2_server_module
from sidecar.limiter.engine import Engine
from sidecar.limiter.native import NativeEngineAdapter
from sidecar.observability.health import Health
from sidecar.observability.metrics import Metrics
from sidecar.rules.loader import RuleFile, build_rules
from sidecar.service import RateLimitService
from sidecar.storage.memory import MemoryStore
from sidecar.transports.fast import export_native_counts, rls_server
from tests.support.servers import missing

RULES = """\
domain: test
descriptors:
  - key: client
    rate_limit:
      unit: minute
      requests_per_unit: 3
  - key: bulk
    rate_limit:
      unit: second
      requests_per_unit: 1000000000
"""


WIRES = ("python", "native")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "wire" in metafunc.fixturenames:
        rust = getattr(metafunc.module, "RUST_ENGINE", False)
        metafunc.parametrize("wire", (*WIRES, "rust") if rust else WIRES, indirect=True)


def native_module() -> Any:
    """sidecar._native with its HTTP/2 connection; skips (fails under CI) when not built."""
    try:
        return importlib.import_module("sidecar._native")
    except ImportError:
        missing("sidecar._native (the Rust extension: pip install -e . with cargo on the PATH)")
    raise AssertionError("unreachable")


@pytest.fixture
def wire(request: pytest.FixtureRequest) -> str:
    """Which connection the servers of a test use: "python" or "native"."""
    name: str = getattr(request, "param", "python")
    if name != "python":
        native_module()
    return name


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "h2spec: runs the h2spec conformance tool (Go)")
    config.addinivalue_line("markers", "h2load: runs nghttp2's h2load against the server")


def make_engine(rules: str | None = RULES, clock: Callable[[], float] | None = None) -> Engine:
    engine = Engine(MemoryStore(), clock=clock or (lambda: 1_000_000.0))
    if rules is not None:
        engine.set_rules(build_rules([RuleFile("rules.yaml", rules)]))
    return engine


def rust_twin(native: Any, engine: Engine, health: Any, metrics: Metrics
              ) -> tuple[NativeEngineAdapter, Any]:
    """The native engine with ``engine``'s rules, options and clock, and the FastService that
    answers the wire's calls with it (health checks too when ``health`` is a Health)."""
    twin = NativeEngineAdapter(native, engine.options, engine.clock)
    if engine.rules is not None:
        twin.set_rules(engine.rules)
    services = ["", "ratelimit"] if isinstance(health, Health) else []
    fast = native.FastService(twin.engine, services=services, clock=engine.clock)
    if isinstance(health, Health):
        health.subscribe(lambda ok: setattr(fast, "serving", ok))
    metrics.add_source(lambda: twin.export_stats(metrics))
    return twin, fast


def answered_in_rust(server: H2Server) -> None:
    """Make a rate-limit call that reaches the Python methods fail the test: with the native
    engine as the wire's handler, every one is answered inside Rust."""
    assert server.native is not None

    async def refuse(request: Any) -> Any:
        raise AssertionError(f"a rate-limit call was left to Python: {request!r}")

    methods = NativeMethods(refuse, server.native.methods.health)
    server.native = replace(server.native, methods=methods)


class ThreadedServer:
    """An H2Server on 127.0.0.1:<free port>, served by a loop in a background thread."""

    def __init__(self, engine: Any, options: H2Options | None = None,
                 health: Any = None, metrics: Metrics | None = None, port: int = 0,
                 native: Any = None, rust_engine: bool = False) -> None:
        self.requested_port = port
        self.health = health if health is not None else Health()
        self.metrics = metrics or Metrics()
        fast = None
        if rust_engine and isinstance(engine, Engine):
            engine, fast = rust_twin(native, engine, self.health, self.metrics)
        service = RateLimitService(engine, self.metrics)
        if fast is not None:
            self.metrics.add_source(export_native_counts(native, fast, service))
        self.server = rls_server(service, self.health, options, native=native,
                                 native_service=fast)
        if fast is not None:
            answered_in_rust(self.server)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="h2-server", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> ThreadedServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError("H2Server did not start")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.start("127.0.0.1", self.requested_port))
        except BaseException as exc:  # report to the test thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's loop and return its result."""
        async def run() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def stop(self, grace: float = 1.0) -> None:
        """Graceful stop (what the sidecar does on SIGTERM), then end the thread."""
        if not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self.server.stop(grace), self.loop)
        future.result(grace + 10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def stop_async(self, grace: float) -> Any:
        """Begin a graceful stop without waiting for it (a concurrent.futures.Future)."""
        return asyncio.run_coroutine_threadsafe(self.server.stop(grace), self.loop)


@pytest.fixture
def fast_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the servers' timeout housekeeping every 50 ms instead of every second."""
    monkeypatch.setattr(h2_server_module, "TICK_SECONDS", 0.05)


@pytest.fixture
def serve(wire: str) -> Iterator[Callable[..., ThreadedServer]]:
    """serve(engine=None, options=None, health=None) -> a started ThreadedServer (with the
    test's ``wire``)."""
    started: list[ThreadedServer] = []

    def start(engine: Any = None, options: H2Options | None = None, health: Any = None,
              metrics: Metrics | None = None, port: int = 0) -> ThreadedServer:
        server = ThreadedServer(engine if engine is not None else make_engine(), options,
                                health, metrics, port,
                                native_module() if wire != "python" else None,
                                rust_engine=wire == "rust").start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop(grace=0.2)


@pytest.fixture
def server(serve: Callable[..., ThreadedServer]) -> ThreadedServer:
    return serve()


def find_tool(name: str, package: str) -> str:
    """A tool from PATH or Go's bin folder; fails under CI when absent, skips otherwise."""
    found = shutil.which(name)
    if found:
        return found
    for folder in (os.environ.get("GOBIN"), Path(os.environ.get("GOPATH", "~/go")) / "bin"):
        if folder:
            candidate = Path(folder).expanduser() / name
            if candidate.exists():
                return str(candidate)
    missing(f"{name} ({package})")
    raise AssertionError("unreachable")
