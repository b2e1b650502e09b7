"""One HTTP/2 connection whose wire side runs in Rust (``sidecar._native.H2Connection``): the
same protocol as ``connection.Connection``, frame for frame, with Python keeping the socket
and the timers.

A read costs one call into Rust, which parses every frame in it, decodes the header blocks and
the request messages, and offers each call to the wire's handler (an object of the extension
this library does not look into: it may answer calls inside Rust, or hold them and answer them
later through ``deliver``). Calls it leaves come back decoded and run as Python methods, as on
the Python connection (eagerly when they can, as Tasks when they suspend); their answers are
collected and cross back into Rust in one batch per flush, which encodes the responses and
frames them within the peer's flow control. Nothing of the protocol is decided here: this
class only moves bytes, calls and timers between asyncio and the wire.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from types import ModuleType
from typing import Any, Protocol, cast

from sidecar.h2.calls import outcome, start_call
from sidecar.h2.errors import ErrorCode
from sidecar.h2.grpc_wire import GrpcError, Status
from sidecar.h2.options import H2Options

log = logging.getLogger("sidecar.h2")

LINGER_SECONDS = 1.0  # as connection.LINGER_SECONDS: read and drop late input before closing

# A decoded RateLimitRequest: (domain, descriptors, hits_addend), each descriptor
# (entries, hits_addend or None, (requests_per_unit, unit) or None).
NativeDescriptor = tuple[tuple[tuple[str, str], ...], int | None, tuple[int, int] | None]
NativeRequest = tuple[str, tuple[NativeDescriptor, ...], int]
# A RateLimitResponse: (overall_code, statuses, response_headers_to_add), each status
# (code, (name, requests_per_unit, unit) or None, limit_remaining, reset_ms).
NativeStatus = tuple[int, tuple[str, int, int] | None, int, int]
NativeResponse = tuple[int, list[NativeStatus], list[tuple[str, str]]]


@dataclass(frozen=True, slots=True)
class Malformed:
    """A request message that is not valid protobuf for its method; ``message`` says why, in
    the words of Python's protobuf runtime."""

    message: str


@dataclass(frozen=True, slots=True)
class NativeMethods:
    """The two methods, over requests the wire has decoded. Each raises GrpcError to end a
    call with another status."""

    rate_limit: Callable[[NativeRequest | Malformed], Coroutine[Any, Any, NativeResponse]]
    health: Callable[[str | Malformed], Coroutine[Any, Any, int]]  # a ServingStatus number


@dataclass(frozen=True, slots=True)
class NativeWire:
    """What H2Server needs to run connections with their wire side in Rust: the extension
    module (its ``H2Connection`` and constants), the Python methods for the calls the wire
    hands back, and the handler every ``H2Connection`` is made with (None: every call comes
    back to the methods). ``on_held`` is called after a read whose calls the handler held:
    whoever answers them later calls ``delivered()`` on the connection."""

    module: ModuleType
    methods: NativeMethods
    handler: Any = None
    on_held: Callable[[], None] | None = None


class NativeOwner(Protocol):
    """What a connection needs from its server."""

    options: H2Options
    preface: bytes

    def register(self, connection: Any) -> bool: ...

    def unregister(self, connection: Any) -> None: ...


class NativeConnection(asyncio.Protocol):
    """The protocol object asyncio creates per accepted socket (see H2Server.start)."""

    def __init__(self, owner: NativeOwner, wire: NativeWire) -> None:
        opts = owner.options
        self._owner = owner
        self._opts = opts
        self._native = native = wire.module
        self._methods = wire.methods
        self._on_held = wire.on_held
        self._loop = asyncio.get_running_loop()
        self._wire = native.H2Connection(
            now=self._loop.time(), max_concurrent_streams=opts.max_concurrent_streams,
            max_message_size=opts.max_message_size, max_header_list_size=opts.max_header_list_size,
            max_header_block_size=opts.max_header_block_size, stream_window=opts.stream_window,
            connection_window=opts.connection_window, max_buffered_bytes=opts.max_buffered_bytes,
            handshake_timeout=opts.handshake_timeout, idle_timeout=opts.idle_timeout,
            request_timeout=opts.request_timeout, write_timeout=opts.write_timeout,
            drain_ping_timeout=opts.drain_ping_timeout, service=wire.handler)
        self._transport: asyncio.Transport | None = None
        self._closing = False
        self._linger: asyncio.TimerHandle | None = None
        self._out = bytearray()
        self._answers: list[tuple[int, int, Any]] = []  # for the wire's next respond()
        self._flush_scheduled = False
        self._tasks: dict[int, asyncio.Task[Any]] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._write_paused_since: float | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports are not asyncio.Transport
        # subclasses, though they have every method we use.
        self._transport = transport = cast(asyncio.Transport, transport)
        if not self._owner.register(self):
            self._out += self._owner.preface + self._wire.fail(
                ErrorCode.ENHANCE_YOUR_CALM, "too many connections")
            transport.write(bytes(self._out))
            self._out.clear()
            self._closing = True
            transport.close()
            return
        transport.write(self._owner.preface)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._wire.abort()
        if self._linger is not None:
            self._linger.cancel()
        self._stop_calls()
        self._owner.unregister(self)

    def pause_writing(self) -> None:
        # The peer is not reading: stop reading its requests so it cannot make us queue more.
        self._write_paused_since = self._loop.time()
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused_since = None
        if self._transport is not None and not self._closing:
            self._transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self._closing or self._answered_last():
            return
        try:
            out, calls, cancelled, close, held = self._wire.feed(data, self._loop.time(), self)
        except Exception:
            log.exception("HTTP/2 connection failed")
            self._fail_internal()
            return
        self._out += out
        if held and self._on_held is not None:
            self._on_held()
        self._cancel(cancelled)
        if close:
            self._close()
            return
        for call in calls:
            self._start(*call)
        self._flush()

    def delivered(self) -> None:
        """The wire's handler answered held calls: write what that made."""
        if self._closing:
            return
        try:
            out, close = self._wire.output()
        except Exception:
            log.exception("HTTP/2 connection failed")
            self._fail_internal()
            return
        self._out += out
        if close:
            self._close()
        else:
            self._flush()

    def eof_received(self) -> bool | None:
        if not self._closing and self._answered_last():
            return None
        if self._closing or not self._wire.eof():
            # Nothing left to answer (or a lingering close is over): asyncio closes the
            # transport once what is queued is written.
            self._flush()
            self._closing = True
            return None
        # The peer sends nothing more but may still read: answer what it already asked,
        # then close (as if it had sent GOAWAY).
        return True

    # -- calls ---------------------------------------------------------------------------------

    def _start(self, sid: int, kind: int, payload: Any, deadline: float | None) -> None:
        native = self._native
        if deadline is not None and self._loop.time() >= deadline:
            # Passed while the read was parsed (the wire saw the whole read at one instant).
            self._answer(sid, native.ERROR, GrpcError(Status.DEADLINE_EXCEEDED,
                                                      "deadline exceeded"))
            return
        if kind == native.RATE_LIMIT or kind == native.MALFORMED_RATE_LIMIT:
            answer_kind = native.RATE_LIMIT
            coro: Coroutine[Any, Any, Any] = self._methods.rate_limit(
                payload if kind == native.RATE_LIMIT else Malformed(payload))
        else:
            answer_kind = native.HEALTH
            coro = self._methods.health(payload if kind == native.HEALTH else Malformed(payload))
        started = start_call(self._loop, coro, self._opts.eager_start)
        if not isinstance(started, asyncio.Task):
            self._answer(sid, answer_kind, started)
            return
        self._tasks[sid] = started
        started.add_done_callback(partial(self._task_done, sid, answer_kind))
        if deadline is not None:
            self._timers[sid] = self._loop.call_at(deadline, self._deadline, sid)

    def _task_done(self, sid: int, kind: int, task: asyncio.Task[Any]) -> None:
        if self._tasks.get(sid) is not task:  # the stream was reset or timed out meanwhile
            if not task.cancelled():
                task.exception()  # retrieved, so asyncio does not report it as lost
            return
        del self._tasks[sid]
        timer = self._timers.pop(sid, None)
        if timer is not None:
            timer.cancel()
        self._answer(sid, kind, outcome(task))
        self._flush_soon()

    def _deadline(self, sid: int) -> None:
        self._timers.pop(sid, None)
        task = self._tasks.pop(sid, None)
        if task is None:  # answered already
            return
        task.cancel()
        self._answer(sid, self._native.ERROR, GrpcError(Status.DEADLINE_EXCEEDED,
                                                        "deadline exceeded"))
        self._flush_soon()

    def _answer(self, sid: int, kind: int, result: Any) -> None:
        if isinstance(result, GrpcError):
            self._answers.append((sid, self._native.ERROR, (int(result.code), result.message)))
        else:
            self._answers.append((sid, kind, result))

    def _apply_answers(self) -> bool:
        """Hand the collected answers to the wire (before anything else reaches it, so their
        frames go out in the order the calls ended); True when that finished the connection."""
        if not self._answers or self._closing:
            return False
        answers, self._answers = self._answers, []
        try:
            out, close, problems = self._wire.respond(answers, self._loop.time())
        except Exception:
            log.exception("HTTP/2 connection failed")
            self._fail_internal()
            return True
        self._out += out
        for problem in problems:
            log.error("unusable answer from a gRPC method: %s", problem)
        return bool(close)

    def _answered_last(self) -> bool:
        """Apply the collected answers; when that ended the connection (the last answer owed
        after a GOAWAY, or a failure), close and return True."""
        if self._apply_answers():
            self._close()
            return True
        return False

    def _cancel(self, sids: list[int]) -> None:
        """Stop the calls of streams that are gone."""
        for sid in sids:
            timer = self._timers.pop(sid, None)
            if timer is not None:
                timer.cancel()
            task = self._tasks.pop(sid, None)
            if task is not None:
                task.cancel()

    def _stop_calls(self) -> None:
        self._cancel(list(self._tasks))
        self._answers.clear()

    # -- writing -------------------------------------------------------------------------------

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._answered_last():
            self._write()

    def _write(self) -> None:
        out = self._out
        transport = self._transport
        if out and transport is not None and not transport.is_closing():
            transport.write(bytes(out))  # a copy: the transport may keep what we pass
            out.clear()

    def _flush_soon(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    # -- closing -------------------------------------------------------------------------------

    def _fail_internal(self) -> None:
        """An error outside the protocol (a bug): GOAWAY(INTERNAL_ERROR), then close, as the
        Python connection does."""
        self._answers.clear()
        try:
            self._out += self._wire.fail(ErrorCode.INTERNAL_ERROR, "internal error")
        except Exception:
            log.exception("HTTP/2 connection failed while failing")
        self._close()

    def _close(self) -> None:
        """Close after what is queued, lingering (see connection.Connection._close)."""
        if self._closing:
            return
        self._apply_answers()  # the answers already made go out before the end
        self._write()
        self._closing = True
        self._wire.abort()
        self._stop_calls()
        transport = self._transport
        if transport is None:
            return
        try:
            if transport.can_write_eof():
                transport.write_eof()
                self._linger = self._loop.call_later(LINGER_SECONDS, transport.close)
                return
        except OSError:  # the peer is already gone: nothing to linger for
            pass
        transport.close()

    def drain(self) -> None:
        """Begin a graceful shutdown (see connection.Connection.drain)."""
        if self._closing or self._answered_last():
            return
        try:
            out, close = self._wire.drain(self._loop.time())
        except Exception:
            log.exception("HTTP/2 connection failed")
            self._fail_internal()
            return
        self._out += out
        if close:
            self._close()
        else:
            self._flush()

    def abort(self) -> None:
        """Drop the connection now (the drain grace period is over)."""
        self._closing = True
        self._wire.abort()
        self._stop_calls()
        if self._transport is not None:
            self._transport.abort()

    @property
    def held_bytes(self) -> int:
        """Bytes this connection holds for its peer (see connection.Connection.held_bytes)."""
        return int(self._wire.held_bytes) + len(self._out)

    # -- timeouts ------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Once a second, from the server: timeouts of every kind (decided by the wire)."""
        if self._closing or self._answered_last():
            return
        paused = self._write_paused_since
        stalled = paused is not None and now - paused > self._opts.write_timeout
        try:
            out, action, cancelled = self._wire.tick(now, stalled)
        except Exception:
            log.exception("HTTP/2 connection failed")
            self._fail_internal()
            return
        self._out += out
        self._cancel(cancelled)
        if action == self._native.ABORT:
            self.abort()
        elif action == self._native.CLOSE:
            self._close()
        else:
            self._flush()
