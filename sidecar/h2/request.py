"""A request's header block → what to do with the stream (RFC 9113 section 8 rules + routing).

The result is immutable and depends only on the decoded headers, so the connection caches it by
the block's bytes: a client that repeats its header block (Envoy does) is routed by one dict
lookup.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from sidecar.h2.grpc_wire import Status, http_error, parse_timeout, trailers_only
from sidecar.h2.hpack import Decoder, HeaderList

Handler = Callable[[bytes], Coroutine[Any, Any, bytes]]

_PSEUDO = frozenset({b":method", b":scheme", b":path", b":authority"})
_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})
_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+\Z")  # RFC 9110 token, lowercase (RFC 9113 8.2)
_BAD_VALUE = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z")
_CACHE_ENTRIES = 64  # header blocks remembered per connection (per HPACK table generation)
_CACHE_MAX_BLOCK = 2048


@dataclass(frozen=True, slots=True)
class RequestHead:
    """How to answer a stream once its request is complete.

    Either ``handler`` (a gRPC method to call with the request message) or ``reject`` (a
    response header block to send instead, with ``reject_body`` as DATA when non-empty).
    ``malformed`` set means the stream is reset with PROTOCOL_ERROR straight away."""

    handler: Handler | None = None
    reject: bytes = b""
    reject_body: bytes = b""
    timeout: float | None = None
    content_length: int | None = None
    malformed: str = ""


class Router:
    """Maps request header lists to RequestHeads for a fixed set of unary gRPC methods."""

    def __init__(self, routes: dict[bytes, Handler]) -> None:
        self.routes = routes
        self._too_large_grpc = RequestHead(reject=trailers_only(
            Status.RESOURCE_EXHAUSTED, "request header list is larger than we accept"))
        block, body = http_error(431, "request header fields too large")
        self._too_large_http = RequestHead(reject=block, reject_body=body)
        block, body = http_error(405, "method not allowed: gRPC calls are POST requests")
        self._not_post = RequestHead(reject=block, reject_body=body)
        self._head_not_post = RequestHead(reject=block)  # a HEAD response has no body
        block, body = http_error(415, "unsupported media type: this server speaks gRPC "
                                      "(content-type application/grpc) only")
        self._not_grpc = RequestHead(reject=block, reject_body=body)

    def interpret(self, headers: HeaderList, too_large: bool) -> RequestHead:
        fields: dict[bytes, bytes] = {}
        problem = _check_fields(headers, fields)
        if problem:
            return RequestHead(malformed=problem)
        length = fields.get(b"content-length")
        if length is not None and not length.isdigit():
            return RequestHead(malformed=f"content-length {length!r} is not a number")
        head = self._route(fields, too_large)
        if length is not None:
            return _with(head, content_length=int(length))
        return head

    def _route(self, fields: dict[bytes, bytes], too_large: bool) -> RequestHead:
        grpc = _is_grpc(fields.get(b"content-type", b""))
        if too_large:
            return self._too_large_grpc if grpc else self._too_large_http
        method = fields[b":method"]
        if method != b"POST":
            return self._head_not_post if method == b"HEAD" else self._not_post
        if not grpc:
            return self._not_grpc
        path = fields[b":path"]
        handler = self.routes.get(path)
        if handler is None:
            return _grpc_reject(Status.UNIMPLEMENTED,
                                f"unknown method {path.decode('latin-1')}")
        encoding = fields.get(b"grpc-encoding", b"identity")
        if encoding != b"identity":
            return _grpc_reject(Status.UNIMPLEMENTED, f"grpc-encoding {encoding.decode('latin-1')}"
                                " is not supported; send messages uncompressed")
        timeout = fields.get(b"grpc-timeout")
        if timeout is None:
            return RequestHead(handler=handler)
        try:
            return RequestHead(handler=handler, timeout=parse_timeout(timeout))
        except ValueError as exc:
            return _grpc_reject(Status.INTERNAL, str(exc))


def _check_fields(headers: HeaderList, fields: dict[bytes, bytes]) -> str:
    """RFC 9113 8.2 and 8.3.1 for a request; fills ``fields`` (pseudo-headers and the few
    regular ones we read) and returns what is malformed, or ""."""
    regular = False
    for name, value in headers:
        if _BAD_VALUE.search(value):
            return f"invalid value for {name!r}"
        if name[:1] == b":":
            if regular:
                return f"pseudo-header {name!r} after a regular field"
            if name not in _PSEUDO or name in fields:
                return f"unknown or repeated pseudo-header {name!r}"
            fields[name] = value
            continue
        regular = True
        if not _NAME.match(name):
            return f"invalid field name {name!r}"
        if name in _CONNECTION_SPECIFIC or (name == b"te" and value != b"trailers"):
            return f"connection-specific field {name!r}"
        if name in (b"content-type", b"grpc-timeout", b"grpc-encoding", b"content-length"):
            if name == b"content-length" and name in fields and fields[name] != value:
                return "conflicting content-length fields"
            fields[name] = value
    return _check_pseudo(fields)


def _check_pseudo(fields: dict[bytes, bytes]) -> str:
    method = fields.get(b":method")
    if method is None:
        return "missing :method"
    if method == b"CONNECT":  # the one request without :scheme and :path (RFC 9113 8.5)
        return "" if b":authority" in fields and b":path" not in fields else "malformed CONNECT"
    if b":scheme" not in fields:
        return "missing :scheme"
    if not fields.get(b":path"):
        return "missing or empty :path"
    return ""


def _is_grpc(content_type: bytes) -> bool:
    # application/grpc, application/grpc+proto, application/grpc;charset=... but not grpc-web.
    return content_type == b"application/grpc" or content_type[:17] in (b"application/grpc+",
                                                                        b"application/grpc;")


def _grpc_reject(code: Status, message: str) -> RequestHead:
    return RequestHead(reject=trailers_only(code, message))


def _with(head: RequestHead, content_length: int) -> RequestHead:
    return RequestHead(head.handler, head.reject, head.reject_body, head.timeout, content_length,
                       head.malformed)


def check_trailers(headers: HeaderList) -> str:
    """Trailers carry no pseudo-headers and obey the field rules (RFC 9113 8.1); "" if fine."""
    for name, value in headers:
        if name[:1] == b":" or not _NAME.match(name) or _BAD_VALUE.search(value):
            return f"invalid trailer field {name!r}"
    return ""


class HeadCache:
    """One connection's request header blocks → RequestHead, by the block's bytes.

    An entry stays valid while the HPACK dynamic table is unchanged (the decoder's generation),
    and a block that changes the table is never remembered: decoding it again would have to
    change the table again. Clients that repeat an all-indexed block (Envoy, nghttp2) are
    routed by one dict lookup, with no HPACK decoding at all."""

    def __init__(self, decoder: Decoder, router: Router) -> None:
        self.decoder = decoder
        self.router = router
        self._heads: dict[bytes, RequestHead] = {}
        self._generation = decoder.generation

    def head(self, block: bytes) -> RequestHead:
        decoder = self.decoder
        if decoder.generation != self._generation:
            self._heads.clear()
            self._generation = decoder.generation
        head = self._heads.get(block)
        if head is None:
            headers, too_large = decoder.decode(block)
            head = self.router.interpret(headers, too_large)
            if decoder.generation == self._generation and len(block) <= _CACHE_MAX_BLOCK:
                if len(self._heads) >= _CACHE_ENTRIES:
                    self._heads.clear()
                self._heads[block] = head
        return head
