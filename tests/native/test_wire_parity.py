"""The native HTTP/2 connection against the Python one: the same bytes in, in the same chunks,
must give the same bytes out (answers, resets, SETTINGS ACKs, WINDOW_UPDATEs, GOAWAY codes and
texts), for valid conversations written by the `h2` library, for the same conversations with
bytes flipped, inserted, deleted and truncated, for random frame sequences, for random header
blocks and for random bytes; every timeout is then run out on both."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import hpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.h2 import frames as fr
from tests.h2.conftest import native_module
from tests.h2.test_fuzz import (
    EDITS,
    EXTRAS,
    FRAME,
    HEADERS,
    REQUEST,
    ErrorLog,
    check_output,
    chunked,
    client_bytes,
    mutate,
)
from tests.h2.wire import RLS_PATH, grpc_body, request_headers, rls_request
from tests.native.wire_harness import both


@pytest.fixture(autouse=True, scope="module")
def native() -> None:
    """Skip (fail under CI) when sidecar._native is not built."""
    native_module()


def slow(examples: int) -> Any:
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


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
    assert not handler.records, handler.records[-1].getMessage()


@slow(150)
@given(requests=st.lists(REQUEST, min_size=1, max_size=6), extras=EXTRAS,
       sizes=st.lists(st.integers(1, 400), max_size=8))
def test_valid_conversations(loop: asyncio.AbstractEventLoop, errors: ErrorLog,
                             requests: list[dict[str, Any]], extras: list[str],
                             sizes: list[int]) -> None:
    out = both(loop, chunked(client_bytes(requests, extras), sizes))
    goaways, _ = check_output(out)
    assert goaways <= {0}


@slow(400)
@given(requests=st.lists(REQUEST, min_size=1, max_size=4), extras=EXTRAS, edits=EDITS,
       sizes=st.lists(st.integers(1, 400), max_size=8))
def test_mutated_conversations(loop: asyncio.AbstractEventLoop, errors: ErrorLog,
                               requests: list[dict[str, Any]], extras: list[str],
                               edits: list[tuple[int, int, int]], sizes: list[int]) -> None:
    data = mutate(client_bytes(requests, extras), edits, start=len(fr.PREFACE))
    both(loop, chunked(data, sizes))


@slow(400)
@given(frames=st.lists(FRAME, max_size=12))
def test_random_frames(loop: asyncio.AbstractEventLoop, errors: ErrorLog,
                       frames: list[tuple[int, int, int, bytes]]) -> None:
    data = fr.PREFACE + fr.settings({}) + b"".join(
        fr.frame(t, flags, sid, payload) for t, flags, sid, payload in frames)
    both(loop, [data])


@slow(150)
@given(data=st.binary(max_size=2048), sizes=st.lists(st.integers(1, 64), max_size=4))
def test_random_bytes(loop: asyncio.AbstractEventLoop, errors: ErrorLog, data: bytes,
                      sizes: list[int]) -> None:
    both(loop, chunked(fr.PREFACE + data, sizes))
    both(loop, [data])


def conversation(*blocks: bytes, body: bytes = b"") -> bytes:
    """Our preface, then one HEADERS per block on streams 1, 3, ... (with ``body`` as DATA)."""
    out = fr.PREFACE + fr.settings({})
    for i, block in enumerate(blocks):
        sid = 1 + 2 * i
        out += fr.headers(sid, block, not body, fr.DEFAULT_MAX_FRAME)
        if body:
            out += fr.data(sid, body, True)
    return out


@slow(250)
@given(blocks=st.lists(st.tuples(HEADERS, st.booleans()), min_size=1, max_size=4),
       edits=EDITS, target=st.integers(0, 3), table_size=st.sampled_from([None, 0, 256]))
def test_header_blocks(loop: asyncio.AbstractEventLoop, errors: ErrorLog,
                       blocks: list[tuple[list[tuple[str, str]], bool]],
                       edits: list[tuple[int, int, int]], target: int,
                       table_size: int | None) -> None:
    """HPACK decoding and request checks: random header lists (pseudo-headers and all) through
    the reference encoder, one of them mutated."""
    encoder = hpack.Encoder()
    if table_size is not None:
        encoder.header_table_size = table_size
    encoded = []
    for i, (headers, huffman) in enumerate(blocks):
        block = bytes(encoder.encode(request_headers() + headers, huffman=huffman))
        encoded.append(mutate(block, edits) if i == target % len(blocks) else block)
    both(loop, [conversation(*encoded, body=grpc_body(rls_request("test", ("bulk", "h"))))])


TIMEOUTS = st.sampled_from(["", "1n", "5m", "100S", "99999999H", "1", "S", "123456789S",
                            "7x", "-1S"])


@slow(100)
@given(timeout=TIMEOUTS, encoding=st.sampled_from(["", "identity", "gzip", "\xe9t\xe9"]),
       path=st.sampled_from([RLS_PATH, "/grpc.health.v1.Health/Check", "/x/caf\xe9"]),
       content_type=st.sampled_from(["application/grpc", "application/grpc+proto",
                                     "application/json", ""]),
       method=st.sampled_from(["POST", "GET", "HEAD"]), split=st.booleans(), tick=st.floats(0, 60))
def test_grpc_routing_and_timeouts(loop: asyncio.AbstractEventLoop, errors: ErrorLog,
                                   timeout: str, encoding: str, path: str, content_type: str,
                                   method: str, split: bool, tick: float) -> None:
    headers = [(":method", method), (":scheme", "http"), (":path", path),
               (":authority", "x"), ("content-type", content_type)]
    headers += [("grpc-timeout", timeout)] if timeout else []
    headers += [("grpc-encoding", encoding)] if encoding else []
    block = bytes(hpack.Encoder().encode(headers))
    data = conversation(block, body=grpc_body(rls_request("test", ("bulk", "r"))))
    cut = len(data) - 20 if split else len(data)
    # A 1 ns deadline has passed by the time Python starts the call, while the native engine
    # answers inside the read, at the instant the request completed: both answers are right.
    both(loop, [data[:cut]] + ([data[cut:]] if split else []), tick=tick,
         rust=timeout != "1n")
