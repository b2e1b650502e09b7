"""HTTP/2 frame layout (RFC 9113 section 4 and 6): constants and the frames a server writes.

Every builder returns ready-to-write bytes; the hot response path in ``connection.py`` packs its
frames with precompiled structs instead, but produces the same layout.
"""

from __future__ import annotations

import struct

from sidecar.h2.errors import ErrorCode, H2ConnectionError

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types.
DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9

# Flags.
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# Settings identifiers.
HEADER_TABLE_SIZE = 0x1
ENABLE_PUSH = 0x2
MAX_CONCURRENT_STREAMS = 0x3
INITIAL_WINDOW_SIZE = 0x4
MAX_FRAME_SIZE = 0x5
MAX_HEADER_LIST_SIZE = 0x6

DEFAULT_WINDOW = 65535
DEFAULT_MAX_FRAME = 16384
LARGEST_MAX_FRAME = (1 << 24) - 1
MAX_WINDOW = (1 << 31) - 1
STREAM_ID_MASK = 0x7FFFFFFF

# length (24 bits as 16 + 8), type, flags, stream id (the reserved bit is masked by the reader).
FRAME_HEADER = struct.Struct(">HBBBL")
_HEADER_24 = struct.Struct(">BHBBL")  # writing: length as 8 + 16 bits
_SETTING = struct.Struct(">HL")
_U32 = struct.Struct(">L")
_GOAWAY = struct.Struct(">LL")


def frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return _HEADER_24.pack(n >> 16, n & 0xFFFF, ftype, flags, stream_id) + payload


def frame_header(ftype: int, flags: int, stream_id: int, length: int) -> bytes:
    return _HEADER_24.pack(length >> 16, length & 0xFFFF, ftype, flags, stream_id)


def settings(values: dict[int, int]) -> bytes:
    return frame(SETTINGS, 0, 0, b"".join(_SETTING.pack(k, v) for k, v in values.items()))


SETTINGS_ACK = frame(SETTINGS, ACK, 0)


def ping_ack(opaque: bytes) -> bytes:
    return frame(PING, ACK, 0, opaque)


def ping(opaque: bytes) -> bytes:
    return frame(PING, 0, 0, opaque)


def goaway(last_stream_id: int, code: int, debug: bytes = b"") -> bytes:
    return frame(GOAWAY, 0, 0, _GOAWAY.pack(last_stream_id, code) + debug)


def rst_stream(stream_id: int, code: int) -> bytes:
    return frame(RST_STREAM, 0, stream_id, _U32.pack(code))


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream_id, _U32.pack(increment))


def headers(stream_id: int, block: bytes, end_stream: bool, max_frame: int) -> bytes:
    """HEADERS, then CONTINUATION frames when the block is larger than the peer's max frame."""
    flags = END_STREAM if end_stream else 0
    if len(block) <= max_frame:
        return frame(HEADERS, flags | END_HEADERS, stream_id, block)
    chunks = [block[i:i + max_frame] for i in range(0, len(block), max_frame)]
    out = [frame(HEADERS, flags, stream_id, chunks[0])]
    out.extend(frame(CONTINUATION, 0, stream_id, c) for c in chunks[1:-1])
    out.append(frame(CONTINUATION, END_HEADERS, stream_id, chunks[-1]))
    return b"".join(out)


def data(stream_id: int, payload: bytes, end_stream: bool) -> bytes:
    return frame(DATA, END_STREAM if end_stream else 0, stream_id, payload)


def unpad(payload: bytes) -> bytes:
    """The content of a PADDED frame (RFC 9113 6.1, 6.2)."""
    if not payload:
        raise H2ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "padded frame without pad length")
    pad = payload[0]
    if pad >= len(payload):
        raise H2ConnectionError(ErrorCode.PROTOCOL_ERROR, "padding longer than the frame")
    return payload[1:len(payload) - pad]


def header_fragment(flags: int, stream_id: int, payload: bytes) -> tuple[bytes, bool]:
    """A HEADERS payload without its padding and priority fields, and whether the priority
    made the stream depend on itself (a stream error, raised once the block is decoded)."""
    if flags & PADDED:
        payload = unpad(payload)
    if not flags & PRIORITY_FLAG:
        return payload, False
    if len(payload) < 5:
        raise H2ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "HEADERS too short for priority")
    return payload[5:], _U32.unpack_from(payload)[0] & STREAM_ID_MASK == stream_id


def depends_on_itself(stream_id: int, priority: bytes) -> bool:
    return bool(_U32.unpack_from(priority)[0] & STREAM_ID_MASK == stream_id)
