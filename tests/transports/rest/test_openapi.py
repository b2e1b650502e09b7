"""/openapi.json, and schemathesis fuzzing the REST API of a sidecar process against it.

Every operation gets positive and negative examples (bounded: the whole module takes well
under a minute); every response must be a documented status with a body and headers that
match the document, never a 5xx.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.core.result import Ok

from sidecar.transports.rest.openapi import openapi_document
from sidecar.transports.rest.options import RestOptions
from tests.transports.rest.kit import LOOPBACK, RestSidecar, write_rules

EXAMPLES = 80


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestSidecar]:
    rules = write_rules(tmp_path_factory.mktemp("openapi") / "rules")
    process = RestSidecar(rules, env=LOOPBACK).start()
    yield process
    process.stop()


# The document the sidecar serves with default options (test_..._served checks they agree);
# loaded at import so pytest can parametrize one test per operation.
schema = schemathesis.openapi.from_dict(openapi_document(RestOptions()))


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_fuzz(case: Any, sidecar: RestSidecar) -> None:
    case.call_and_validate(base_url=sidecar.http_url)


def test_the_document_is_served_and_reflects_the_options(sidecar: RestSidecar) -> None:
    with urllib.request.urlopen(f"{sidecar.http_url}/openapi.json", timeout=5) as resp:
        served = json.load(resp)
        assert resp.headers["Content-Type"].startswith("application/json")
    assert served == openapi_document(RestOptions())
    assert served["openapi"] == "3.1.0"
    small = openapi_document(RestOptions(max_descriptors=2, max_entries=1, max_hits=7,
                                         identifier_header="X-Api-Key", namespace_header="",
                                         default_namespace="api"))
    request = small["components"]["schemas"]["CheckRequest"]["properties"]
    assert (request["descriptors"]["maxItems"], request["descriptors"]["items"]["maxItems"],
            request["hits"]["maximum"]) == (2, 1, 7)
    params = small["paths"]["/v1/forward-auth"]["get"]["parameters"]
    assert [p["name"] for p in params] == ["deny_status", "X-Api-Key"]


def test_the_document_is_valid_openapi_3_1() -> None:
    loaded = schemathesis.openapi.from_dict(openapi_document(RestOptions()))
    results = list(loaded.get_all_operations())
    assert all(isinstance(r, Ok) for r in results), results
    operations = {(r.ok().method.upper(), r.ok().path) for r in results if isinstance(r, Ok)}
    assert ("POST", "/v1/check") in operations
    assert ("GET", "/v1/forward-auth/{path}") in operations
    assert {("POST", "/v1/leases"), ("POST", "/v1/leases/{lease_id}/renew"),
            ("DELETE", "/v1/leases/{lease_id}")} <= operations
    assert len(operations) == 6 + 2 * 7


def test_no_listing_endpoints() -> None:
    paths = openapi_document(RestOptions())["paths"]
    assert sorted(paths) == ["/openapi.json", "/v1/check", "/v1/forward-auth",
                             "/v1/forward-auth/{path}", "/v1/leases", "/v1/leases/{lease_id}",
                             "/v1/leases/{lease_id}/renew", "/v1/report"]
    # a lease is reached by its id only: nothing lists the leases held
    assert list(paths["/v1/leases"]) == ["post"]
