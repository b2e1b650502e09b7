"""H2Server: the fast transport's listening socket, its connections and their shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from sidecar.h2 import frames as fr
from sidecar.h2.connection import Connection
from sidecar.h2.native_connection import NativeConnection, NativeWire
from sidecar.h2.options import H2Options
from sidecar.h2.request import Router

log = logging.getLogger("sidecar.h2")

TICK_SECONDS = 1.0


class H2Server:
    """Unary gRPC methods over cleartext HTTP/2 with prior knowledge, the way Envoy's gRPC
    client connects. The methods are the router's: ``path -> async (message) -> message``;
    with ``native``, the connections' wire side runs in Rust (native_connection.py) and the
    calls go to the handler and methods it carries instead.

        server = H2Server(Router({b"/pkg.Service/Method": handler}))
        await server.start("0.0.0.0", 8081)
        ...
        await server.stop(grace=5.0)
    """

    def __init__(self, router: Router, options: H2Options | None = None,
                 native: NativeWire | None = None) -> None:
        self.options = options or H2Options()
        self.router = router
        self.native = native
        self.preface = _server_preface(self.options)
        self.port = 0
        self.refused = 0
        self._refusal_logged = -1e9
        self._connections: set[Connection | NativeConnection] = set()
        self._server: asyncio.Server | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._drained: asyncio.Event | None = None

    # -- Owner protocol (called by connections) ----------------------------------------------

    def register(self, connection: Connection | NativeConnection) -> bool:
        if len(self._connections) >= self.options.max_connections:
            self.refused += 1
            now = time.monotonic()
            if now - self._refusal_logged > 10.0:  # a flood must not flood the log too
                self._refusal_logged = now
                log.warning("refusing connections: %d open (max_connections); %d refused so "
                            "far", len(self._connections), self.refused)
            return False
        self._connections.add(connection)
        return True

    def unregister(self, connection: Connection | NativeConnection) -> None:
        self._connections.discard(connection)
        if not self._connections and self._drained is not None:
            self._drained.set()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> None:
        """Listen on host:port (port 0 picks one; see ``self.port``). OSError if it cannot."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._connection_factory(), _bind_host(host), port, backlog=self.options.backlog,
            reuse_address=True, reuse_port=self.options.reuse_port or None)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("HTTP/2 server on port %d: wire in %s", self.port,
                 "Rust (sidecar._native)" if self.native is not None else "Python")
        self._ticker = loop.call_later(TICK_SECONDS, self._tick)

    async def stop(self, grace: float) -> None:
        """Stop listening, drain every connection (GOAWAY, finish in-flight calls) for up to
        ``grace`` seconds, then drop whatever is left."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        self._drained = asyncio.Event()
        for connection in list(self._connections):
            connection.drain()
        if self._connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), grace)
        for connection in list(self._connections):
            connection.abort()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 1.0)
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    def _connection_factory(self) -> Callable[[], Connection | NativeConnection]:
        native = self.native
        if native is None:
            return lambda: Connection(self)
        return lambda: NativeConnection(self, native)

    @property
    def connections(self) -> int:
        return len(self._connections)

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for connection in list(self._connections):
            try:
                connection.tick(now)
            except Exception:  # one broken connection must not stop the timeouts of others
                log.exception("HTTP/2 connection housekeeping failed")
                connection.abort()
        self._ticker = loop.call_later(TICK_SECONDS, self._tick)


def _server_preface(options: H2Options) -> bytes:
    """Our SETTINGS (only what differs from the defaults) and the connection window raise."""
    settings = {fr.MAX_CONCURRENT_STREAMS: options.max_concurrent_streams,
                fr.MAX_HEADER_LIST_SIZE: options.max_header_list_size}
    if options.stream_window != fr.DEFAULT_WINDOW:
        settings[fr.INITIAL_WINDOW_SIZE] = options.stream_window
    out = fr.settings(settings)
    if options.connection_window > fr.DEFAULT_WINDOW:
        out += fr.window_update(0, options.connection_window - fr.DEFAULT_WINDOW)
    return out


def _bind_host(host: str) -> str | None:
    host = host.strip("[]")
    return host or None
