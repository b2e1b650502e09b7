"""The whole key lifecycle over real HTTP, against a full-mode sidecar process on SQLite and
on a real PostgreSQL: customer → key → VALID → RATE_LIMITED → QUOTA_EXCEEDED → plan change →
rotate with grace (old works, then EXPIRED) → revoke (REVOKED) → expiry; then the plaintext
keys are looked for in the database, the log and /metrics, and found nowhere."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.management.kit import Database, FullSidecar, write_config
from tests.support.ports import eventually


@pytest.fixture
def sidecar(database: Database, tmp_path: Path) -> Iterator[FullSidecar]:
    process = FullSidecar(write_config(tmp_path / "config"), tmp_path / "data",
                          env=database.env).start()
    yield process
    process.stop()


def in_seconds(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def test_the_whole_lifecycle(sidecar: FullSidecar, database: Database) -> None:
    api = sidecar.api()
    assert api.post("/v1/customers", {"name": "X", "plan": "gold"}).body["field"] == "plan"
    customer = api.customer(email="ops@acme.test", meta={"crm": "42"})
    made = api.key(customer["id"], name="backend")
    key = made["key"]
    assert key.startswith("viva_") and made["start"] == key[:9] and made["plan"] == "basic"
    shown = api.get(f"/v1/keys/{made['id']}")
    assert shown.status == 200 and "key" not in shown.body and key not in str(shown.body)

    # VALID, with the plan's limits and the IETF headers /v1/check sends
    first = api.verify(key, features=["reports"])
    assert (first["valid"], first["code"], first["customer_id"], first["plan"]) == (
        True, "VALID", customer["id"], "basic")
    assert [(x["name"], x["limit"], x["remaining"]) for x in first["limits"]] == [
        ("per_minute", 3, 2), ("monthly", 5, 4)]
    assert first.headers["ratelimit-policy"] == '"per_minute";q=3;w=3600, "monthly";q=5;w=2592000'
    assert first.headers["ratelimit"].startswith('"per_minute";r=2;t=')

    # a required feature the plan lacks: FORBIDDEN, nothing charged
    assert api.code(key, features=["exports"]) == "FORBIDDEN"
    assert [api.code(key) for _ in range(3)] == ["VALID", "VALID", "RATE_LIMITED"]
    limited = api.verify(key)
    assert limited["limits"][0]["exceeded"] and 1 <= int(limited.headers["retry-after"]) <= 3600

    # the key's own override lifts the rate limit; the monthly quota then runs out
    lifted = api.patch(f"/v1/keys/{made['id']}", {"limits": [
        {"name": "per_minute", "unit": "hour", "requests_per_unit": 50}]})
    assert lifted.status == 200 and lifted["limits"][0]["requests_per_unit"] == 50
    assert [api.code(key) for _ in range(3)] == ["VALID", "VALID", "QUOTA_EXCEEDED"]

    # a plan change applies to the customer's keys at once
    moved = api.patch(f"/v1/customers/{customer['id']}", {"plan": "bigger"})
    assert moved.status == 200 and moved["plan"] == "bigger"
    after = api.verify(key, features=["exports"])
    assert (after["code"], after["plan"], [x["name"] for x in after["limits"]]) == (
        "VALID", "bigger", ["per_minute"])

    # rotation with grace: both work, then the old one answers EXPIRED
    rotated = api.post(f"/v1/keys/{made['id']}/rotate", {"grace_seconds": 4})
    assert rotated.status == 201 and rotated["key"] != key
    new_key = rotated["key"]
    assert (api.code(key), api.code(new_key)) == ("VALID", "VALID")
    eventually(lambda: api.code(key) == "EXPIRED", timeout=20, interval=0.25)
    assert api.code(new_key) == "VALID"

    # revocation
    revoked = api.post(f"/v1/keys/{rotated['id']}/revoke")
    assert revoked.status == 200 and revoked["revoked_at"]
    assert api.code(new_key) == "REVOKED"

    # expiry
    short = api.key(customer["id"], expires_at=in_seconds(3))
    assert api.code(short["key"]) == "VALID"
    eventually(lambda: api.code(short["key"]) == "EXPIRED", timeout=20, interval=0.25)

    # disabled, malformed, deleted customer
    other = api.key(customer["id"])
    api.patch(f"/v1/keys/{other['id']}", {"enabled": False})
    assert api.code(other["key"]) == "DISABLED"
    api.patch(f"/v1/keys/{other['id']}", {"enabled": True})
    assert api.code(other["key"]) == "VALID"
    assert api.code(other["key"][:-1] + ("x" if other["key"][-1] != "x" else "y")) == (
        "NOT_FOUND")
    assert api.call("DELETE", f"/v1/customers/{customer['id']}").status == 204
    assert api.code(other["key"]) == "REVOKED"
    assert api.get(f"/v1/customers/{customer['id']}").status == 404

    # every mutation is audited, without secrets
    audit = api.get(f"/v1/audit?target=key:{made['id']}")
    assert [e["action"] for e in audit["items"]] == ["key.rotate", "key.update", "key.create"]
    assert audit["items"][-1]["actor"].startswith("root_")

    _secrets_are_nowhere(sidecar, database, [key, new_key, short["key"], other["key"]])


def _secrets_are_nowhere(sidecar: FullSidecar, database: Database, keys: list[str]) -> None:
    with urllib.request.urlopen(f"{sidecar.http_url}/metrics", timeout=5) as resp:
        metrics = resp.read()
    assert b'viva_key_verifications_total{code="QUOTA_EXCEEDED",transport="rest"}' in metrics
    stored = database.dump()
    assert b"api_keys" in stored or len(stored) > 10_000  # the dump is not empty
    log = sidecar.log().encode()
    for key in keys:
        secret = key.encode()
        assert secret not in stored, "a plaintext key is in the database"
        assert secret not in log, "a plaintext key is in the log"
        assert secret not in metrics, "a plaintext key is in /metrics"
        assert key[5:].encode() not in stored  # nor its random part alone


def test_pagination_walks_every_customer_once(sidecar: FullSidecar) -> None:
    api = sidecar.api()
    made = {api.customer(id=f"c{i}")["id"] for i in range(5)}
    seen: list[str] = []
    cursor = ""
    for _ in range(5):
        page = api.get(f"/v1/customers?limit=2{'&cursor=' + cursor if cursor else ''}")
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(made) and len(seen) == 5
    first = api.key("c0")
    api.key("c1")
    listed = api.get("/v1/keys?customer_id=c0")
    assert [k["id"] for k in listed["items"]] == [first["id"]]
    assert api.get("/v1/customers?limit=0").body["field"] == "limit"


def test_max_keys_and_duplicate_ids_leave_the_database_as_it_was(sidecar: FullSidecar) -> None:
    api = sidecar.api()
    api.customer(id="acme")
    before = len(api.get("/v1/audit?limit=100")["items"])
    again = api.post("/v1/customers", {"id": "acme", "name": "Other", "plan": "basic"})
    assert (again.status, again["field"]) == (409, "id")
    assert api.get("/v1/customers/acme")["name"] == "Acme"
    for _ in range(3):
        api.key("acme")
    full = api.post("/v1/keys", {"customer_id": "acme"})
    assert (full.status, full["field"]) == (409, "customer_id")
    assert len(api.get("/v1/keys?customer_id=acme")["items"]) == 3
    assert len(api.get("/v1/audit?limit=100")["items"]) == before + 3  # the 3 keys only
    bad = api.patch("/v1/customers/acme", {"plan": "basic", "limits": [
        {"name": "x", "unit": "fortnight", "requests_per_unit": 1}]})
    assert (bad.status, bad["field"]) == (400, "limits[0].unit")
    assert api.get("/v1/customers/acme")["limits"] is None
