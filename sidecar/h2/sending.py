"""The send side of one connection: responses as frames, within what the peer allows.

Every frame goes to one bytearray that the connection hands to the transport once per read (or
once per loop iteration for calls that complete later), so a batch of N answers costs one
write. A successful call is answered with one struct.pack plus the message bytes; only when the
peer's flow-control windows, its frame size or an owed HPACK table size update stand in the way
does the general path queue DATA on the stream until WINDOW_UPDATEs arrive.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable

from sidecar.h2 import frames as fr
from sidecar.h2.errors import ErrorCode, H2ConnectionError, StreamError
from sidecar.h2.grpc_wire import (
    MESSAGE_PREFIX,
    RESPONSE_HEADERS,
    TRAILERS_OK,
    Status,
    trailers_only,
)
from sidecar.h2.hpack import DEFAULT_TABLE_SIZE, encode_table_size_update
from sidecar.h2.stream import Stream

# HEADERS(:status 200, content-type) + DATA frame header + gRPC message prefix, in one pack;
# then the message; then HEADERS(grpc-status 0) with END_STREAM.
_RESPONSE = struct.Struct(f">BHBBL{len(RESPONSE_HEADERS)}sBHBBLBL")
_TRAILERS = struct.Struct(f">BHBBL{len(TRAILERS_OK)}s")
_HEADERS_END = fr.END_HEADERS
_TRAILERS_END = fr.END_HEADERS | fr.END_STREAM
_ERROR_BLOCKS = 64  # trailers-only blocks kept per connection, by (status, message)


class Sender:
    """Writes responses into ``out``; calls ``done(stream)`` once a stream's response is
    completely written (at once, or after flow control let the rest through)."""

    def __init__(self, out: bytearray, done: Callable[[Stream], None],
                 clock: Callable[[], float]) -> None:
        self.out = out
        self._done = done
        self._clock = clock
        self.window = fr.DEFAULT_WINDOW  # the connection send window
        self.stream_window = fr.DEFAULT_WINDOW  # the peer's SETTINGS_INITIAL_WINDOW_SIZE
        self.max_frame = fr.DEFAULT_MAX_FRAME  # the peer's SETTINGS_MAX_FRAME_SIZE
        self.blocked: dict[int, Stream] = {}  # streams waiting for window, in arrival order
        self._encoder_table = DEFAULT_TABLE_SIZE  # the peer decoder's table we may assume
        self._table_update = b""  # a size update owed at the start of our next header block
        self._error_blocks: dict[tuple[Status, str], bytes] = {}

    # -- answers -------------------------------------------------------------------------------

    def respond(self, stream: Stream, message: bytes) -> None:
        """HEADERS, DATA and trailers of a successful call."""
        n = len(message)
        size = n + 5
        if (size <= self.window and size <= stream.send_window and size <= self.max_frame
                and not self._table_update):
            sid = stream.id
            out = self.out
            out += _RESPONSE.pack(0, len(RESPONSE_HEADERS), fr.HEADERS, _HEADERS_END, sid,
                                  RESPONSE_HEADERS, size >> 16, size & 0xFFFF, fr.DATA, 0, sid,
                                  0, n)
            out += message
            out += _TRAILERS.pack(0, len(TRAILERS_OK), fr.HEADERS, _TRAILERS_END, sid,
                                  TRAILERS_OK)
            self.window -= size
            self._done(stream)
            return
        self.send(stream, RESPONSE_HEADERS, MESSAGE_PREFIX.pack(0, n) + message, TRAILERS_OK)

    def error(self, stream: Stream, code: Status, message: str) -> None:
        """End a call with a status and no message (the Trailers-Only form)."""
        key = (code, message)
        block = self._error_blocks.get(key)
        if block is None:
            if len(self._error_blocks) >= _ERROR_BLOCKS:
                self._error_blocks.clear()
            block = self._error_blocks[key] = trailers_only(code, message)
        self.headers_only(stream, block)

    def headers_only(self, stream: Stream, block: bytes) -> None:
        self.write_headers(stream.id, block, True)
        self._done(stream)

    def send(self, stream: Stream, block: bytes, body: bytes, trailers: bytes | None) -> None:
        """The general path: HEADERS now, DATA as the windows allow, then ``trailers`` (or
        END_STREAM on the last DATA frame when ``trailers`` is None)."""
        self.write_headers(stream.id, block, False)
        stream.pending = bytearray(body)
        stream.tail = trailers
        self.push(stream)

    def push(self, stream: Stream) -> None:
        """Send what the windows allow of a stream's pending DATA; finish it when all is out."""
        pending = stream.pending
        assert pending is not None
        sid = stream.id
        while pending or stream.tail is None:
            n = min(len(pending), self.window, stream.send_window, self.max_frame)
            if n <= 0 and pending:
                if sid not in self.blocked:
                    self.blocked[sid] = stream
                    stream.since = self._clock()
                return
            end = n == len(pending) and stream.tail is None
            self.out += fr.frame_header(fr.DATA, fr.END_STREAM if end else 0, sid, n)
            self.out += pending[:n]
            del pending[:n]
            self.window -= n
            stream.send_window -= n
            if end:
                break
        self.blocked.pop(sid, None)
        if stream.tail is not None:
            self.write_headers(sid, stream.tail, True)
        self._done(stream)

    def write_headers(self, sid: int, block: bytes, end_stream: bool) -> None:
        if self._table_update:
            block = self._table_update + block
            self._table_update = b""
        self.out += fr.headers(sid, block, end_stream, self.max_frame)

    # -- what the peer allows ------------------------------------------------------------------

    def add_window(self, increment: int) -> None:
        self.window += increment
        if self.window > fr.MAX_WINDOW:
            raise H2ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "window above 2^31-1")
        self.unblock()

    def add_stream_window(self, stream: Stream, increment: int) -> None:
        stream.send_window += increment
        if stream.send_window > fr.MAX_WINDOW:
            raise StreamError(stream.id, ErrorCode.FLOW_CONTROL_ERROR, "window above 2^31-1")
        if stream.pending is not None:
            self.push(stream)

    def set_stream_window(self, value: int, streams: Iterable[Stream]) -> None:
        """SETTINGS_INITIAL_WINDOW_SIZE: every open stream's window moves by the change."""
        if value > fr.MAX_WINDOW:
            raise H2ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "initial window too large")
        delta, self.stream_window = value - self.stream_window, value
        for stream in streams:
            stream.send_window += delta
            if stream.send_window > fr.MAX_WINDOW:
                raise H2ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "stream window overflow")

    def set_max_frame(self, value: int) -> None:
        if not fr.DEFAULT_MAX_FRAME <= value <= fr.LARGEST_MAX_FRAME:
            raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, f"max frame size {value}")
        self.max_frame = value

    def set_peer_table_size(self, value: int) -> None:
        # We never index into the peer's table, so shrinking ours to 0 once is all it takes;
        # RFC 7541 4.2 wants the update at the start of our next header block.
        if value < self._encoder_table:
            self._encoder_table = 0
            self._table_update = encode_table_size_update(0)

    def unblock(self) -> None:
        for stream in list(self.blocked.values()):
            if self.window <= 0:
                return
            if stream.send_window > 0 and stream.pending is not None:
                self.push(stream)
