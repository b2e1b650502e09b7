"""The fast path's answer building (native/src/http1) against the general path's code, on
decisions no rule file would easily produce: any codes, limits (names with quotes, backslashes,
non-ASCII; unnamed ones, whose policy is the descriptor's keys), remaining counts, resets in
seconds or milliseconds, clocks with fractions, every header family. Both answers are framed
by the same parser, so what is compared is the status, the fields and the body."""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from typing import Any

import msgspec
import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.errors import NoRulesError, StorageError
from sidecar.limiter.engine import Engine
from sidecar.model import Code, Decision, DescriptorStatus, RateLimit, Unit
from sidecar.observability.metrics import Metrics
from sidecar.service import RateLimitService
from sidecar.storage.memory import MemoryStore
from sidecar.transports.http import json_failure
from sidecar.transports.reply import JSON, json_reply
from sidecar.transports.rest.answers import make_answer, rate_limit_headers
from sidecar.transports.rest.fast import statuses
from sidecar.transports.rest.handlers import rest_failure
from sidecar.transports.rls_proto import ResponseBuilder
from tests.support.paths import native_module

native = native_module()
pytestmark = pytest.mark.skipif(native is None, reason="the native extension is not built")
_DATE = re.compile(rb"\r\nDate: [^\r]*\r\n")
FAMILIES = ("ietf", "x", "retry-after")


def config(families: tuple[str, ...] = FAMILIES) -> Any:
    assert native is not None
    return native.Http1Config(
        full=False, max_body_bytes=1 << 20, json_max_body_bytes=1 << 20, max_descriptors=50,
        max_entries=10, max_hits=10**6, identifier_header="X-Forwarded-For", xff_index=1,
        namespace_header="X-RateLimit-Namespace", default_namespace="", hash_identifier=False,
        deny_status=429, headers=list(families), server="S",
        reasons=[(int(s), s.phrase) for s in HTTPStatus])


def one_call(cfg: Any, data: bytes) -> Any:
    assert native is not None
    ready, items, handoff, _, _ = native.Http1Connection(cfg).feed(data)
    assert not ready and handoff is None
    assert len(items) == 1 and isinstance(items[0], native.Http1Call)
    return items[0]


def post(path: str, body: Any, fields: str = "") -> bytes:
    data = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: s\r\n{fields}Content-Length: {len(data)}\r\n\r\n"
            .encode() + data)


def undated(raw: bytes) -> bytes:
    return _DATE.sub(b"\r\n", raw)


text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12)
limits = st.builds(
    RateLimit, requests_per_unit=st.integers(0, 2**32 - 1),
    unit=st.sampled_from([u for u in Unit if u != Unit.UNKNOWN]),
    name=st.one_of(st.just(""), text, st.sampled_from(['a"b', "a\\b", "x.y", "per_user"])),
    window_ms=st.one_of(st.just(0), st.integers(1, 10**9)))
descriptor_statuses = st.builds(
    DescriptorStatus, code=st.sampled_from([Code.OK, Code.OVER_LIMIT]),
    limit=st.one_of(st.none(), limits), remaining=st.integers(0, 2**32 - 1),
    reset_seconds=st.integers(0, 10**7), reset_ms=st.one_of(st.none(), st.integers(0, 10**10)))
entries = st.lists(st.tuples(st.sampled_from(["user", "route", "k\u00e9y", 'q"k']), text),
                   min_size=1, max_size=3)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(descriptor_statuses, entries), min_size=1, max_size=5),
       st.sampled_from([Code.OK, Code.OVER_LIMIT]),
       st.floats(0, 4e9, allow_nan=False), st.booleans(),
       st.sets(st.sampled_from(FAMILIES)))
def test_rest_answers_as_answers_py(items: list[tuple[DescriptorStatus, list[tuple[str, str]]]],
                                    overall: Code, now: float, itemized: bool,
                                    families: set[str]) -> None:
    cfg = config(tuple(sorted(families)))
    descriptors = [tuple(e) for _, e in items]
    decision = Decision(overall, [s for s, _ in items])
    body = ({"namespace": "n", "descriptors": [[{"key": k, "value": v} for k, v in d]
                                               for d in descriptors]} if itemized
            else {"namespace": "n", "identifier": descriptors[0][0][1]})
    if not itemized:
        descriptors = [(("identifier", descriptors[0][0][1]),)]
        decision = Decision(overall, decision.statuses[:1])
    call = one_call(cfg, post("/v1/check", body))
    answer = make_answer(decision, descriptors, now)
    expected = json_reply(msgspec.to_builtins(answer.body(itemized)), 200,
                          rate_limit_headers(answer, frozenset(families)))
    got = call.answer(int(overall), statuses(decision), [], now)
    assert undated(got) == undated(call.frame(expected.status, expected.headers, expected.body))


@settings(max_examples=100, deadline=None)
@given(descriptor_statuses, st.sampled_from([Code.OK, Code.OVER_LIMIT]),
       st.floats(0, 4e9, allow_nan=False), st.sampled_from([403, 429]))
def test_forward_auth_answers_as_handlers_py(status: DescriptorStatus, overall: Code,
                                             now: float, deny: int) -> None:
    cfg = config()
    fields = "X-Forwarded-For: 10.0.0.1\r\nX-RateLimit-Namespace: n\r\n"
    head = f"GET /v1/forward-auth?deny_status={deny} HTTP/1.1\r\nHost: s\r\n{fields}\r\n"
    call = one_call(cfg, head.encode())
    decision = Decision(overall, [status])
    answer = make_answer(decision, [(("identifier", "10.0.0.1"),)], now)
    expected = json_reply(msgspec.to_builtins(answer.overall.body()),
                          200 if answer.overall.allowed else deny,
                          rate_limit_headers(answer, frozenset(FAMILIES)))
    got = call.answer(int(overall), statuses(decision), [], now)
    assert undated(got) == undated(call.frame(expected.status, expected.headers, expected.body))


@settings(max_examples=200, deadline=None)
@given(st.lists(descriptor_statuses, max_size=4), st.sampled_from(list(Code)),
       st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=3))
def test_json_answers_as_message_to_json(items: list[DescriptorStatus], overall: Code,
                                         headers: list[tuple[str, str]]) -> None:
    cfg = config()
    call = one_call(cfg, post("/json", {"domain": "d"}))
    decision = Decision(overall, items, headers)
    text_ = json_format.MessageToJson(ResponseBuilder().build(decision), indent=None)
    status = 429 if overall == Code.OVER_LIMIT else 200
    got = call.answer(int(overall), statuses(decision), headers, 0.0)
    assert undated(got) == undated(call.frame(status, [("Content-Type", JSON)], text_.encode()))


@pytest.mark.parametrize("error", [StorageError("redis down: Error 111"), NoRulesError()])
def test_failures_as_the_general_path_words_them(error: Exception) -> None:
    """Call.failure (the native engine's errors, later) against service.py's table."""
    cfg = config()
    service_error = RateLimitService(Engine(MemoryStore()), Metrics()).failed(error)
    status, message = service_error.failure.http_status, service_error.failure.message
    for path, reply in (("/v1/check", rest_failure(service_error)),
                        ("/json", json_failure(service_error))):
        body = {"namespace": "n", "identifier": "i"} if path != "/json" else {"domain": "d"}
        call = one_call(cfg, post(path, body))
        assert undated(call.failure(status, message)) == undated(
            call.frame(reply.status, reply.headers, reply.body))

