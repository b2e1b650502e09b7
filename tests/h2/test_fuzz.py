"""Fuzzing the frame parser (the whole connection state machine) and the HPACK decoder.

Inputs are random, or valid ones (made by the `h2` and `hpack` libraries) with bytes flipped,
inserted, deleted and truncated, delivered in random chunks. What must hold for every input:

- the HPACK decoder returns or raises HPACKError, nothing else; its table and its output stay
  within their limits;
- a connection never lets an exception out of data_received, never logs an unexpected error
  (the path that would hide a bug), and answers bad input with frames that parse, a GOAWAY
  carrying a defined error code when it gives up;
- what a connection holds (input buffer, queued output, request bodies, blocked responses)
  stays within the bounds H2Options sets;
- each input is handled within a bounded time (hypothesis' deadline plus a wait_for).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import h2.config
import h2.connection
import hpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.h2 import H2Options
from sidecar.h2 import frames as fr
from sidecar.h2.connection import Connection
from sidecar.h2.errors import ErrorCode, HPACKError
from sidecar.h2.hpack import Decoder
from sidecar.observability.health import Health
from sidecar.observability.metrics import Metrics
from sidecar.service import RateLimitService
from sidecar.transports.fast import rls_server
from tests.h2.conftest import make_engine
from tests.h2.wire import RLS_PATH, grpc_body, rls_request

OPTIONS = H2Options(max_concurrent_streams=8, max_message_size=2048, max_header_list_size=2048,
                    max_header_block_size=8192, max_buffered_bytes=16384,
                    connection_window=65535, stream_window=8192)
# Input buffer (one frame) + request bodies + window slack + queued output for what one input
# can ask for: far below what an unbounded implementation would reach on these inputs.
HELD_BOUND = 9 + fr.DEFAULT_MAX_FRAME + 16384 + 65535 + 256 * 1024

# -- HPACK ---------------------------------------------------------------------------------------


def decode_checked(decoder: Decoder, block: bytes) -> bool:
    """Decode; True when the block was valid. Only HPACKError may escape."""
    try:
        headers, _ = decoder.decode(block)
    except HPACKError:
        return False
    assert sum(len(n) + len(v) + 32 for n, v in headers) <= decoder.max_header_list_size
    assert decoder.table_size <= decoder.max_table_size <= decoder.settings_table_size
    return True


@settings(max_examples=1500, deadline=500)
@given(st.binary(max_size=512))
def test_hpack_decoder_on_random_bytes(block: bytes) -> None:
    decode_checked(Decoder(max_header_list_size=1024), block)


HEADERS = st.lists(st.tuples(st.from_regex(r"[a-z:][a-z0-9\-]{0,12}", fullmatch=True),
                             st.text(max_size=40)), max_size=8)


def mutate(data: bytes, edits: list[tuple[int, int, int]], start: int = 0) -> bytes:
    """Apply (kind, position, value) edits at or after ``start``."""
    out = bytearray(data)
    for kind, position, value in edits:
        if len(out) <= start:
            out.append(value)
            continue
        i = start + position % (len(out) - start)
        if kind == 0:
            out[i] ^= 1 << (value % 8)
        elif kind == 1:
            out[i] = value
        elif kind == 2:
            out.insert(i, value)
        elif kind == 3:
            del out[i:i + 1 + value % 8]
        else:
            del out[i:]
    return bytes(out)


EDITS = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 1 << 16), st.integers(0, 255)),
                 min_size=1, max_size=6)


@settings(max_examples=800, deadline=500)
@given(blocks=st.lists(st.tuples(HEADERS, st.booleans()), min_size=1, max_size=6),
       edits=EDITS, target=st.integers(0, 5))
def test_hpack_decoder_on_mutated_blocks(blocks: list[tuple[list[tuple[str, str]], bool]],
                                         edits: list[tuple[int, int, int]], target: int) -> None:
    encoder = hpack.Encoder()
    decoder = Decoder(max_header_list_size=1024)
    for i, (headers, huffman) in enumerate(blocks):
        block = encoder.encode(headers, huffman=huffman)
        if i == target % len(blocks):
            block = mutate(block, edits)
        if not decode_checked(decoder, block):
            return  # the connection would be gone: its table state no longer matters


# -- the connection --------------------------------------------------------------------------------


class FakeTransport(asyncio.Transport):
    """Collects what the connection writes."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        assert not self.closed or isinstance(data, bytes | bytearray)
        self.out += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        return None

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None


class ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def errors() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    logger = logging.getLogger("sidecar.h2")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def feed(loop: asyncio.AbstractEventLoop, chunks: list[bytes], eager: bool) -> bytes:
    """Run one connection over ``chunks``; return what it wrote."""
    owner = rls_server(RateLimitService(make_engine(), Metrics()), Health(), H2Options(**{
        **OPTIONS.__dict__, "eager_start": eager}))

    async def run() -> bytes:
        connection = Connection(owner)
        transport = FakeTransport()
        connection.connection_made(transport)
        for chunk in chunks:
            connection.data_received(chunk)
            assert connection.held_bytes <= HELD_BOUND
            await asyncio.sleep(0)  # calls that run as tasks complete here
        await asyncio.sleep(0)
        connection.tick(loop.time() + 3600)  # every timeout expires: must not raise either
        assert connection.held_bytes <= HELD_BOUND
        connection.connection_lost(None)
        return bytes(transport.out)

    return loop.run_until_complete(asyncio.wait_for(run(), 10))


def check_output(out: bytes) -> tuple[set[int], set[int]]:
    """Our output is whole frames; a GOAWAY carries a defined code; header blocks decode.
    Returns (GOAWAY codes, streams that got a response or a reset)."""
    decoder = hpack.Decoder()
    pos = 0
    block = b""
    goaways: set[int] = set()
    answered: set[int] = set()
    while pos < len(out):
        assert len(out) - pos >= 9, "partial frame header"
        length = int.from_bytes(out[pos:pos + 3], "big")
        ftype, flags = out[pos + 3], out[pos + 4]
        payload = out[pos + 9:pos + 9 + length]
        assert len(payload) == length, "partial frame"
        stream = int.from_bytes(out[pos + 5:pos + 9], "big")
        if ftype == fr.GOAWAY:
            goaways.add(ErrorCode(int.from_bytes(payload[4:8], "big")))
        elif ftype == fr.RST_STREAM:
            ErrorCode(int.from_bytes(payload, "big"))
            answered.add(stream)
        elif ftype in (fr.HEADERS, fr.CONTINUATION):
            answered.add(stream)
            block += payload
            if flags & fr.END_HEADERS:
                decoder.decode(block)
                block = b""
        pos += 9 + length
    return goaways, answered


def chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    chunks, pos = [], 0
    for size in sizes:
        if pos >= len(data):
            break
        chunks.append(data[pos:pos + size])
        pos += size
    if pos < len(data):
        chunks.append(data[pos:])
    return chunks


REQUEST = st.fixed_dictionaries({
    "path": st.sampled_from([RLS_PATH, "/grpc.health.v1.Health/Check", "/x/y", ""]),
    "body": st.sampled_from([grpc_body(rls_request("test", ("bulk", "f"))), grpc_body(b""),
                             b"", b"\x01\x00\x00\x00\x00", grpc_body(b"\xff" * 40)]),
    "split": st.integers(0, 3),
    "pad": st.none() | st.integers(0, 20),
    "priority": st.booleans(),
    "extra": st.integers(0, 3),
    "reset": st.booleans(),
})
EXTRAS = st.lists(st.sampled_from(["ping", "settings", "window", "priority"]), max_size=4)


def client_bytes(requests: list[dict[str, Any]], extras: list[str]) -> bytes:
    """A valid client conversation written by the `h2` library."""
    config = h2.config.H2Configuration(client_side=True, header_encoding=None,
                                       validate_outbound_headers=False)
    conn = h2.connection.H2Connection(config)
    conn.initiate_connection()
    for i, spec in enumerate(requests):
        sid = 1 + 2 * i
        headers = [(":method", "POST"), (":scheme", "http"), (":path", spec["path"] or "/"),
                   (":authority", "x"), ("content-type", "application/grpc"),
                   ("te", "trailers")] + [(f"x-extra-{n}", "v" * 300) for n in range(
                       spec["extra"])]
        priority = {"priority_weight": 16, "priority_depends_on": 0} if spec["priority"] else {}
        conn.send_headers(sid, headers, end_stream=not spec["body"], **priority)
        body = spec["body"]
        if body:
            cut = len(body) * spec["split"] // 4
            if cut:
                conn.send_data(sid, body[:cut], pad_length=spec["pad"])
            conn.send_data(sid, body[cut:], end_stream=True, pad_length=spec["pad"])
        if spec["reset"]:
            conn.reset_stream(sid)
    for extra in extras:
        if extra == "ping":
            conn.ping(b"12345678")
        elif extra == "settings":
            conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 10,
                                  h2.settings.SettingCodes.HEADER_TABLE_SIZE: 0})
        elif extra == "window":
            conn.increment_flow_control_window(1000)
        else:
            conn.prioritize(1, weight=200)
    return bytes(conn.data_to_send())


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(requests=st.lists(REQUEST, min_size=1, max_size=6), extras=EXTRAS,
       sizes=st.lists(st.integers(1, 400), max_size=8), eager=st.booleans())
def test_connection_on_valid_conversations(loop: asyncio.AbstractEventLoop, errors: ErrorLog,
                                           requests: list[dict[str, Any]], extras: list[str],
                                           sizes: list[int], eager: bool) -> None:
    out = feed(loop, chunked(client_bytes(requests, extras), sizes), eager)
    goaways, answered = check_output(out)
    assert not errors.records, errors.records[-1].getMessage()
    assert goaways <= {ErrorCode.NO_ERROR}  # a valid conversation is never an error
    unanswered = {1 + 2 * i for i, r in enumerate(requests) if not r["reset"]} - answered
    assert not unanswered  # every stream the client did not cancel got an answer


@settings(max_examples=1000, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(requests=st.lists(REQUEST, min_size=1, max_size=4), extras=EXTRAS, edits=EDITS,
       sizes=st.lists(st.integers(1, 400), max_size=8), eager=st.booleans())
def test_connection_on_mutated_conversations(loop: asyncio.AbstractEventLoop, errors: ErrorLog,
                                             requests: list[dict[str, Any]], extras: list[str],
                                             edits: list[tuple[int, int, int]],
                                             sizes: list[int], eager: bool) -> None:
    data = mutate(client_bytes(requests, extras), edits, start=len(fr.PREFACE))
    check_output(feed(loop, chunked(data, sizes), eager))
    assert not errors.records, errors.records[-1].getMessage()


FRAME = st.tuples(st.sampled_from([*range(11), 0x10, 0xFF]), st.integers(0, 255),
                  st.sampled_from([0, 1, 2, 3, 5, 0x7FFFFFFF]), st.binary(max_size=64))


@settings(max_examples=1000, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(FRAME, max_size=12), eager=st.booleans())
def test_connection_on_random_frames(loop: asyncio.AbstractEventLoop, errors: ErrorLog,
                                     frames: list[tuple[int, int, int, bytes]], eager: bool
                                     ) -> None:
    data = fr.PREFACE + fr.settings({}) + b"".join(
        fr.frame(t, flags, sid, payload) for t, flags, sid, payload in frames)
    check_output(feed(loop, [data], eager))
    assert not errors.records, errors.records[-1].getMessage()


@settings(max_examples=300, deadline=2000)
@given(st.binary(max_size=2048))
def test_connection_on_random_bytes(loop: asyncio.AbstractEventLoop, errors: ErrorLog,
                                    data: bytes) -> None:
    check_output(feed(loop, [fr.PREFACE + data], False))
    check_output(feed(loop, [data], False))
    assert not errors.records, errors.records[-1].getMessage()
