"""The admin API's OpenAPI document, and schemathesis fuzzing a full-mode sidecar process
against it with a root key: every answer is documented and none is a 5xx."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import positive_data_acceptance

from sidecar.management.openapi import admin_openapi
from tests.management.alerts.kit import WEBHOOK_ENV
from tests.management.alerts.receiver import Receiver
from tests.management.kit import ROOT_KEY, FullSidecar, write_config

EXAMPLES = 30


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FullSidecar]:
    folder = tmp_path_factory.mktemp("admin-openapi")
    receiver = Receiver().start()
    process = FullSidecar(write_config(folder / "config"), folder / "data",
                          env=WEBHOOK_ENV).start()
    api = process.api()
    api.post("/v1/webhooks", {"url": receiver.url(), "events": ["key.created"]})
    customer = api.customer(id="acme")
    api.key(customer["id"])
    yield process
    process.stop()
    receiver.stop()


def _without_security() -> dict[str, Any]:
    """The document with the credential taken out of the contract: the fuzzer always sends a
    valid root key (test_admin.py covers 401 and 403), so a case that "drops" the
    Authorization header would still carry it."""
    document = admin_openapi()
    for item in document["paths"].values():
        for operation in item.values():
            operation.pop("security", None)
            operation["responses"].pop("401", None)
            operation["responses"].pop("403", None)
    return document


schema = schemathesis.openapi.from_dict(_without_security())


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_fuzz(case: Any, sidecar: FullSidecar) -> None:
    # Every check but "schema-valid data is accepted": JSON Schema cannot say that `plan`
    # must name a plan of the plans files, nor the rules' cross-field constraints (burst
    # only with a bucket, calendar only with day..year), which answer 400 naming the field.
    case.call_and_validate(base_url=sidecar.http_url,
                           headers={"Authorization": f"Bearer {ROOT_KEY}"},
                           excluded_checks=[positive_data_acceptance])


def test_the_document_is_served_and_valid() -> None:
    results = list(schemathesis.openapi.from_dict(admin_openapi()).get_all_operations())
    assert all(isinstance(r, Ok) for r in results), results
    operations = {(r.ok().method.upper(), r.ok().path) for r in results if isinstance(r, Ok)}
    assert ("POST", "/v1/keys/verify") in operations and len(operations) == 29
    assert ("POST", "/v1/webhooks/{id}/deliveries/{delivery_id}/retry") in operations
    assert ("POST", "/v1/billing/periods/{period}/close") in operations
    assert ("POST", "/v1/portal/sessions") in operations


def test_served_document_matches(sidecar: FullSidecar) -> None:
    url = f"{sidecar.http_url}/v1/admin/openapi.json"
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert json.load(resp) == json.loads(json.dumps(admin_openapi()))


def test_no_secret_in_any_response_schema_but_the_created_key() -> None:
    schemas = admin_openapi()["components"]["schemas"]
    # (the events' ``key`` is a Key object, which has no secret)
    holding = sorted(name for name, body in schemas.items()
                     if body.get("properties", {}).get("key", {}).get("type") == "string"
                     and name != "Verify")
    assert holding == ["KeyCreated"]
    signing = sorted(name for name, body in schemas.items()
                     if "secret" in body.get("properties", {}))
    assert signing == ["WebhookCreated"]


def test_every_event_is_documented_for_receivers() -> None:
    document = admin_openapi()
    events = document["webhooks"]
    assert sorted(events) == ["invoice.created", "key.created", "key.expiring", "key.revoked",
                              "key.rotated", "usage.threshold"]
    for name, item in events.items():
        body = item["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body["properties"]["type"] == {"const": name}
        data = body["properties"]["data"]["$ref"].rsplit("/", 1)[1]
        assert data in document["components"]["schemas"]
        assert {p["name"] for p in item["post"]["parameters"]} == {
            "webhook-id", "webhook-timestamp", "webhook-signature"}


