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
from tests.h2.conftest import make_engine, native_module
from tests.h2.test_fuzz import HELD_BOUND, OPTIONS, FakeTransport

# The Python connection runs its calls as Tasks (no eager start), the way the native one always
# answers: after the read that completed them. Both then write the same bytes.
PARITY_OPTIONS = replace(OPTIONS, eager_start=False)


def converse(loop: asyncio.AbstractEventLoop, chunks: list[bytes], native: bool,
             options: H2Options = PARITY_OPTIONS, tick: float = 3600.0) -> bytes:
    """One connection over ``chunks`` (the loop turns between them, so calls complete), then
    a tick ``tick`` seconds on; what it wrote."""
    owner = rls_server(RateLimitService(make_engine(), Metrics()), Health(), options,
                       native=native_module() if native else None)

    async def run() -> bytes:
        connection: Any = (NativeConnection(owner, owner.native) if owner.native is not None
                           else Connection(owner))
        transport = FakeTransport()
        connection.connection_made(transport)
        for chunk in chunks:
            connection.data_received(chunk)
            assert connection.held_bytes <= HELD_BOUND
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        connection.tick(loop.time() + tick)
        assert connection.held_bytes <= HELD_BOUND
        connection.connection_lost(None)
        return bytes(transport.out)

    return loop.run_until_complete(asyncio.wait_for(run(), 10))


def both(loop: asyncio.AbstractEventLoop, chunks: list[bytes], **kwargs: Any) -> bytes:
    """What both connections wrote, which must be the same."""
    python = converse(loop, chunks, native=False, **kwargs)
    native = converse(loop, chunks, native=True, **kwargs)
    assert native == python, first_difference(python, native)
    return python


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
