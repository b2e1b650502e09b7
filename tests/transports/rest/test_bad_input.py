"""Bad input: 400 naming the field, 413 past the body limit, limits from RestOptions."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sidecar.storage.memory import MemoryStore
from sidecar.transports.rest.options import RestOptions
from tests.transports.rest.kit import Rest, serve_rest, write_rules

OK = {"namespace": "api_requests", "identifier": "u"}
ENTRY = {"key": "user", "value": "u1"}


def body(**changes: Any) -> dict[str, Any]:
    out = {**OK, **changes}
    return {k: v for k, v in out.items() if v is not DROP}


DROP = object()

CASES: list[tuple[str, Any, str | None]] = [
    ("not JSON", "{", None),
    ("not UTF-8", b"\xff\xfe{", None),
    ("an array", [OK], None),
    ("a string", '"hello"', None),
    ("deeply nested", "[" * 60000, None),
    ("a huge number", '{"namespace": "a", "identifier": "u", "hits": 1' + "0" * 5000 + "}",
     None),
    ("namespace missing", body(namespace=DROP), "namespace"),
    ("namespace null", body(namespace=None), "namespace"),
    ("namespace a number", body(namespace=7), "namespace"),
    ("namespace empty", body(namespace=""), "namespace"),
    ("identifier missing", body(identifier=DROP), "identifier"),
    ("identifier a number", body(identifier=123), "identifier"),
    ("identifier empty", body(identifier=""), "identifier"),
    ("identifier a lone surrogate", '{"namespace": "a", "identifier": "\\ud800"}',
     "identifier"),
    ("identifier a list", body(identifier=["u"]), "identifier"),
    ("hits negative", body(hits=-1), "hits"),
    ("hits a string", body(hits="1"), "hits"),
    ("hits a float", body(hits=1.5), "hits"),
    ("hits a huge float", body(hits=1e300), "hits"),
    ("hits a boolean", body(hits=True), "hits"),
    ("hits null", body(hits=None), "hits"),
    ("hits over the maximum", body(hits=1_000_001), "hits"),
    ("hits NaN", '{"namespace": "a", "identifier": "u", "hits": NaN}', "hits"),
    ("identifier and descriptors", body(descriptors=[[ENTRY]]), "descriptors"),
    ("unknown field", body(hit=1), "hit"),
    ("descriptors empty", body(identifier=DROP, descriptors=[]), "descriptors"),
    ("descriptors an object", body(identifier=DROP, descriptors={"key": "a"}), "descriptors"),
    ("descriptors too many", body(identifier=DROP, descriptors=[[ENTRY]] * 21), "descriptors"),
    ("a descriptor empty", body(identifier=DROP, descriptors=[[ENTRY], []]), "descriptors[1]"),
    ("a descriptor an object", body(identifier=DROP, descriptors=[ENTRY]), "descriptors[0]"),
    ("too many entries", body(identifier=DROP, descriptors=[[ENTRY] * 11]), "descriptors[0]"),
    ("an entry a string", body(identifier=DROP, descriptors=[["user=u1"]]),
     "descriptors[0][0]"),
    ("an empty key", body(identifier=DROP, descriptors=[[ENTRY, {"key": "", "value": "v"}]]),
     "descriptors[0][1].key"),
    ("a missing value", body(identifier=DROP, descriptors=[[{"key": "k"}]]),
     "descriptors[0][0].value"),
    ("a number value", body(identifier=DROP, descriptors=[[{"key": "k", "value": 1}]]),
     "descriptors[0][0].value"),
    ("an unknown entry field",
     body(identifier=DROP, descriptors=[[{**ENTRY, "limit": 5}]]), "descriptors[0][0].limit"),
]


@pytest.fixture
async def memory_rest(tmp_path: Path) -> AsyncIterator[Rest]:
    async with serve_rest(write_rules(tmp_path / "rules"), MemoryStore()) as api:
        yield api


@pytest.mark.parametrize("path", ["/v1/check", "/v1/report"])
@pytest.mark.parametrize(("case", "payload", "field"), CASES, ids=[c[0] for c in CASES])
async def test_400_names_the_field(rest: Rest, path: str, case: str, payload: Any,
                                   field: str | None) -> None:
    reply = await rest.post(path, payload)
    assert reply.status == 400, reply.body
    assert reply.header("Content-Type") == "application/json; charset=utf-8"
    assert reply.body["field"] == field
    assert isinstance(reply.body["error"], str) and reply.body["error"]
    if field is not None:
        assert reply.body["error"].startswith(f"{field}: ")


async def test_messages_say_what_is_expected(memory_rest: Rest) -> None:
    hits = await memory_rest.check(**body(hits=-1))
    assert hits.body["error"] == "hits: -1 is out of range; expected 0 to 1000000"
    both = await memory_rest.check(**body(descriptors=[[ENTRY]]))
    assert both.body["error"] == "descriptors: send either identifier or descriptors, not both"
    unknown = await memory_rest.check(**body(hit=1))
    assert unknown.body["error"] == ("hit: unknown field; expected namespace, identifier, "
                                     "descriptors, hits")


async def test_bad_input_charges_nothing(rest: Rest) -> None:
    await rest.check(namespace="api_requests", identifier="u", hits=-1)
    await rest.check(namespace="api_requests", identifier="u", descriptors=[[ENTRY]])
    reply = await rest.check(namespace="api_requests", identifier="u", hits=0)
    assert reply.body["remaining"] == 3


@pytest.mark.parametrize("path", ["/v1/check", "/v1/report"])
async def test_413_past_the_body_limit(memory_rest: Rest, path: str) -> None:
    padded = json.dumps({**OK, "pad": "x" * 70_000})
    reply = await memory_rest.post(path, padded)
    assert (reply.status, reply.body["field"]) == (413, None)


async def test_413_for_a_chunked_body_too(memory_rest: Rest) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b" " * 1024

    async with memory_rest.session.post(memory_rest.url + "/v1/check", data=chunks()) as resp:
        assert resp.status == 413
        assert (await resp.json())["field"] is None


async def test_limits_come_from_the_options(tmp_path: Path) -> None:
    options = RestOptions(max_body_bytes=200, max_descriptors=2, max_entries=1, max_hits=10)
    async with serve_rest(write_rules(tmp_path / "rules"), MemoryStore(), options) as api:
        exactly = json.dumps(OK).ljust(200)
        assert (await api.post("/v1/check", exactly)).status == 200
        assert (await api.post("/v1/check", exactly + " ")).status == 413
        three = await api.check(namespace="shop", descriptors=[[ENTRY]] * 3)
        two_entries = await api.check(namespace="shop", descriptors=[[ENTRY, ENTRY]])
        hits = await api.check(**body(hits=11))
        ten = await api.check(**body(hits=10))
        whole = await api.post("/v1/check", '{"namespace": "a", "identifier": "u", "hits": 1e1}')
    assert (three.status, three.body["field"]) == (400, "descriptors")
    assert three.body["error"] == "descriptors: has 3 descriptors; expected 1 to 2"
    assert (two_entries.status, two_entries.body["field"]) == (400, "descriptors[0]")
    assert (hits.status, hits.body["field"]) == (400, "hits")
    assert ten.status == whole.status == 200


async def test_wrong_methods_are_405(memory_rest: Rest) -> None:
    for method, path in (("GET", "/v1/check"), ("PUT", "/v1/report"),
                         ("POST", "/openapi.json")):
        reply = await memory_rest.request(method, path)
        assert reply.status == 405, (method, path)
