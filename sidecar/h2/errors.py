"""The errors the HTTP/2 layer raises while reading what a client sent.

    H2Error                  base: carries an RFC 9113 error code
    ├── H2ConnectionError    the whole connection is unusable: answer GOAWAY(code), close
    │   └── HPACKError       the header block cannot be decoded (COMPRESSION_ERROR): the
    │                        decoder's state is now unknown, so this is always fatal
    └── StreamError          one stream is broken: answer RST_STREAM(code), keep the rest

These are the only exceptions the frame parser and the HPACK decoder let escape on bad input;
the connection turns them into frames and never lets them reach the event loop.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.IntEnum):
    """RFC 9113 section 7."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


class H2Error(Exception):
    """A protocol violation by the peer; ``code`` is what we answer with."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        self.code = code
        super().__init__(message)


class H2ConnectionError(H2Error):
    """Fatal for the connection: GOAWAY with ``code``."""


class HPACKError(H2ConnectionError):
    """The header block is invalid (RFC 7541); always COMPRESSION_ERROR."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.COMPRESSION_ERROR, message)


class StreamError(H2Error):
    """Fatal for one stream: RST_STREAM(stream_id, code)."""

    def __init__(self, stream_id: int, code: ErrorCode, message: str) -> None:
        self.stream_id = stream_id
        super().__init__(code, message)
