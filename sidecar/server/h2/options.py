"""Every limit and timeout of the fast transport, with the reason for its default."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True)
class H2Options:
    # Connections beyond this are refused (GOAWAY ENHANCE_YOUR_CALM, then closed): each costs
    # a decoder table, buffers and a few objects, so the count bounds the server's memory.
    max_connections: int = 4096
    # Advertised SETTINGS_MAX_CONCURRENT_STREAMS. Envoy opens another connection when a
    # connection is full, so this is a per-connection memory bound, not a throughput cap.
    max_concurrent_streams: int = 256
    # gRPC's default maximum message size; larger requests get RESOURCE_EXHAUSTED.
    max_message_size: int = 4 * MiB
    # Advertised SETTINGS_MAX_HEADER_LIST_SIZE (decoded size, RFC 9113 6.5.2).
    max_header_list_size: int = 16 * 1024
    # A compressed header block (HEADERS + CONTINUATION) larger than this is a flood:
    # connection error ENHANCE_YOUR_CALM.
    max_header_block_size: int = 64 * 1024
    # Advertised SETTINGS_INITIAL_WINDOW_SIZE: one ordinary request never waits for a
    # WINDOW_UPDATE; large ones get stream credit while they stay under max_message_size.
    stream_window: int = 1 * MiB
    # Connection receive window. Credit is returned as data arrives while the request bytes
    # held for incomplete streams stay under max_buffered_bytes; past that it is withheld, so
    # a connection never holds more than max_buffered_bytes + connection_window.
    connection_window: int = 1 * MiB
    max_buffered_bytes: int = 8 * MiB
    # Preface and first SETTINGS must arrive within this.
    handshake_timeout: float = 10.0
    # A connection with no stream for this long is closed with GOAWAY(NO_ERROR).
    idle_timeout: float = 300.0
    # A request must be complete (END_STREAM received) this long after its HEADERS, and a
    # header block complete this long after it started: slow senders lose their stream.
    request_timeout: float = 30.0
    # A response blocked by the peer's flow control, or a connection whose socket buffer the
    # peer does not drain, is given up after this long.
    write_timeout: float = 30.0
    # Graceful drain: after GOAWAY(2^31-1) + PING, wait at most this for the PING's ACK
    # before sending the final GOAWAY with the last stream id.
    drain_ping_timeout: float = 1.0
    # Python 3.11 only (3.12+ always starts calls eagerly in a real Task): run each call's
    # first step inside the frame handler, skipping a Task when it completes at once. Safe
    # only when nothing the call does before its first suspension needs
    # asyncio.current_task() -- true for the memory store, false for Redis (asyncio.timeout).
    eager_start: bool = False
    backlog: int = 1024
    reuse_port: bool = False
    # The connection's wire side in Rust (native_connection.NativeConnection, the same
    # protocol frame for frame): True requires sidecar._native, False keeps the Python
    # connection, None takes the native one when it is built and VIVA_NATIVE is not 0.
    native: bool | None = None
