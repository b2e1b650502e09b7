"""The HTTP port: a fast HTTP/1.1 path for the check endpoints in front of aiohttp.

Each connection starts on ``FastConnection``, whose parser (``sidecar._native``, native/
src/http1) reads a whole read buffer at once. With the native engine (an ``Http1Service``),
every complete request on a check endpoint is decided inside that read and its answer made
there, without a Python object of its own; on Redis it is held for the event-loop turn's
batch, which puts its answer in place (``delivered``). Without it, such a request becomes an
``Http1Call`` (the engine's arguments; its answer is written by the same parser) for the
Python engine. A request only the general path's code can judge becomes an
``Http1Referral`` (its parts, answered by that code); while one is waiting, the calls after
it on its connection go to Python too (as ``Http1Call``), so requests are charged in the
order they came, as aiohttp charges them. Answers leave in request order.

The first request that is not the fast path's (the admin API, /metrics, an unusual head, a
body over its limit, bytes that are not HTTP) hands the connection to aiohttp for the rest
of its life: once every answer before it is written, aiohttp's protocol takes the
transport and the bytes from that request on, exactly as if it had read them itself.

Bounds, as the general path's: a connection with no request in progress is closed after
``keepalive_timeout`` (aiohttp's default, counted from the connection's start and from each
answer), so slow and idle clients are dropped as they are there; a head is at most 16 KiB and
a body at most its endpoint's limit before aiohttp takes over (and refuses it as it does);
reading pauses while the peer does not read its answers or ``max_pending`` requests wait.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol, cast

from aiohttp import web

log = logging.getLogger("sidecar.http1")

# What the native parser hands back for one request (types of sidecar._native).
Call = Any
Referral = Any


class Endpoints(Protocol):
    """What answers the requests the fast path reads."""

    @property
    def config(self) -> Any:  # sidecar._native.Http1Config
        ...

    async def call(self, call: Call) -> bytes:
        """The framed answer of a request for the engine."""

    async def refer(self, referral: Referral, remote: str) -> bytes:
        """The framed answer of a request the general path's code answers."""


@dataclass(frozen=True)
class NativeEngineSide:
    """The native engine behind the fast path: ``service`` (an ``Http1Service``) answers the
    calls inside each read; ``on_held`` is told when a read left calls waiting for Redis."""

    service: Any
    on_held: Callable[[], None] | None = None


@dataclass(frozen=True)
class Http1Options:
    # aiohttp's RequestHandler default (the general path's bound on idle and slow clients).
    keepalive_timeout: float = 3630.0
    # Requests read ahead of their answers on one connection; past it, reading pauses.
    max_pending: int = 256
    # Connections waiting to be accepted (aiohttp's default is 128): as the gRPC transport's.
    backlog: int = 1024


class FastConnection(asyncio.Protocol):
    """One connection while the fast path reads it."""

    def __init__(self, site: FastSite) -> None:
        self.site = site
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser: Any = None
        self.remote = ""
        self._queue: collections.deque[Any] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self._paused: set[str] = set()  # why reading is paused: write, queue, handoff, end
        self._write_paused = False
        self._handoff: list[bytes] | None = None  # bytes for aiohttp, once answers are out
        self._closing = False  # close once every answer is written
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:  # as aiohttp's protocol sets them
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if isinstance(peer, tuple) else ""
        engine = self.site.engine
        self.parser = self.site.native.Http1Connection(
            self.site.endpoints.config, engine.service if engine is not None else None)
        self.site.connections.add(self)
        self._touch()

    def data_received(self, data: bytes) -> None:
        if self._handoff is not None:
            self._handoff.append(data)  # read before the pause took effect
            return
        if self._closing:
            return
        ready, items, handoff, closed, held = self.parser.feed(data, self)
        self._write(ready)
        if held and self.site.engine is not None and self.site.engine.on_held is not None:
            self.site.engine.on_held()
        if items:
            self._queue.extend(items)
            if self._task is None:
                self._task = self.loop.create_task(self._drain())
        if self.parser.pending > self.site.options.max_pending:
            self._pause("queue")
        if handoff is not None:
            self._handoff = [handoff]
            self._pause("handoff")
        elif closed:
            self._closing = True
            self._pause("end")
        self._settle()

    def eof_received(self) -> bool | None:
        return None  # as aiohttp: the transport closes (answers already written are sent)

    def connection_lost(self, exc: Exception | None) -> None:
        self.site.connections.discard(self)
        self.transport = None
        self.parser = None
        if self._timer is not None:
            self._timer.cancel()
        # The call in progress finishes (its hits are counted), its answer going nowhere; the
        # pipelined ones after it are dropped unanswered, as aiohttp drops them.
        self._queue.clear()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._pause("write")

    def resume_writing(self) -> None:
        self._write_paused = False
        self._resume("write")
        self._settle()

    # -- answering, in order ----------------------------------------------------------------------

    def delivered(self) -> None:
        """A Redis batch answered calls this connection's reads held: write what that made
        ready (the parser keeps each answer in its place)."""
        if self.parser is None:
            return
        self._write(self.parser.output())
        if self.parser.pending <= self.site.options.max_pending // 2:
            self._resume("queue")
        self._settle()

    async def _drain(self) -> None:
        """Answer the items Python answers, one at a time (the parser keeps every answer in
        its place: what becomes ready in order is written at once)."""
        try:
            while self._queue:
                item = self._queue.popleft()
                answer = await self._answer(item)
                if self.parser is not None:
                    self._write(self.parser.fill(item.slot, answer))
                    if self.parser.pending <= self.site.options.max_pending // 2:
                        self._resume("queue")
        finally:
            self._task = None
        self._settle()

    async def _answer(self, item: Any) -> bytes:
        endpoints = self.site.endpoints
        try:
            if isinstance(item, self.site.native.Http1Call):
                return await endpoints.call(item)
            return await endpoints.refer(item, self.remote)
        except Exception:  # the endpoints answer every failure; this is a defect
            log.exception("unexpected error answering an HTTP request; closing its connection")
            self._queue.clear()
            if self.transport is not None:
                self.transport.close()
            return b""

    def _write(self, data: bytes) -> None:
        if not data:
            return
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
        self._touch()

    def _settle(self) -> None:
        """Once every answer is written: close, or hand the connection to aiohttp."""
        if self._task is not None or self.transport is None or self.parser.pending:
            return
        if self._closing:
            self.transport.close()
        elif self._handoff is not None and not self._write_paused:
            self._hand_off()

    def _hand_off(self) -> None:
        transport = self.transport
        assert transport is not None and self._handoff is not None
        data = b"".join(self._handoff)
        self.site.connections.discard(self)
        self.site.handoffs += 1
        if self._timer is not None:
            self._timer.cancel()
        self.transport = None
        self.parser = None
        handler = self.site.aiohttp_protocol()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        transport.resume_reading()  # before aiohttp's own reading (it may pause it)
        if data:
            handler.data_received(data)

    # -- reading and idle ---------------------------------------------------------------------

    def _pause(self, why: str) -> None:
        if not self._paused and self.transport is not None:
            self.transport.pause_reading()
        self._paused.add(why)

    def _resume(self, why: str) -> None:
        if why in self._paused:
            self._paused.discard(why)
            if not self._paused and self.transport is not None:
                self.transport.resume_reading()

    def _touch(self) -> None:
        """An answer went out (or the connection began): the idle clock starts again."""
        timeout = self.site.options.keepalive_timeout
        self._deadline = self.loop.time() + timeout
        if self._timer is None and timeout > 0:
            self._timer = self.loop.call_at(self._deadline, self._idle)

    def _idle(self) -> None:
        self._timer = None
        if self.transport is None:
            return
        if self.loop.time() < self._deadline:
            self._timer = self.loop.call_at(self._deadline, self._idle)
        elif self.parser is None or not self.parser.pending:
            self.transport.close()  # nothing in progress: aiohttp closes it too
        else:
            self._touch()

    def shutdown(self) -> None:
        """Stop reading; close once the answers in progress are written."""
        self._closing = True
        self._handoff = None
        self._pause("end")
        self._settle()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class FastSite(web.TCPSite):
    """aiohttp's TCP site with the fast path in front of its protocol."""

    def __init__(self, runner: web.AppRunner, host: str | None, port: int,
                 endpoints: Endpoints, native: ModuleType, options: Http1Options,
                 grace: float, engine: NativeEngineSide | None = None, **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.grace = grace
        self.endpoints = endpoints
        self.native = native
        self.engine = engine
        self.options = options
        self.connections: set[FastConnection] = set()
        self.handoffs = 0  # connections handed to aiohttp so far
        server = runner.server
        assert server is not None
        self.aiohttp_protocol: Callable[[], asyncio.Protocol] = server

    async def start(self) -> None:
        self._runner._reg_site(self)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: FastConnection(self), self._host, self._port, backlog=self._backlog,
            reuse_address=self._reuse_address, reuse_port=self._reuse_port)
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port

    async def stop(self) -> None:
        """No new connections; answers in progress are written (within the runner's shutdown
        timeout), then every fast connection is closed."""
        await super().stop()
        for conn in list(self.connections):
            conn.shutdown()
        deadline = asyncio.get_running_loop().time() + self.grace
        while self.connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()


async def serve_http(app: web.Application, host: str, port: int, *, grace: float,
                     reuse_port: bool = False, endpoints: Endpoints | None = None,
                     native: ModuleType | None = None,
                     options: Http1Options | None = None,
                     engine: NativeEngineSide | None = None) -> web.AppRunner:
    """``app`` on ``host:port``; with ``endpoints`` (and the native extension) the fast
    HTTP/1.1 path answers the check endpoints in front of it, with the native ``engine``
    when given (else through ``endpoints``, on the Python engine)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=grace)
    await runner.setup()
    site: web.TCPSite
    options = options or Http1Options()
    if endpoints is not None and native is not None:
        site = FastSite(runner, host or None, port, endpoints, native, options, grace, engine,
                        reuse_address=True, reuse_port=reuse_port or None,
                        backlog=options.backlog)
    else:
        site = web.TCPSite(runner, host or None, port, reuse_address=True,
                           reuse_port=reuse_port or None, backlog=options.backlog)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner

