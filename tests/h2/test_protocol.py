"""The fast transport at the HTTP/2 level: frames in, frames out, against a real socket.

h2spec (test_h2spec.py) covers the RFC's MUSTs case by case; these tests cover what h2spec
does not look at: our own settings, flow control on the send side, CONTINUATION and padding in
requests, the HPACK table size handshake, batching, draining, cancellation and every limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import hpack
from envoy.service.ratelimit.v3 import rls_pb2

from sidecar.h2 import H2Options
from sidecar.h2 import frames as fr
from sidecar.h2.errors import ErrorCode
from tests.h2.conftest import ThreadedServer
from tests.h2.engines import SlowEngine
from tests.h2.wire import RawClient, grpc_body, request_headers, rls_many, rls_request

Serve = Callable[..., ThreadedServer]
OK = rls_pb2.RateLimitResponse.OK


def decode(message: bytes) -> rls_pb2.RateLimitResponse:
    return rls_pb2.RateLimitResponse.FromString(message)


def test_handshake_advertises_our_limits(server: ThreadedServer) -> None:
    client = RawClient(server.port)
    frames = client.frames_until(lambda f: f.type == fr.SETTINGS and f.flags & fr.ACK)
    assert frames[0].type == fr.SETTINGS and not frames[0].flags & fr.ACK  # server preface
    assert client.server_settings[fr.MAX_CONCURRENT_STREAMS] == 256
    assert client.server_settings[fr.MAX_HEADER_LIST_SIZE] == 16384
    assert client.server_settings[fr.INITIAL_WINDOW_SIZE] == 1 << 20
    update = next(f for f in frames if f.type == fr.WINDOW_UPDATE)
    assert update.stream == 0 and int.from_bytes(update.payload, "big") == (1 << 20) - 65535


def test_unary_call_is_headers_data_trailers(server: ThreadedServer) -> None:
    client = RawClient(server.port)
    client.call(1, rls_request("test", ("client", "a")))
    response = client.response(1)
    assert [f.type for f in response.frames] == [fr.HEADERS, fr.DATA, fr.HEADERS]
    assert response.headers == {":status": "200", "content-type": "application/grpc"}
    assert response.trailers == {"grpc-status": "0"}
    reply = decode(response.message)
    assert reply.overall_code == OK
    assert reply.statuses[0].limit_remaining == 2


def test_many_calls_in_one_write_are_all_answered(server: ThreadedServer) -> None:
    client = RawClient(server.port)
    out = b""
    for sid in range(1, 400, 2):
        out += fr.headers(sid, client.encode(request_headers()), False, fr.DEFAULT_MAX_FRAME)
        out += fr.data(sid, grpc_body(rls_request("test", ("bulk", str(sid)))), True)
    client.send(out)
    for sid in range(1, 400, 2):
        assert client.response(sid).grpc_status == 0


def test_continuation_padding_and_priority_in_requests(server: ThreadedServer) -> None:
    client = RawClient(server.port)
    block = client.encode(request_headers(x_filler="f" * 3000))
    first, middle, last = block[:1000], block[1000:2000], block[2000:]
    padded = bytes((7,)) + (0).to_bytes(4, "big") + bytes((15,)) + first + b"\0" * 7
    client.send(fr.frame(fr.HEADERS, fr.PADDED | fr.PRIORITY_FLAG, 1, padded)
                + fr.frame(fr.CONTINUATION, 0, 1, middle)
                + fr.frame(fr.CONTINUATION, fr.END_HEADERS, 1, last))
    body = grpc_body(rls_request("test", ("bulk", "x")))
    client.send(fr.frame(fr.DATA, fr.PADDED, 1, bytes((3,)) + body[:4] + b"\0\0\0")
                + fr.frame(fr.DATA, fr.END_STREAM | fr.PADDED, 1, bytes((0,)) + body[4:]))
    assert client.response(1).grpc_status == 0


def test_request_trailers_end_the_request(server: ThreadedServer) -> None:
    client = RawClient(server.port)
    client.send_headers(1, request_headers())
    client.send(fr.data(1, grpc_body(rls_request("test", ("bulk", "t"))), False))
    client.send_headers(1, [("x-trailer", "1")], end_stream=True)
    assert client.response(1).grpc_status == 0


def test_send_side_flow_control_waits_for_window_updates(server: ThreadedServer) -> None:
    client = RawClient(server.port, settings={fr.INITIAL_WINDOW_SIZE: 0})
    client.call(1, rls_request("test", ("bulk", "w")))
    frames = client.frames_until(lambda f: f.stream == 1 and f.type == fr.HEADERS)
    assert client.read_frame(0.3) is None  # no DATA may be sent with a zero window
    client.send(fr.window_update(1, 3))
    data = client.frames_until(lambda f: f.type == fr.DATA)[-1]
    assert len(data.payload) == 3 and not data.flags & fr.END_STREAM
    client.send(fr.window_update(1, 1000))
    rest = client.response(1)
    assert frames[-1].headers[0] == (":status", "200")
    assert rest.trailers == {"grpc-status": "0"}
    message = data.payload + rest.data
    assert decode(message[5:]).overall_code == OK


def test_connection_window_is_shared_between_streams(server: ThreadedServer) -> None:
    client = RawClient(server.port, window=None)  # the connection window stays at 65535
    sids = range(1, 401, 2)
    out = b""
    for sid in sids:
        out += fr.headers(sid, client.encode(request_headers()), False, fr.DEFAULT_MAX_FRAME)
        out += fr.data(sid, grpc_body(rls_many(20)), True)  # ~500-byte answers, ~100 KB in all
    client.send(out)
    got, ended = 0, set()
    while (frame := client.read_frame(0.5)) is not None:
        got += len(frame.payload) if frame.type == fr.DATA else 0
        if frame.end_stream:
            ended.add(frame.stream)
    assert got == 65535 and len(ended) < len(sids)
    client.send(fr.window_update(0, 1 << 20))
    for sid in sids:
        if sid not in ended:
            assert client.response(sid).grpc_status == 0


def test_large_response_respects_max_frame_size(server: ThreadedServer) -> None:
    client = RawClient(server.port)
    client.call(1, rls_many(800))
    response = client.response(1)
    sizes = [len(f.payload) for f in response.frames if f.type == fr.DATA]
    assert len(sizes) > 1 and max(sizes) <= fr.DEFAULT_MAX_FRAME
    assert len(decode(response.message).statuses) == 800


def test_peer_header_table_size_shrink_is_signalled(server: ThreadedServer) -> None:
    client = RawClient(server.port, settings={fr.HEADER_TABLE_SIZE: 0}, header_table_size=0)
    client.call(1, rls_request("test", ("bulk", "h")))
    response = client.response(1)
    assert response.frames[0].payload[:1] == b"\x20"  # dynamic table size update to 0
    assert response.headers[":status"] == "200"
    client.call(3, rls_request("test", ("bulk", "h")))
    assert client.response(3).frames[0].payload[:1] == b"\x88"  # only once


def test_ping_is_answered(server: ThreadedServer) -> None:
    client = RawClient(server.port)
    client.send(fr.ping(b"12345678"))
    ack = client.frames_until(lambda f: f.type == fr.PING)[-1]
    assert ack.flags & fr.ACK and ack.payload == b"12345678"


def test_client_reset_cancels_the_call(serve: Serve) -> None:
    engine = SlowEngine(5.0)
    server = serve(engine)
    client = RawClient(server.port)
    client.call(1, rls_request("test", ("bulk", "r")))
    deadline = time.monotonic() + 5
    while engine.started == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    client.send(fr.rst_stream(1, ErrorCode.CANCEL))
    client.send(fr.ping(b"sync0000"))
    client.frames_until(lambda f: f.type == fr.PING)
    deadline = time.monotonic() + 5
    while engine.cancelled == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.cancelled == 1
    assert client.read_frame(0.2) is None  # nothing more is sent on the reset stream


def test_graceful_drain_finishes_in_flight_calls(serve: Serve) -> None:
    server = serve(SlowEngine(0.5))
    client = RawClient(server.port)
    client.call(1, rls_request("test", ("bulk", "d")))
    client.frames_until(lambda f: f.type == fr.SETTINGS and f.flags & fr.ACK)
    time.sleep(0.1)
    stopping = server.stop_async(5.0)
    first = client.goaway()
    assert first.last_stream == (1 << 31) - 1 and first.error_code == ErrorCode.NO_ERROR
    ping = client.frames_until(lambda f: f.type == fr.PING)[-1]
    client.send(fr.ping_ack(ping.payload))
    final = client.goaway()
    assert final.last_stream == 1 and final.error_code == ErrorCode.NO_ERROR
    client.call(3, rls_request("test", ("bulk", "late")))  # after GOAWAY: ignored
    assert client.response(1).grpc_status == 0
    assert client.wait_closed()
    stopping.result(10)


def test_drain_without_ping_ack_still_sends_the_final_goaway(serve: Serve, fast_tick: None
                                                             ) -> None:
    server = serve(options=H2Options(drain_ping_timeout=0.2))
    client = RawClient(server.port)
    client.frames_until(lambda f: f.type == fr.SETTINGS and f.flags & fr.ACK)
    stopping = server.stop_async(5.0)
    client.goaway()
    final = client.goaway()  # the PING is never acknowledged
    assert final.last_stream == 0
    assert client.wait_closed()
    stopping.result(10)


def test_stop_drops_calls_still_running_after_the_grace_period(serve: Serve) -> None:
    engine = SlowEngine(30.0)
    server = serve(engine)
    client = RawClient(server.port)
    client.call(1, rls_request("test", ("bulk", "g")))
    time.sleep(0.2)
    started = time.monotonic()
    server.stop(grace=0.3)
    assert time.monotonic() - started < 5
    assert client.wait_closed()
    assert engine.cancelled == 1


def test_streams_beyond_the_limit_are_refused(serve: Serve) -> None:
    server = serve(SlowEngine(1.0), H2Options(max_concurrent_streams=2))
    client = RawClient(server.port)
    for sid in (1, 3, 5):
        client.call(sid, rls_request("test", ("bulk", str(sid))))
    refused = client.response(5)
    assert refused.reset == ErrorCode.REFUSED_STREAM
    assert client.response(1).grpc_status == 0


def test_connections_beyond_the_limit_are_refused(serve: Serve) -> None:
    server = serve(options=H2Options(max_connections=1))
    first = RawClient(server.port)
    first.frames_until(lambda f: f.type == fr.SETTINGS and f.flags & fr.ACK)
    second = RawClient(server.port)
    goaway = second.goaway()
    assert goaway.error_code == ErrorCode.ENHANCE_YOUR_CALM
    assert second.wait_closed()
    first.call(1, rls_request("test", ("bulk", "c")))
    assert first.response(1).grpc_status == 0
    assert server.server.connections == 1


def test_idle_connections_are_closed(serve: Serve, fast_tick: None) -> None:
    server = serve(options=H2Options(idle_timeout=0.3))
    client = RawClient(server.port)
    client.call(1, rls_request("test", ("bulk", "i")))
    client.response(1)
    goaway = client.goaway(timeout=3)
    assert goaway.error_code == ErrorCode.NO_ERROR and goaway.last_stream == 1
    assert client.wait_closed()


def test_silent_connections_are_closed_after_the_handshake_timeout(serve: Serve,
                                                                  fast_tick: None) -> None:
    server = serve(options=H2Options(handshake_timeout=0.2))
    client = RawClient(server.port, handshake=False)
    assert client.wait_closed(3)


def test_slow_requests_are_reset(serve: Serve, fast_tick: None) -> None:
    server = serve(options=H2Options(request_timeout=0.2))
    client = RawClient(server.port)
    client.send_headers(1, request_headers())  # the DATA never comes
    assert client.response(1, timeout=3).reset == ErrorCode.CANCEL
    client.call(3, rls_request("test", ("bulk", "s")))
    assert client.response(3).grpc_status == 0  # the connection itself is fine


def test_unfinished_header_blocks_end_the_connection(serve: Serve, fast_tick: None) -> None:
    server = serve(options=H2Options(request_timeout=0.2))
    client = RawClient(server.port)
    client.frames_until(lambda f: f.type == fr.SETTINGS and f.flags & fr.ACK)
    client.send(fr.frame(fr.HEADERS, 0, 1, client.encode(request_headers())))
    assert client.goaway(3).error_code == ErrorCode.ENHANCE_YOUR_CALM


def test_blocked_responses_are_given_up(serve: Serve, fast_tick: None) -> None:
    server = serve(options=H2Options(write_timeout=0.2))
    client = RawClient(server.port, settings={fr.INITIAL_WINDOW_SIZE: 0})
    client.call(1, rls_request("test", ("bulk", "b")))
    assert client.response(1, timeout=3).reset == ErrorCode.CANCEL


def test_header_block_flood_is_refused(serve: Serve) -> None:
    server = serve(options=H2Options(max_header_block_size=4096))
    client = RawClient(server.port)
    client.frames_until(lambda f: f.type == fr.SETTINGS and f.flags & fr.ACK)
    client.send(fr.frame(fr.HEADERS, 0, 1, b"\x82")
                + fr.frame(fr.CONTINUATION, 0, 1, b"\x82" * 1000) * 10)
    assert client.goaway().error_code == ErrorCode.ENHANCE_YOUR_CALM


def test_oversize_header_list_is_answered_resource_exhausted(serve: Serve) -> None:
    server = serve(options=H2Options(max_header_list_size=1024))
    client = RawClient(server.port)
    client.call(1, rls_request(), x_big="b" * 2000)
    assert client.response(1).grpc_status == 8


def test_requests_too_large_for_the_buffer_limit_wait_for_credit(serve: Serve) -> None:
    # Two large requests under a 64 KiB per-connection budget: the second gets connection
    # credit only as the first is consumed, yet both complete.
    options = H2Options(max_buffered_bytes=64 * 1024, connection_window=65535,
                        stream_window=65535)
    server = serve(options=options)
    client = RawClient(server.port, settings={fr.INITIAL_WINDOW_SIZE: 1 << 20})
    body = grpc_body(rls_many(3000))
    assert len(body) > 40000
    for sid in (1, 3):
        client.send_headers(sid, request_headers())
    sent = {1: 0, 3: 0}
    while min(sent.values()) < len(body):
        for sid in (1, 3):
            chunk = body[sent[sid]:sent[sid] + 8192]
            if chunk:
                sent[sid] += len(chunk)
                client.send(fr.data(sid, chunk, sent[sid] == len(body)))
        frame = client.read_frame(0.01)
        while frame is not None:
            frame = client.read_frame(0.01)
    assert client.response(1, timeout=10).grpc_status == 0
    assert client.response(3, timeout=10).grpc_status == 0


def test_connection_holds_bounded_memory_for_a_fast_sender(server: ThreadedServer) -> None:
    client = RawClient(server.port)
    out = b""
    for sid in range(1, 2001, 2):
        out += fr.headers(sid, client.encode(request_headers()), False, fr.DEFAULT_MAX_FRAME)
        out += fr.data(sid, grpc_body(rls_request("test", ("bulk", "m"))), True)
    client.send(out)
    for sid in range(1, 2001, 2):
        client.response(sid)
    held = server.call(lambda: [c.held_bytes for c in server.server._connections])
    assert held == [0]


def test_hpack_errors_end_the_connection(server: ThreadedServer) -> None:
    client = RawClient(server.port)
    client.send(fr.frame(fr.HEADERS, fr.END_HEADERS | fr.END_STREAM, 1, b"\x80"))  # index 0
    assert client.goaway().error_code == ErrorCode.COMPRESSION_ERROR


def test_frame_larger_than_our_max_frame_size(server: ThreadedServer) -> None:
    client = RawClient(server.port)
    client.send_headers(1, request_headers())
    client.send(fr.data(1, b"x" * (fr.DEFAULT_MAX_FRAME + 1), True))
    assert client.goaway().error_code == ErrorCode.FRAME_SIZE_ERROR


def test_client_goaway_closes_once_streams_are_done(serve: Serve) -> None:
    server = serve(SlowEngine(0.3))
    client = RawClient(server.port)
    client.call(1, rls_request("test", ("bulk", "g")))
    client.send(fr.goaway(0, ErrorCode.NO_ERROR))
    assert client.response(1).grpc_status == 0
    assert client.wait_closed()


def test_decoder_dynamic_table_is_shared_across_requests(server: ThreadedServer) -> None:
    # A fresh encoder indexes the headers on the first request and sends only indices after:
    # the second block is the all-indexed fast path, and both route the same.
    client = RawClient(server.port)
    encoder = hpack.Encoder()
    for sid in (1, 3, 5):
        block = encoder.encode(request_headers(x_id="same"))
        client.send(fr.headers(sid, block, False, fr.DEFAULT_MAX_FRAME)
                    + fr.data(sid, grpc_body(rls_request("test", ("bulk", "t"))), True))
        assert client.response(sid).grpc_status == 0
    assert len(encoder.encode(request_headers(x_id="same"))) < 12
