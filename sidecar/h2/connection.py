"""One HTTP/2 connection (RFC 9113, server side, cleartext with prior knowledge) serving unary
gRPC calls: the receive side and the stream lifecycle (the send side is ``sending.Sender``).

``data_received`` parses whole frames straight out of the bytes the loop hands over and
dispatches them through a 256-entry table indexed by frame type; the table is swapped while the
first SETTINGS is awaited and while a header block is open, so those rules cost nothing on the
common path. Protocol violations surface as the exceptions of ``errors.py``: a StreamError
resets one stream, anything else ends the connection with GOAWAY.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import Protocol, cast

from sidecar.h2 import frames as fr
from sidecar.h2.calls import CallRunner
from sidecar.h2.errors import ErrorCode, H2ConnectionError, H2Error, StreamError
from sidecar.h2.flow import ReceiveWindow
from sidecar.h2.grpc_wire import MESSAGE_PREFIX, Status
from sidecar.h2.hpack import Decoder
from sidecar.h2.options import H2Options
from sidecar.h2.request import HeadCache, RequestHead, Router, check_trailers
from sidecar.h2.sending import Sender
from sidecar.h2.stream import Stream

log = logging.getLogger("sidecar.h2")

MAX_RECV_FRAME = fr.DEFAULT_MAX_FRAME  # we never raise SETTINGS_MAX_FRAME_SIZE
LINGER_SECONDS = 1.0  # how long a closing connection keeps draining the peer's input
_DRAIN_PING = b"drain\x00\x00\x00"
_RESET_MEMORY = 1024  # stream ids we reset whose late frames are silently dropped
_SETTING = struct.Struct(">HL")
_U32 = struct.Struct(">L")

FrameHandler = Callable[["Connection", int, int, bytes], None]


class Owner(Protocol):
    """What a connection needs from its server."""

    options: H2Options
    router: Router
    preface: bytes  # our SETTINGS and connection WINDOW_UPDATE, the same for every connection

    def register(self, connection: Connection) -> bool: ...

    def unregister(self, connection: Connection) -> None: ...


class Connection(asyncio.Protocol):
    """The protocol object asyncio creates per accepted socket (see H2Server.start)."""

    def __init__(self, owner: Owner) -> None:
        opts = owner.options
        self._owner = owner
        self._opts = opts
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._closing = False
        self._linger: asyncio.TimerHandle | None = None
        self._table: tuple[FrameHandler, ...] = _AWAIT_SETTINGS
        self._preface_done = False
        self._buf = bytearray()
        self._need = len(fr.PREFACE)
        self._out = bytearray()
        self._flush_scheduled = False
        self._sender = Sender(self._out, self._end_stream, self._loop.time)
        self._calls = CallRunner(self._sender, self._loop, opts, self._flush_soon)
        self._decoder = Decoder(max_header_list_size=opts.max_header_list_size)
        self._heads = HeadCache(self._decoder, owner.router)
        self._streams: dict[int, Stream] = {}
        self._last_sid = 0
        self._reset_by_us: dict[int, None] = {}
        self._bad_priority = 0  # a stream whose HEADERS declared a dependency on itself
        self._block: bytearray | None = None  # an open header block (HEADERS + CONTINUATION)
        self._block_sid = 0
        self._block_end_stream = 0
        self._block_since = 0.0
        self._inflow = ReceiveWindow(self._out, opts.connection_window,
                                     opts.max_buffered_bytes)
        self._max_body = opts.max_message_size + MESSAGE_PREFIX.size  # prefix included
        self._since = self._loop.time()
        self._idle_since = self._since
        self._idle_mark = 0
        self._write_paused_since: float | None = None
        self._drain_deadline: float | None = None
        self._goaway_last: int | None = None  # set once the final GOAWAY is sent
        self._peer_goaway = False

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports are not asyncio.Transport
        # subclasses, though they have every method we use.
        self._transport = transport = cast(asyncio.Transport, transport)
        if not self._owner.register(self):
            transport.write(self._owner.preface + fr.goaway(0, ErrorCode.ENHANCE_YOUR_CALM,
                                                            b"too many connections"))
            self._closing = True
            transport.close()
            return
        transport.write(self._owner.preface)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self._linger is not None:
            self._linger.cancel()
        for stream in self._streams.values():
            stream.cancel()
        self._streams.clear()
        self._sender.blocked.clear()
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
        if self._closing:
            return
        buf = self._buf
        if buf:
            buf += data
            if len(buf) < self._need:
                return
            data = bytes(buf)
            buf.clear()
        try:
            pos = 0
            if not self._preface_done:
                pos = self._preface(data)
            if self._preface_done:
                pos = self._frames(data, pos)
        except H2Error as exc:
            self._fail(exc.code, str(exc))
            return
        except Exception:
            log.exception("HTTP/2 connection failed")
            self._fail(ErrorCode.INTERNAL_ERROR, "internal error")
            return
        if pos < len(data):
            self._keep(data, pos)
        self._flush()

    def eof_received(self) -> bool | None:
        if self._closing or not self._streams:
            # Nothing left to answer (or a lingering close is over): asyncio closes the
            # transport once what is queued is written.
            self._flush()
            self._closing = True
            return None
        # The peer sends nothing more but may still read: answer what it already asked,
        # then close (as if it had sent GOAWAY).
        self._peer_goaway = True
        return True

    # -- reading -------------------------------------------------------------------------------

    def _preface(self, data: bytes) -> int:
        n = len(fr.PREFACE)
        if data[:n] != fr.PREFACE[:len(data)]:
            raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "invalid connection preface")
        if len(data) < n:
            return 0
        self._preface_done = True
        return n

    def _keep(self, data: bytes, pos: int) -> None:
        """Hold an incomplete frame; note how many bytes must arrive before parsing again."""
        self._buf += memoryview(data)[pos:]
        if not self._preface_done:
            self._need = len(fr.PREFACE)
        elif len(data) - pos >= 9:
            self._need = 9 + int.from_bytes(data[pos:pos + 3], "big")
        else:
            self._need = 9

    def _frames(self, data: bytes, pos: int) -> int:
        """Handle every complete frame from ``pos``; the offset of the first incomplete one."""
        end = len(data)
        unpack = fr.FRAME_HEADER.unpack_from
        while end - pos >= 9 and not self._closing:
            hi, lo, ftype, flags, sid = unpack(data, pos)
            length = (hi << 8) | lo
            if length > MAX_RECV_FRAME:
                raise H2ConnectionError(ErrorCode.FRAME_SIZE_ERROR,
                                        f"frame of {length} bytes exceeds {MAX_RECV_FRAME}")
            start = pos + 9
            stop = start + length
            if stop > end:
                break
            pos = stop
            try:
                self._table[ftype](self, flags, sid & fr.STREAM_ID_MASK, data[start:stop])
            except StreamError as exc:
                self._reset(exc.stream_id, exc.code)
        return pos

    # -- DATA ----------------------------------------------------------------------------------

    def _on_data(self, flags: int, sid: int, payload: bytes) -> None:
        if sid == 0:
            raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0")
        size = len(payload)
        inflow = self._inflow
        inflow.consume(size)
        stream = self._streams.get(sid)
        if stream is None or stream.remote_closed:
            inflow.credit(size)  # discarded: the connection window is given back
            self._data_without_stream(sid, stream)
            return
        if flags & fr.PADDED:
            payload = fr.unpad(payload)
        stream.recv_window -= size
        stream.received += len(payload)
        length = stream.head.content_length
        if stream.recv_window < 0 or (length is not None and stream.received > length):
            inflow.credit(size)
            raise StreamError(sid, ErrorCode.FLOW_CONTROL_ERROR if stream.recv_window < 0
                              else ErrorCode.PROTOCOL_ERROR, "stream window or length exceeded")
        if flags & fr.END_STREAM and stream.body is None:
            inflow.credit(size)
            stream.remote_closed = True
            self._calls.complete(stream, payload)
        else:
            self._accumulate(stream, payload, size, flags & fr.END_STREAM)

    def _data_without_stream(self, sid: int, stream: Stream | None) -> None:
        if stream is not None:
            raise StreamError(sid, ErrorCode.STREAM_CLOSED, "DATA after END_STREAM")
        if sid > self._last_sid:
            raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, f"DATA on idle stream {sid}")
        if sid not in self._reset_by_us:  # else: in flight when we reset it, drop it
            raise StreamError(sid, ErrorCode.STREAM_CLOSED, "DATA on a closed stream")

    def _accumulate(self, stream: Stream, payload: bytes, size: int, end: int) -> None:
        """A request spanning several DATA frames: buffer it within the message size limit."""
        if stream.head.handler is None:  # answered without reading the body: count only
            self._inflow.credit(size)
        else:
            body = stream.body
            if body is None:
                body = stream.body = bytearray()
            body += payload
            self._inflow.keep(len(payload), size)
            if self._oversize(body):
                self._sender.error(stream, Status.RESOURCE_EXHAUSTED, "request message larger "
                                   f"than {self._opts.max_message_size} bytes")
                return
        if end:
            stream.remote_closed = True
            self._calls.complete(stream, self._take_body(stream))
        elif stream.recv_window <= self._opts.stream_window // 2:
            increment = self._opts.stream_window - stream.recv_window
            stream.recv_window += increment
            self._out += fr.window_update(stream.id, increment)

    def _oversize(self, body: bytearray) -> bool:
        if len(body) > self._max_body:
            return True
        return len(body) >= 5 and int.from_bytes(body[1:5], "big") > self._opts.max_message_size

    def _take_body(self, stream: Stream) -> bytes:
        body = stream.body
        if body is None:
            return b""
        stream.body = None
        self._inflow.release(len(body))
        return bytes(body)

    # -- HEADERS and CONTINUATION --------------------------------------------------------------

    def _on_headers(self, flags: int, sid: int, payload: bytes) -> None:
        if sid == 0:
            raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0")
        block = payload
        if flags & (fr.PADDED | fr.PRIORITY_FLAG):
            block, self_dependent = fr.header_fragment(flags, sid, payload)
            if self_dependent:
                self._bad_priority = sid  # reset once the block is decoded (HPACK sync)
        if flags & fr.END_HEADERS:
            self._header_block(sid, flags & fr.END_STREAM, block)
        else:
            self._open_block(sid, flags & fr.END_STREAM, block)

    def _open_block(self, sid: int, end_stream: int, fragment: bytes) -> None:
        self._block = bytearray(fragment)
        self._block_sid = sid
        self._block_end_stream = end_stream
        self._block_since = self._loop.time()
        self._table = _IN_BLOCK

    def _on_continuation(self, flags: int, sid: int, payload: bytes) -> None:
        block = self._block
        if block is None or sid != self._block_sid:
            raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "CONTINUATION for another stream")
        block += payload
        if len(block) > self._opts.max_header_block_size:
            raise H2ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "header block too large")
        if flags & fr.END_HEADERS:
            self._block = None
            self._table = _NORMAL
            self._header_block(sid, self._block_end_stream, bytes(block))

    def _header_block(self, sid: int, end_stream: int, block: bytes) -> None:
        stream = self._streams.get(sid)
        if stream is not None:
            self._trailers(stream, end_stream, block)
            return
        if sid <= self._last_sid:
            self._closed_headers(sid, block)
            return
        if not sid & 1:
            raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, f"even stream id {sid}")
        self._last_sid = sid
        head = self._heads.head(block)
        if self._bad_priority == sid:
            self._bad_priority = 0
            raise StreamError(sid, ErrorCode.PROTOCOL_ERROR, "stream depends on itself")
        if self._goaway_last is not None:  # after our final GOAWAY: not processed, drop
            self._remember_reset(sid)
            return
        self._open_stream(sid, head, end_stream)

    def _open_stream(self, sid: int, head: RequestHead, end_stream: int) -> None:
        if head.malformed:
            raise StreamError(sid, ErrorCode.PROTOCOL_ERROR, head.malformed)
        if len(self._streams) >= self._opts.max_concurrent_streams:
            raise StreamError(sid, ErrorCode.REFUSED_STREAM, "too many concurrent streams")
        stream = Stream(sid, head, self._opts.stream_window, self._sender.stream_window,
                        self._loop.time())
        self._streams[sid] = stream
        if end_stream:
            stream.remote_closed = True
            self._calls.complete(stream, b"")

    def _trailers(self, stream: Stream, end_stream: int, block: bytes) -> None:
        headers, _ = self._decoder.decode(block)
        sid = stream.id
        if self._bad_priority == sid:
            self._bad_priority = 0
            raise StreamError(sid, ErrorCode.PROTOCOL_ERROR, "stream depends on itself")
        if stream.remote_closed:
            raise StreamError(sid, ErrorCode.STREAM_CLOSED, "HEADERS after END_STREAM")
        if not end_stream:
            raise StreamError(sid, ErrorCode.PROTOCOL_ERROR, "trailers without END_STREAM")
        problem = check_trailers(headers)
        if problem:
            raise StreamError(sid, ErrorCode.PROTOCOL_ERROR, problem)
        stream.remote_closed = True
        self._calls.complete(stream, self._take_body(stream))

    def _closed_headers(self, sid: int, block: bytes) -> None:
        self._decoder.decode(block)  # unused, but the HPACK context must stay in step
        if sid in self._reset_by_us:
            return
        if sid == self._last_sid:
            raise H2ConnectionError(ErrorCode.STREAM_CLOSED, f"HEADERS on closed stream {sid}")
        raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, f"stream id {sid} is not above "
                                f"{self._last_sid}")

    # -- the other frames ----------------------------------------------------------------------

    def _on_priority(self, flags: int, sid: int, payload: bytes) -> None:
        if sid == 0:
            raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0")
        if len(payload) != 5:
            raise StreamError(sid, ErrorCode.FRAME_SIZE_ERROR, "PRIORITY must be 5 bytes")
        if fr.depends_on_itself(sid, payload):
            raise StreamError(sid, ErrorCode.PROTOCOL_ERROR, "stream depends on itself")

    def _on_rst_stream(self, flags: int, sid: int, payload: bytes) -> None:
        if sid == 0:
            raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0")
        if len(payload) != 4:
            raise H2ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM must be 4 bytes")
        if sid > self._last_sid:
            raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, f"RST_STREAM on idle stream {sid}")
        stream = self._streams.get(sid)
        if stream is not None:
            self._drop(stream)

    def _on_first_settings(self, flags: int, sid: int, payload: bytes) -> None:
        if flags & fr.ACK:
            raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "preface SETTINGS with ACK")
        self._table = _NORMAL
        self._on_settings(flags, sid, payload)

    def _on_settings(self, flags: int, sid: int, payload: bytes) -> None:
        if sid != 0:
            raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & fr.ACK:
            if payload:
                raise H2ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with payload")
            return
        if len(payload) % 6:
            raise H2ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS length not 6n")
        for offset in range(0, len(payload), 6):
            self._setting(*_SETTING.unpack_from(payload, offset))
        self._out += fr.SETTINGS_ACK
        self._sender.unblock()

    def _setting(self, ident: int, value: int) -> None:
        sender = self._sender
        if ident == fr.INITIAL_WINDOW_SIZE:
            sender.set_stream_window(value, self._streams.values())
        elif ident == fr.MAX_FRAME_SIZE:
            sender.set_max_frame(value)
        elif ident == fr.HEADER_TABLE_SIZE:
            sender.set_peer_table_size(value)
        elif ident == fr.ENABLE_PUSH and value > 1:
            raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, f"enable push {value}")

    def _on_ping(self, flags: int, sid: int, payload: bytes) -> None:
        if len(payload) != 8:
            raise H2ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "PING must be 8 bytes")
        if sid != 0:
            raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "PING on a stream")
        if not flags & fr.ACK:
            self._out += fr.ping_ack(payload)
        elif payload == _DRAIN_PING and self._drain_deadline is not None:
            self._final_goaway()

    def _on_goaway(self, flags: int, sid: int, payload: bytes) -> None:
        if sid != 0:
            raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream")
        if len(payload) < 8:
            raise H2ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "GOAWAY too short")
        # The client is leaving: finish what it already sent, then close.
        self._peer_goaway = True
        if not self._streams:
            self._close()

    def _on_window_update(self, flags: int, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise H2ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE must be 4 bytes")
        increment = _U32.unpack(payload)[0] & fr.STREAM_ID_MASK
        if sid == 0:
            if increment == 0:
                raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self._sender.add_window(increment)
            return
        stream = self._streams.get(sid)
        if stream is None:
            if sid > self._last_sid:
                raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE on idle stream")
            return
        if increment == 0:
            raise StreamError(sid, ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
        self._sender.add_stream_window(stream, increment)

    def _on_unknown(self, flags: int, sid: int, payload: bytes) -> None:
        return None  # RFC 9113 5.5: unknown frame types are ignored

    # -- stream lifecycle ----------------------------------------------------------------------

    def _end_stream(self, stream: Stream) -> None:
        """Our side is done with the stream; if the peer's is not, ask it to stop."""
        sid = stream.id
        del self._streams[sid]
        if stream.timer is not None or stream.task is not None:
            stream.cancel()
        if stream.body is not None:
            self._take_body(stream)
        if not stream.remote_closed:
            self._out += fr.rst_stream(sid, ErrorCode.NO_ERROR)
            self._remember_reset(sid)
        if not self._streams and (self._goaway_last is not None or self._peer_goaway):
            self._close()

    def _reset(self, sid: int, code: ErrorCode) -> None:
        self._out += fr.rst_stream(sid, code)
        self._remember_reset(sid)
        stream = self._streams.get(sid)
        if stream is not None:
            self._drop(stream)

    def _drop(self, stream: Stream) -> None:
        """Forget a stream that was reset (by either side)."""
        del self._streams[stream.id]
        self._sender.blocked.pop(stream.id, None)
        stream.cancel()
        if stream.body is not None:
            self._take_body(stream)
        if not self._streams and (self._goaway_last is not None or self._peer_goaway):
            self._close()

    def _remember_reset(self, sid: int) -> None:
        reset = self._reset_by_us
        reset[sid] = None
        if len(reset) > _RESET_MEMORY:
            del reset[next(iter(reset))]

    def _flush(self) -> None:
        self._flush_scheduled = False
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

    def _fail(self, code: ErrorCode, message: str) -> None:
        log.debug("closing HTTP/2 connection: %s (%s)", message, code.name)
        self._out += fr.goaway(self._last_sid, code, message.encode()[:200])
        self._close()

    def _close(self) -> None:
        """Close after what is queued, lingering: our side is shut down first and the peer's
        late frames are read and dropped for a moment, because closing a socket with unread
        input makes the kernel send RST, which can destroy our GOAWAY before it is read."""
        if self._closing:
            return
        self._flush()
        self._closing = True
        for stream in self._streams.values():
            stream.cancel()
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
        """Begin a graceful shutdown: GOAWAY(2^31-1) and a PING; the final GOAWAY (with the
        last stream id) follows the PING's ACK, then the connection closes once in-flight
        streams are answered. The first GOAWAY stops new streams without racing the ones
        already on the wire (RFC 9113 6.8)."""
        if self._closing or self._drain_deadline is not None or self._goaway_last is not None:
            return
        if self._table is _AWAIT_SETTINGS:
            self._close()
            return
        self._out += fr.goaway(fr.STREAM_ID_MASK, ErrorCode.NO_ERROR)
        self._out += fr.ping(_DRAIN_PING)
        self._drain_deadline = self._loop.time() + self._opts.drain_ping_timeout
        self._flush()

    def _final_goaway(self) -> None:
        self._drain_deadline = None
        self._goaway_last = self._last_sid
        self._out += fr.goaway(self._last_sid, ErrorCode.NO_ERROR)
        if not self._streams:
            self._close()
        else:
            self._flush_soon()

    def abort(self) -> None:
        """Drop the connection now (the drain grace period is over)."""
        self._closing = True
        for stream in self._streams.values():
            stream.cancel()
        if self._transport is not None:
            self._transport.abort()

    @property
    def held_bytes(self) -> int:
        """Bytes this connection holds for its peer: unparsed input, unsent output, request
        bodies and blocked responses (what the limits in H2Options bound)."""
        pending = sum(len(s.pending) for s in self._streams.values() if s.pending is not None)
        block = len(self._block) if self._block is not None else 0
        return len(self._buf) + len(self._out) + self._inflow.buffered + pending + block

    # -- timeouts ------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Once a second, from the server: timeouts of every kind."""
        if self._closing:
            return
        opts = self._opts
        if self._table is _AWAIT_SETTINGS and now - self._since > opts.handshake_timeout:
            self._close()
            return
        paused = self._write_paused_since
        if paused is not None and now - paused > opts.write_timeout:
            self.abort()
            return
        if self._block is not None and now - self._block_since > opts.request_timeout:
            self._fail(ErrorCode.ENHANCE_YOUR_CALM, "header block not finished in time")
            return
        if self._drain_deadline is not None and now >= self._drain_deadline:
            self._final_goaway()
        if not self._closing:  # else nothing more may be written (our side is shut down)
            self._expire_streams(now)
        if not self._closing:
            self._check_idle(now)
        self._flush()

    def _expire_streams(self, now: float) -> None:
        opts = self._opts
        for stream in list(self._streams.values()):
            if stream.pending is not None:
                if now - stream.since > opts.write_timeout:
                    self._reset(stream.id, ErrorCode.CANCEL)
            elif not stream.remote_closed:
                if stream.deadline is not None and now >= stream.deadline:
                    self._sender.error(stream, Status.DEADLINE_EXCEEDED, "deadline exceeded")
                elif now - stream.since > opts.request_timeout:
                    self._reset(stream.id, ErrorCode.CANCEL)

    def _check_idle(self, now: float) -> None:
        if self._streams or self._last_sid != self._idle_mark:
            self._idle_mark = self._last_sid
            self._idle_since = now
        elif now - self._idle_since > self._opts.idle_timeout:
            self._out += fr.goaway(self._last_sid, ErrorCode.NO_ERROR, b"idle")
            self._close()


def _refuse(message: str) -> FrameHandler:
    """A handler for a frame that is a connection error wherever it appears."""
    def handler(connection: Connection, flags: int, sid: int, payload: bytes) -> None:
        raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, message)
    return handler


def _table(default: FrameHandler, **handlers: FrameHandler) -> tuple[FrameHandler, ...]:
    table = [default] * 256
    for name, handler in handlers.items():
        table[getattr(fr, name)] = handler
    return tuple(table)


C = Connection
_NORMAL = _table(C._on_unknown, DATA=C._on_data, HEADERS=C._on_headers,
                 PRIORITY=C._on_priority, RST_STREAM=C._on_rst_stream, SETTINGS=C._on_settings,
                 PUSH_PROMISE=_refuse("clients cannot push"), PING=C._on_ping,
                 GOAWAY=C._on_goaway, WINDOW_UPDATE=C._on_window_update,
                 CONTINUATION=_refuse("CONTINUATION without a header block"))
_IN_BLOCK = _table(_refuse("frame inside a header block"), CONTINUATION=C._on_continuation)
_AWAIT_SETTINGS = _table(_refuse("the first frame must be SETTINGS"),
                         SETTINGS=C._on_first_settings)
del C
