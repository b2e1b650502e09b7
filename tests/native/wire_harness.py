"""Both HTTP/2 connections (connection.Connection in Python, NativeConnection over
sidecar._native) on the same input, each on a fake transport, with a fresh engine on a fake
clock, so that what they write can be compared byte for byte."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from sidecar.h2 import H2Options
from sidecar.h2.connection import Connection
from sidecar.h2.native_connection import NativeConnection
from sidecar.observability.health import Health
from sidecar.observability.metrics import Metrics
from sidecar.service import RateLimitService
from sidecar.transports.fast import rls_server
from tests.h2.conftest import answered_in_rust, make_engine, native_module, rust_twin
from tests.h2.test_fuzz import HELD_BOUND, OPTIONS, FakeTransport

# The Python connection runs its calls as Tasks (no eager start), the way the native one always
# answers: after the read that completed them. Both then write the same bytes.
PARITY_OPTIONS = replace(OPTIONS, eager_start=False)


def converse(loop: asyncio.AbstractEventLoop, chunks: list[bytes], native: bool,
             options: H2Options = PARITY_OPTIONS, tick: float = 3600.0,
             rust_engine: bool = False) -> bytes:
    """One connection over ``chunks`` (the loop turns between them, so calls complete), then
    a tick ``tick`` seconds on; what it wrote. ``rust_engine``: the native connection with
    the native engine answering inside Rust (the whole native path)."""
    module = native_module() if native else None
    engine: Any = make_engine()
    health, metrics, fast = Health(), Metrics(), None
    if rust_engine:
        engine, fast = rust_twin(module, engine, health, metrics)
    owner = rls_server(RateLimitService(engine, metrics), health, options, native=module,
                       native_service=fast)
    if fast is not None:
        answered_in_rust(owner)

    async def run() -> bytes:
        connection: Any = (NativeConnection(owner, owner.native) if owner.native is not None
                           else Connection(owner))
        transport = FakeTransport()
        connection.connection_made(transport)
        for chunk in chunks:
            connection.data_received(chunk)
            assert connection.held_bytes <= HELD_BOUND
            for _ in range(3):  # answers from Python methods are written before the next read
                await asyncio.sleep(0)
        connection.tick(loop.time() + tick)
        assert connection.held_bytes <= HELD_BOUND
        connection.connection_lost(None)
        return bytes(transport.out)

    return loop.run_until_complete(asyncio.wait_for(run(), 10))


def both(loop: asyncio.AbstractEventLoop, chunks: list[bytes], rust: bool = True,
         **kwargs: Any) -> bytes:
    """What the connections wrote, which must be the same: the Python one, the native one
    over the Python engine, and (``rust``) the native one with the native engine answering in
    Rust."""
    python = converse(loop, chunks, native=False, **kwargs)
    native = converse(loop, chunks, native=True, **kwargs)
    assert native == python, first_difference(python, native)
    if rust:
        # Answered inside the read that completed the call, where the others answer after it:
        # the same frames on every stream, in the same order, but interleaved across streams
        # differently (a PING ACK of the next read may come before or after an answer).
        # The same goes for the HPACK dynamic table size update our encoder owes after the
        # peer's SETTINGS: it starts whichever header block is written first.
        answered = converse(loop, chunks, native=True, rust_engine=True, **kwargs)
        assert size_updates(answered) == size_updates(python)
        expected, got = by_stream(python), by_stream(answered)
        assert got == expected, next(
            f"stream {sid}: python {expected.get(sid)} vs native {got.get(sid)}"
            for sid in sorted(set(expected) | set(got)) if expected.get(sid) != got.get(sid))
    return python


Frame = tuple[int, int, int, bytes]


def by_stream(out: bytes) -> dict[int, list[Frame]]:
    """The frames written on each stream (0: the connection's), in order; header blocks
    without the dynamic table size updates they start with (see ``size_updates``)."""
    streams: dict[int, list[Frame]] = {}
    for ftype, flags, sid, payload in frames(out):
        if ftype == HEADERS:
            payload = payload[_size_update_end(payload):]
        streams.setdefault(sid, []).append((ftype, flags, sid, payload))
    return streams


def size_updates(out: bytes) -> int:
    """How many header blocks start with a dynamic table size update."""
    return sum(1 for ftype, _, _, payload in frames(out)
               if ftype == HEADERS and _size_update_end(payload) > 0)


HEADERS = 1


def _size_update_end(block: bytes) -> int:
    """Where the dynamic table size updates (RFC 7541 6.3: 001xxxxx, a 5-bit prefix integer)
    at the start of ``block`` end."""
    pos = 0
    while pos < len(block) and block[pos] & 0xE0 == 0x20:
        pos += 1
        if block[pos - 1] & 0x1F == 0x1F:
            while pos < len(block) and block[pos] & 0x80:
                pos += 1
            pos += 1
    return pos


def first_difference(python: bytes, native: bytes) -> str:
    """The frames of both outputs from the first one that differs."""
    a, b = frames(python), frames(native)
    i = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
             min(len(a), len(b)))
    return f"frame {i}: python {a[i:i + 4]} vs native {b[i:i + 4]}"


def frames(out: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, stream, payload) of each frame written."""
    found, pos = [], 0
    while pos + 9 <= len(out):
        length = int.from_bytes(out[pos:pos + 3], "big")
        found.append((out[pos + 3], out[pos + 4], int.from_bytes(out[pos + 5:pos + 9], "big"),
                      out[pos + 9:pos + 9 + length]))
        pos += 9 + length
    return found
