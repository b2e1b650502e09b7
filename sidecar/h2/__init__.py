"""A purpose-built HTTP/2 server for unary gRPC: a library that imports nothing of the rest of
the sidecar. Its user hands H2Server a Router of ``path -> async (message) -> message``
handlers; a handler ends a call with a non-OK status by raising GrpcError.

Modules, bottom up: errors (protocol error types), huffman and hpack (RFC 7541), frames (RFC
9113 layout), grpc_wire (gRPC status, timeouts, message framing, precomputed header blocks),
request (header block -> what to do with the stream; the Router), stream, flow (receive-side
flow control), sending (responses within the peer's limits), calls (running methods),
connection (the protocol state machine), options (limits), server (listening, draining,
timeouts). native_connection is the same connection with its wire side in Rust
(``sidecar._native``, which its user hands in as a NativeWire).
"""

from sidecar.h2.grpc_wire import GrpcError, Status
from sidecar.h2.native_connection import Malformed, NativeMethods, NativeWire
from sidecar.h2.options import H2Options
from sidecar.h2.request import Handler, Router
from sidecar.h2.server import H2Server

__all__ = ["GrpcError", "H2Options", "H2Server", "Handler", "Malformed", "NativeMethods",
           "NativeWire", "Router", "Status"]
