"""gRPC over HTTP/2 (the PROTOCOL-HTTP2 spec): status codes, timeouts, precomputed header blocks.

Every response header block is built once here from static-indexed and literal-without-indexing
fields, so answering a call encodes nothing: the connection copies these bytes into frames.
"""

from __future__ import annotations

import enum
import struct

from sidecar.h2.hpack import encode_block

CONTENT_TYPE = b"application/grpc"
MESSAGE_PREFIX = struct.Struct(">BL")  # compressed flag, message length
MAX_STATUS_MESSAGE = 1024  # grpc-message is for humans: keep it (and the header block) small


class Status(enum.IntEnum):
    """grpc.StatusCode numbers."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class GrpcError(Exception):
    """A call ends with a non-OK status; raised by method handlers."""

    def __init__(self, code: Status, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code.name}: {message}")


# :status 200 and content-type, the first HEADERS of every successful call.
RESPONSE_HEADERS = encode_block([(b":status", b"200"), (b"content-type", CONTENT_TYPE)])
TRAILERS_OK = encode_block([(b"grpc-status", b"0")])

_UNRESERVED = frozenset(range(0x20, 0x7F)) - {ord("%")}


def percent_encode(message: str) -> bytes:
    """grpc-message encoding: UTF-8, then %XX for every byte outside 0x20..0x7E and for '%'."""
    raw = message.encode("utf-8", "replace")
    if all(b in _UNRESERVED for b in raw):
        return raw
    return b"".join(bytes((b,)) if b in _UNRESERVED else b"%%%02X" % b for b in raw)


def percent_decode(value: bytes) -> str:
    """The inverse of percent_encode (for tests and clients); invalid escapes stay as they are."""
    out, i = bytearray(), 0
    while i < len(value):
        if value[i] == 0x25 and _is_hex(value[i + 1:i + 3]):
            out.append(int(value[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(value[i])
            i += 1
    return out.decode("utf-8", "replace")


def _is_hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)


def trailers_only(code: Status, message: str) -> bytes:
    """A call that ends without a message: one HEADERS block with END_STREAM carrying the
    response headers and the status together (the spec's Trailers-Only form)."""
    fields = [(b":status", b"200"), (b"content-type", CONTENT_TYPE),
              (b"grpc-status", b"%d" % code)]
    if message:
        fields.append((b"grpc-message", percent_encode(message[:MAX_STATUS_MESSAGE])))
    return encode_block(fields)


def http_error(status: int, text: str) -> tuple[bytes, bytes]:
    """(header block, body) for a request that is not gRPC at all, e.g. a browser's GET: the
    spec asks for an HTTP error status so no client mistakes it for a gRPC answer."""
    body = (text + "\n").encode()
    block = encode_block([(b":status", b"%d" % status),
                          (b"content-type", b"text/plain; charset=utf-8"),
                          (b"content-length", b"%d" % len(body))])
    return block, body


_TIMEOUT_UNITS = {ord("H"): 3600.0, ord("M"): 60.0, ord("S"): 1.0, ord("m"): 1e-3,
                  ord("u"): 1e-6, ord("n"): 1e-9}


def parse_timeout(value: bytes) -> float:
    """grpc-timeout ("TimeoutValue TimeoutUnit": at most 8 ASCII digits and one of HMSmun) in
    seconds; ValueError when malformed."""
    unit = _TIMEOUT_UNITS.get(value[-1]) if value else None
    digits = value[:-1]
    if unit is None or not 1 <= len(digits) <= 8 or not digits.isdigit():
        raise ValueError(f"malformed grpc-timeout {value!r}")
    return int(digits) * unit



def unframe(body: bytes, max_size: int) -> bytes:
    """The single length-prefixed message of a unary request body; GrpcError when the body
    is anything else (the connection takes a shortcut for the plain case)."""
    if len(body) < 5:
        raise GrpcError(Status.INTERNAL, "request message missing or truncated"
                        if body else "unary call without a request message")
    flag, length = MESSAGE_PREFIX.unpack_from(body)
    if flag == 1:
        raise GrpcError(Status.INTERNAL, "compressed-flag set but no grpc-encoding was "
                        "negotiated; this server accepts uncompressed messages only")
    if flag:
        raise GrpcError(Status.INTERNAL, f"invalid message flag {flag}")
    if length > max_size:
        raise GrpcError(Status.RESOURCE_EXHAUSTED,
                        f"request message of {length} bytes is larger than {max_size}")
    if len(body) < 5 + length:
        raise GrpcError(Status.INTERNAL, "request message truncated")
    if len(body) > 5 + length:
        raise GrpcError(Status.INTERNAL, "more than one request message in a unary call")
    return body[5:]
