"""The fast transport: a purpose-built HTTP/2 server for unary gRPC (see server.H2Server).

Modules, bottom up: errors (protocol error types), huffman and hpack (RFC 7541), frames (RFC
9113 layout), grpc_wire (gRPC status, timeouts, message framing, precomputed header blocks),
request (header block -> what to do with the stream), services (the two methods over the
Engine), stream, flow (receive-side flow control), sending (responses within the peer's
limits), calls (running methods), connection (the protocol state machine), options (limits),
server (listening, draining, timeouts). native_connection is the same connection with its wire
side in Rust (sidecar._native), native_services the two methods over what it decodes.
"""

from sidecar.server.h2.options import H2Options
from sidecar.server.h2.server import H2Server, event_loop_factory

__all__ = ["H2Options", "H2Server", "event_loop_factory"]
