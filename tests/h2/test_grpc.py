"""gRPC semantics of the fast transport, frame by frame: routing, status codes and messages,
deadlines, message framing, limits, non-gRPC requests, metrics and health."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from envoy.service.ratelimit.v3 import rls_pb2
from grpc_health.v1 import health_pb2

from sidecar.errors import RequestError, StorageError
from sidecar.h2 import H2Options
from sidecar.h2 import frames as fr
from sidecar.h2.errors import ErrorCode
from sidecar.h2.grpc_wire import percent_decode, percent_encode
from sidecar.observability.health import Health
from sidecar.observability.metrics import Metrics
from tests.h2.conftest import ThreadedServer, make_engine
from tests.h2.engines import FailingEngine, SlowEngine
from tests.h2.wire import (
    HEALTH_PATH,
    RawClient,
    Response,
    grpc_body,
    request_headers,
    rls_request,
)

# Also on the whole native path: the native engine answering inside Rust (conftest.py).
RUST_ENGINE = True

Serve = Callable[..., ThreadedServer]


def call(server: ThreadedServer, message: bytes, path: str = "", **extra: str) -> Response:
    client = RawClient(server.port)
    if path:
        client.call(1, message, path, **extra)
    else:
        client.call(1, message, **extra)
    return client.response(1)


def assert_trailers_only(response: Response, code: int, message: str | None = None) -> None:
    """One HEADERS frame with END_STREAM carrying the response headers and the status."""
    assert len(response.frames) == 1
    frame = response.frames[0]
    assert frame.type == fr.HEADERS and frame.flags & fr.END_STREAM
    fields = dict(frame.headers)
    assert fields[":status"] == "200" and fields["content-type"] == "application/grpc"
    assert int(fields["grpc-status"]) == code, fields
    if message is not None:
        assert percent_decode(fields["grpc-message"].encode()) == message


def test_unknown_method_is_unimplemented(server: ThreadedServer) -> None:
    response = call(server, b"", "/envoy.service.ratelimit.v3.RateLimitService/Nope")
    assert_trailers_only(response, 12,
                         "unknown method /envoy.service.ratelimit.v3.RateLimitService/Nope")


def test_empty_domain_is_invalid_argument(server: ThreadedServer) -> None:
    response = call(server, rls_request(""))
    assert_trailers_only(response, 3, "rate limit domain must not be empty")


def test_malformed_protobuf_is_invalid_argument(server: ThreadedServer) -> None:
    response = call(server, b"\x0a\xff\xff")
    assert_trailers_only(response, 3)
    assert "malformed RateLimitRequest" in response.trailers["grpc-message"]


def test_deadline_exceeded_while_the_engine_works(serve: Serve) -> None:
    engine = SlowEngine(5.0)
    server = serve(engine)
    started = time.monotonic()
    response = call(server, rls_request("test", ("bulk", "x")), grpc_timeout="200m")
    assert_trailers_only(response, 4, "deadline exceeded")
    assert 0.15 < time.monotonic() - started < 3
    deadline = time.monotonic() + 5
    while engine.cancelled == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.cancelled == 1


def test_deadline_already_past_is_not_started(serve: Serve) -> None:
    engine = SlowEngine(0.0)
    server = serve(engine)
    assert_trailers_only(call(server, rls_request(), grpc_timeout="1n"), 4)
    assert engine.started == 0


def test_deadline_of_an_unfinished_request(serve: Serve, fast_tick: None) -> None:
    server = serve()
    client = RawClient(server.port)
    client.send_headers(1, request_headers(grpc_timeout="100m"))  # no DATA ever
    response = client.response(1)
    assert response.frames[0].headers[2] == ("grpc-status", "4")
    rst = client.frames_until(lambda f: f.type == fr.RST_STREAM)[-1]
    assert rst.error_code == ErrorCode.NO_ERROR  # answered early: the rest is not needed


def test_generous_deadline_does_not_interfere(server: ThreadedServer) -> None:
    response = call(server, rls_request("test", ("bulk", "x")), grpc_timeout="10S")
    assert response.grpc_status == 0


def test_malformed_timeout_is_internal(server: ThreadedServer) -> None:
    assert_trailers_only(call(server, rls_request(), grpc_timeout="soon"), 13)


def test_compressed_flag_is_refused(server: ThreadedServer) -> None:
    client = RawClient(server.port)
    client.send_headers(1, request_headers())
    client.send(fr.data(1, grpc_body(rls_request(), flag=1), True))
    response = client.response(1)
    assert_trailers_only(response, 13)
    assert "compressed" in response.trailers["grpc-message"]


def test_unsupported_grpc_encoding_is_unimplemented(server: ThreadedServer) -> None:
    assert_trailers_only(call(server, rls_request(), grpc_encoding="gzip"), 12)


@pytest.mark.parametrize(("body", "text"), [
    (b"", "without a request message"),
    (b"\x00\x00\x00", "missing or truncated"),
    (grpc_body(b"\x0a\x01x")[:-1], "truncated"),
    (grpc_body(b"") * 2, "more than one request message"),
    (b"\x07" + grpc_body(b"")[1:], "invalid message flag"),
])
def test_bad_message_framing_is_internal(server: ThreadedServer, body: bytes, text: str
                                         ) -> None:
    client = RawClient(server.port)
    client.send_headers(1, request_headers(), end_stream=not body)
    if body:
        client.send(fr.data(1, body, True))
    response = client.response(1)
    assert_trailers_only(response, 13)
    assert text in response.trailers["grpc-message"]


def test_oversize_message_is_resource_exhausted(serve: Serve) -> None:
    server = serve(options=H2Options(max_message_size=100))
    assert_trailers_only(call(server, rls_request("test", ("bulk", "y" * 200))), 8)


def test_oversize_message_is_refused_before_it_is_all_sent(serve: Serve) -> None:
    server = serve(options=H2Options(max_message_size=1000))
    client = RawClient(server.port)
    client.send_headers(1, request_headers())
    client.send(fr.data(1, grpc_body(b"x" * 50_000)[:8000], False))  # prefix says 50000
    response = client.response(1)
    assert response.frames[0].headers[2] == ("grpc-status", "8")
    rst = client.frames_until(lambda f: f.type == fr.RST_STREAM)[-1]
    assert rst.stream == 1 and rst.error_code == ErrorCode.NO_ERROR
    client.send(fr.data(1, b"late" * 100, True))  # in flight when we reset: ignored
    client.call(3, rls_request("test", ("bulk", "after")))
    assert client.response(3).grpc_status == 0


def test_non_grpc_requests_get_http_errors(server: ThreadedServer) -> None:
    client = RawClient(server.port)
    client.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":path", "/"),
                            (":authority", "x")], end_stream=True)
    response = client.response(1)
    assert response.headers[":status"] == "405"
    assert b"POST" in response.data
    client.send_headers(3, [(":method", "HEAD"), (":scheme", "http"), (":path", "/"),
                            (":authority", "x")], end_stream=True)
    head = client.response(3)
    assert head.headers[":status"] == "405" and head.data == b""
    headers = request_headers()
    headers[4] = ("content-type", "application/json")
    client.send_headers(5, headers)
    client.send(fr.data(5, b"{}", True))
    response = client.response(5)
    assert response.headers[":status"] == "415"
    assert b"application/grpc" in response.data


def test_status_messages_are_percent_encoded(serve: Serve) -> None:
    text = "descriptors[0]: caf\u00e9 is 100% wrong\n"
    server = serve(FailingEngine(RequestError(text)))
    response = call(server, rls_request())
    raw = response.trailers["grpc-message"]
    assert raw == "descriptors[0]: caf%C3%A9 is 100%25 wrong%0A"
    assert percent_decode(raw.encode()) == text
    assert percent_encode(text) == raw.encode()


@pytest.mark.parametrize("suspend", [False, True])
@pytest.mark.parametrize(("error", "code", "message", "kind"), [
    (RequestError("descriptors[0].limit.unit: 9 is not a unit"), 3,
     "descriptors[0].limit.unit: 9 is not a unit", "service_error"),
    (StorageError("redis did not answer within 100 ms"), 14,
     "redis did not answer within 100 ms", "redis_error"),
    (RuntimeError("boom"), 13, "internal error; see the sidecar log", "internal"),
])
def test_errors_map_as_in_the_grpcio_servicer(serve: Serve, suspend: bool,
                                              error: Exception, code: int, message: str,
                                              kind: str) -> None:
    metrics = Metrics()
    server = serve(FailingEngine(error, suspend), metrics=metrics)
    assert_trailers_only(call(server, rls_request()), code, message)
    assert metrics.errors.labels(kind)._value.get() == 1
    assert metrics.requests.labels("ShouldRateLimit")._value.get() == 1


def test_no_rules_is_unavailable(serve: Serve) -> None:
    metrics = Metrics()
    server = serve(make_engine(rules=None), metrics=metrics)
    assert_trailers_only(call(server, rls_request()), 14, "no rate limit configuration loaded")
    metrics.export_sources()  # counts kept in Rust (the native path) reach the metrics
    assert metrics.errors.labels("no_config")._value.get() == 1


def test_metrics_count_calls_and_latency(serve: Serve) -> None:
    metrics = Metrics()
    server = serve(metrics=metrics)
    client = RawClient(server.port)
    for sid in (1, 3, 5):
        client.call(sid, rls_request("test", ("client", "m")))
        assert client.response(sid).grpc_status == 0
    metrics.export_sources()  # counts kept in Rust (the native path) reach the metrics
    assert metrics.requests.labels("ShouldRateLimit")._value.get() == 3
    text = metrics.exposition().decode()
    assert 'ratelimit_service_response_time_seconds_count{grpc_method="ShouldRateLimit"} 3.0' \
        in text


def health_check(server: ThreadedServer, service: str) -> Response:
    message = health_pb2.HealthCheckRequest(service=service).SerializeToString()
    return call(server, message, HEALTH_PATH)


@pytest.mark.parametrize("service", ["", "ratelimit"])
def test_health_follows_the_health_object(serve: Serve, service: str) -> None:
    health = Health()
    server = serve(health=health)
    serving = health_pb2.HealthCheckResponse.FromString(health_check(server, service).message)
    assert serving.status == health_pb2.HealthCheckResponse.SERVING
    health.set("sigterm", False)
    down = health_pb2.HealthCheckResponse.FromString(health_check(server, service).message)
    assert down.status == health_pb2.HealthCheckResponse.NOT_SERVING


def test_health_from_a_callable_and_unknown_services(serve: Serve) -> None:
    server = serve(health=lambda: False)
    reply = health_pb2.HealthCheckResponse.FromString(health_check(server, "").message)
    assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert_trailers_only(health_check(server, "other"), 5)


def test_over_limit_answer_matches_the_rules(server: ThreadedServer) -> None:
    client = RawClient(server.port)
    codes = []
    for sid in (1, 3, 5, 7):
        client.call(sid, rls_request("test", ("client", "z")))
        reply = rls_pb2.RateLimitResponse.FromString(client.response(sid).message)
        codes.append(reply.overall_code)
    ok, over = rls_pb2.RateLimitResponse.OK, rls_pb2.RateLimitResponse.OVER_LIMIT
    assert codes == [ok, ok, ok, over]
