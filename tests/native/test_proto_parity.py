"""The native protobuf codec against Python's protobuf runtime (upb, from xds-protos' messages):
random RateLimitRequest and HealthCheckRequest messages -- valid ones, ones with unknown fields
and known fields of the wrong wire type, nested groups, mutated and random bytes -- decode to
the same request or fail with the same error text; random RateLimitResponses encode to the
bytes protobuf writes. Everything goes through sidecar._native.H2Connection, the path the
transport takes."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.h2 import frames as fr
from sidecar.h2.hpack import encode_block
from tests.h2.conftest import native_module
from tests.h2.test_fuzz import EDITS, mutate
from tests.h2.wire import HEALTH_PATH, RLS_PATH, grpc_body, request_headers
from tests.native.wire_harness import frames

Decoded = tuple[str, Any]  # ("ok", request as the wire hands it over) or ("malformed", text)
U32 = st.integers(0, 2**32 - 1)
U64 = st.integers(0, 2**64 - 1)
TEXT = st.text(max_size=12)


def native_call(path: str, message: bytes) -> tuple[Any, int, Any]:
    """(the connection, the call's kind, its payload) for one request carrying ``message``."""
    native = native_module()
    conn = native.H2Connection(now=0.0, max_concurrent_streams=8, max_message_size=1 << 20,
                               max_header_list_size=4096, max_header_block_size=8192,
                               stream_window=1 << 20, connection_window=1 << 20,
                               max_buffered_bytes=1 << 22, handshake_timeout=10.0,
                               idle_timeout=10.0, request_timeout=10.0, write_timeout=10.0,
                               drain_ping_timeout=1.0)
    block = encode_block([(n.encode(), v.encode()) for n, v in request_headers(path)])
    data = (fr.PREFACE + fr.settings({}) + fr.headers(1, block, False, fr.DEFAULT_MAX_FRAME)
            + fr.data(1, grpc_body(message), True))
    _, calls, _, close, _ = conn.feed(data, 0.0)
    assert not close and len(calls) == 1
    sid, kind, payload, _ = calls[0]
    assert sid == 1
    return conn, kind, payload


def native_request(message: bytes) -> Decoded:
    _, kind, payload = native_call(RLS_PATH, message)
    return ("ok", payload) if kind == native_module().RATE_LIMIT else ("malformed", payload)


def python_request(message: bytes) -> Decoded:
    try:
        request: Any = rls_pb2.RateLimitRequest.FromString(message)
    except DecodeError as exc:
        return "malformed", str(exc)
    descriptors = tuple(
        (tuple((e.key, e.value) for e in d.entries),
         d.hits_addend.value if d.HasField("hits_addend") else None,
         (d.limit.requests_per_unit, d.limit.unit) if d.HasField("limit") else None)
        for d in request.descriptors)
    return "ok", (request.domain, descriptors, request.hits_addend)


# -- messages --------------------------------------------------------------------------------


def varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def tag(field: int, wire_type: int) -> bytes:
    return varint(field << 3 | wire_type)


@st.composite
def descriptor(draw: st.DrawFn) -> Any:
    d = ratelimit_pb2.RateLimitDescriptor(entries=[
        ratelimit_pb2.RateLimitDescriptor.Entry(key=k, value=v)
        for k, v in draw(st.lists(st.tuples(TEXT, TEXT), max_size=3))])
    if draw(st.booleans()):
        d.limit.requests_per_unit = draw(U32)
        d.limit.unit = draw(st.integers(-(2**31), 2**31 - 1))
    if draw(st.booleans()):
        d.hits_addend.value = draw(U64)
    return d


@st.composite
def valid_request(draw: st.DrawFn) -> bytes:
    request = rls_pb2.RateLimitRequest(domain=draw(TEXT), hits_addend=draw(U32),
                                       descriptors=draw(st.lists(descriptor(), max_size=3)))
    return bytes(request.SerializeToString())


FIELD_NUMBERS = st.sampled_from([0, 1, 2, 3, 4, 15, 16, 2047, 2**29 - 1]) | st.integers(0, 2**29)
SIMPLE = st.one_of(
    st.tuples(FIELD_NUMBERS, st.just(0), U64).map(lambda t: tag(t[0], 0) + varint(t[2])),
    st.tuples(FIELD_NUMBERS, st.sampled_from([1, 5])).map(
        lambda t: tag(t[0], t[1]) + b"\x01" * (8 if t[1] == 1 else 4)),
    st.tuples(FIELD_NUMBERS, st.binary(max_size=6)).map(
        lambda t: tag(t[0], 2) + varint(len(t[1])) + t[1]),
    st.tuples(FIELD_NUMBERS, st.sampled_from([4, 6, 7])).map(lambda t: tag(t[0], t[1])),
    st.sampled_from([b"\x18" + b"\xff" * 9 + b"\x01", b"\x18" + b"\x80" * 10 + b"\x00",
                     b"\x88\x80\x80\x80\x00\x01", b"\x88\x80\x80\x80\x80\x00\x01",
                     b"\x0a\x81\x80\x80\x80\x00a", b"\x0a\x01\xff", b"\x0a\x02\xc3\xa9"]),
)


def nested(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """A submessage (length-delimited) or a group around ``children`` fields."""
    message = st.tuples(FIELD_NUMBERS, st.lists(children, max_size=4)).map(
        lambda t: tag(t[0], 2) + varint(len(b"".join(t[1]))) + b"".join(t[1]))
    group = st.tuples(FIELD_NUMBERS, st.lists(children, max_size=3), st.booleans()).map(
        lambda t: tag(t[0], 3) + b"".join(t[1]) + tag(t[0] if t[2] else t[0] + 1, 4))
    return message | group


FIELDS = st.recursive(SIMPLE, nested, max_leaves=12)


@pytest.fixture(autouse=True, scope="module")
def native() -> None:
    """Skip (fail under CI) when sidecar._native is not built."""
    native_module()


def slow(examples: int) -> Any:
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@slow(200)
@given(valid_request())
def test_valid_requests_decode_alike(message: bytes) -> None:
    assert native_request(message) == python_request(message)


@slow(400)
@given(valid_request(), st.lists(FIELDS, max_size=4), st.lists(st.integers(0, 1 << 16), max_size=4))
def test_requests_with_unknown_and_mistyped_fields(message: bytes, extra: list[bytes],
                                                   positions: list[int]) -> None:
    """Random fields (any number, any wire type, submessages and groups nested in any way)
    spliced into a valid request at field boundaries of its top level or at random bytes."""
    out = bytearray(message)
    for i, field in enumerate(extra):
        at = positions[i] % (len(out) + 1) if i < len(positions) else len(out)
        out[at:at] = field
    assert native_request(bytes(out)) == python_request(bytes(out))


@slow(400)
@given(st.lists(FIELDS, max_size=6))
def test_random_fields(fields: list[bytes]) -> None:
    message = b"".join(fields)
    assert native_request(message) == python_request(message)


@slow(400)
@given(valid_request(), EDITS)
def test_mutated_requests(message: bytes, edits: list[tuple[int, int, int]]) -> None:
    message = mutate(message, edits)
    assert native_request(message) == python_request(message)


@slow(200)
@given(st.binary(max_size=64))
def test_random_bytes(message: bytes) -> None:
    assert native_request(message) == python_request(message)


@pytest.mark.parametrize("level", [0, 1, 2], ids=["request", "descriptor", "entry"])
def test_group_depth(level: int) -> None:
    """Unknown groups nest 100 deep in all, counting the message levels above them."""
    for depth in range(96, 103):
        message = b"\x2b" * depth + b"\x2c" * depth
        if level == 2:
            message = b"\x0a" + varint(len(message)) + message
        if level >= 1:
            message = b"\x12" + varint(len(message)) + message
        assert native_request(message) == python_request(message), depth


# -- health ----------------------------------------------------------------------------------


def health(message: bytes) -> Decoded:
    _, kind, payload = native_call(HEALTH_PATH, message)
    return ("ok", payload) if kind == native_module().HEALTH else ("malformed", payload)


def python_health(message: bytes) -> Decoded:
    try:
        return "ok", health_pb2.HealthCheckRequest.FromString(message).service
    except DecodeError as exc:
        return "malformed", str(exc)


@slow(200)
@given(st.one_of(TEXT.map(lambda s: health_pb2.HealthCheckRequest(service=s).SerializeToString()),
                 st.lists(FIELDS, max_size=4).map(b"".join), st.binary(max_size=32)))
def test_health_requests_decode_alike(message: bytes) -> None:
    assert health(message) == python_health(message)


# -- responses -------------------------------------------------------------------------------

LIMIT = st.none() | st.tuples(TEXT, U32, st.integers(0, 7))
STATUS = st.tuples(st.integers(0, 2), LIMIT, U32, st.integers(0, 2**40))
RESPONSE = st.tuples(st.integers(0, 2), st.lists(STATUS, max_size=4),
                     st.lists(st.tuples(TEXT, TEXT), max_size=3))


def python_response(overall: int, statuses: list[Any], headers: list[tuple[str, str]]) -> bytes:
    """As rls_proto.ResponseBuilder builds it."""
    response = rls_pb2.RateLimitResponse(overall_code=overall)
    for code, limit, remaining, reset_ms in statuses:
        s = response.statuses.add(code=code, limit_remaining=remaining)
        if limit is not None:
            name, requests_per_unit, unit = limit
            s.current_limit.CopyFrom(rls_pb2.RateLimitResponse.RateLimit(
                requests_per_unit=requests_per_unit, unit=unit, name=name))
            s.duration_until_reset.CopyFrom(Duration(seconds=reset_ms // 1000,
                                                     nanos=reset_ms % 1000 * 1_000_000))
    for key, value in headers:
        response.response_headers_to_add.add(key=key, value=value)
    return bytes(response.SerializeToString())


def response_message(out: bytes) -> bytes:
    data = b"".join(payload for ftype, _, _, payload in frames(out) if ftype == fr.DATA)
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") == len(data) - 5
    return data[5:]


@slow(200)
@given(RESPONSE)
def test_responses_encode_as_protobuf_does(response: tuple[int, list[Any], list[Any]]) -> None:
    conn, _, _ = native_call(RLS_PATH, b"")
    out, close, problems = conn.respond([(1, native_module().RATE_LIMIT, response)], 0.0)
    assert not problems and not close
    expected = python_response(*response)
    assert response_message(out) == expected
    assert rls_pb2.RateLimitResponse.FromString(response_message(out)) == \
        rls_pb2.RateLimitResponse.FromString(expected)


def test_health_responses() -> None:
    for status in (1, 2):
        conn, _, _ = native_call(HEALTH_PATH, b"")
        out, _, _ = conn.respond([(1, native_module().HEALTH, status)], 0.0)
        reply = health_pb2.HealthCheckResponse.FromString(response_message(out))
        assert reply.status == status


def test_unusable_answers_end_the_call_internal() -> None:
    conn, _, _ = native_call(RLS_PATH, b"")
    out, _, problems = conn.respond([(1, native_module().RATE_LIMIT, (1, [(9, None, 0, 0)], []))],
                                    0.0)
    assert problems and "9 is not a rate limit code" in problems[0]
    assert b"grpc-status" in out and b"\x0213" in out  # grpc-status 13 (INTERNAL)
