"""Admin credentials: root keys and their scopes (over real HTTP), and the CLI commands that
make root keys and migrate the database."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.management.kit import Admin, FullSidecar, write_config
from tests.support import ROOT


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sidecar", *args], capture_output=True,
                          text=True, env={**os.environ, **env}, cwd=str(ROOT), timeout=60)


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[FullSidecar]:
    process = FullSidecar(write_config(tmp_path / "config"), tmp_path / "data").start()
    yield process
    process.stop()


def test_db_upgrade_then_a_root_key_printed_once(tmp_path: Path) -> None:
    env = {"VIVA_DATA_DIR": str(tmp_path / "data")}
    upgraded = cli("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "at revision 0004_namespaces" in upgraded.stdout
    made = cli("admin", "create-root-key", "--scopes", "keys:read,keys:verify", env=env)
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("vroot_") and len(secret) == 34
    assert "keys:read, keys:verify" in made.stderr and "only time" in made.stderr
    assert secret.encode() not in (tmp_path / "data" / "viva.db").read_bytes()
    bad = cli("admin", "create-root-key", "--scopes", "keys:read,everything", env=env)
    assert bad.returncode == 2 and "everything" in bad.stderr and "customers:read" in bad.stderr


def test_no_admin_call_reads_or_changes_data_without_its_scope(sidecar: FullSidecar) -> None:
    env = {"VIVA_DATA_DIR": str(sidecar.data_dir)}
    reader = cli("admin", "create-root-key", "--scopes", "keys:read", env=env).stdout.strip()
    api = sidecar.api()
    customer = api.customer()
    key = api.key(customer["id"])
    limited = Admin("127.0.0.1", sidecar.http_port, reader)
    # the new root key reaches the running sidecar through the change log
    from tests.support.ports import eventually

    eventually(lambda: limited.get(f"/v1/keys/{key['id']}").status == 200, timeout=5)
    calls = [("GET", "/v1/customers", None), ("GET", f"/v1/customers/{customer['id']}", None),
             ("POST", "/v1/customers", {"name": "x", "plan": "basic"}),
             ("PATCH", f"/v1/customers/{customer['id']}", {"name": "y"}),
             ("DELETE", f"/v1/customers/{customer['id']}", None),
             ("POST", "/v1/keys", {"customer_id": customer["id"]}),
             ("PATCH", f"/v1/keys/{key['id']}", {"enabled": False}),
             ("POST", f"/v1/keys/{key['id']}/rotate", {}),
             ("POST", f"/v1/keys/{key['id']}/revoke", None),
             ("POST", "/v1/keys/verify", {"key": key["key"]}),
             ("GET", "/v1/audit", None)]
    for method, path, body in calls:
        missing = api.call(method, path, body, key=None)
        assert missing.status == 401, (method, path)
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert api.call(method, path, body, key="vroot_" + "1" * 28).status == 401
        refused = limited.call(method, path, body)
        assert (refused.status, refused.body["field"]) == (403, None), (method, path)
        assert "scope" in refused.body["error"]
    assert limited.get("/v1/keys").status == 200
    assert api.get(f"/v1/customers/{customer['id']}")["name"] == "Acme"  # nothing changed
    assert api.code(key["key"]) == "VALID"


def test_bad_requests_name_the_field_and_never_echo_a_key(sidecar: FullSidecar) -> None:
    api = sidecar.api()
    customer = api.customer()
    secret = api.key(customer["id"])["key"]
    cases = [
        ("/v1/keys/verify", {"key": secret, "cost": -1}, "cost"),
        ("/v1/keys/verify", {"key": secret, "limits": ["nope"]}, "limits[0]"),
        ("/v1/keys/verify", {"key": secret, "colour": 1}, None),
        ("/v1/keys", {"customer_id": customer["id"], "expires_at": "tomorrow"}, "expires_at"),
        ("/v1/keys", {"customer_id": "nobody"}, "customer_id"),
        ("/v1/customers", {"name": "", "plan": "basic"}, "name"),
        ("/v1/customers", {"name": "A", "plan": "basic", "limits": [
            {"name": "q", "unit": "minute", "requests_per_unit": 1, "calendar": True}]},
         "limits[0].calendar"),
    ]
    for path, body, field in cases:
        reply = api.post(path, body)
        assert reply.status in (400, 404), (path, body, reply)
        assert reply.body["field"] == field, (path, body, reply)
        assert secret not in str(reply.body)
    assert api.post("/v1/keys/verify", b"{not json").status == 400
    assert api.post("/v1/keys/verify", b'{"key": "a\\u0000"}').status == 400
    huge = api.post("/v1/customers", {"name": "A", "plan": "basic", "meta": {"x": "y" * 70_000}})
    assert huge.status == 413
    assert secret not in sidecar.log()


def test_plans_reload_in_a_running_sidecar_and_a_bad_version_is_shown_not_applied(
        tmp_path: Path) -> None:
    from tests.management.kit import PLANS
    from tests.support.ports import eventually

    config = write_config(tmp_path / "config")
    process = FullSidecar(config, tmp_path / "data",
                          env={"VIVA_RELOAD_POLL_INTERVAL": "200ms"}).start()
    try:
        api = process.api()
        key = api.key(api.customer()["id"])["key"]
        plans = api.get("/v1/plans")
        assert [p["id"] for p in plans["items"]] == ["basic", "bigger"]
        assert plans["items"][0]["limits"][0] == {
            "name": "per_minute", "unit": "hour", "requests_per_unit": 3,
            "algorithm": "fixed_window", "window_seconds": 3600, "burst": 0, "calendar": False}
        assert plans["last_reload_error"] is None
        (config / "plans.yaml").write_text(PLANS.replace("unit: hour", "unit: fortnight", 1))
        shown = eventually(lambda: api.get("/v1/plans")["last_reload_error"], timeout=10)
        assert "plans.yaml:8: plans.basic.limits[0].unit" in shown and "fortnight" in shown
        assert api.verify(key)["limits"][0]["limit"] == 3  # the good plans still apply
        (config / "plans.yaml").write_text(PLANS.replace("requests_per_unit: 3",
                                                         "requests_per_unit: 7"))
        eventually(lambda: api.verify(key)["limits"][0]["limit"] == 7, timeout=10)
        assert api.get("/v1/plans")["last_reload_error"] is None
        assert 'viva_plans_loads_total{result="error"} 1.0' in api.get("/metrics").body.decode()
    finally:
        process.stop()


def test_validate_checks_the_plans_beside_the_rules(tmp_path: Path) -> None:
    from tests.management.kit import PLANS

    config = write_config(tmp_path / "config")
    ok = cli("validate", str(config), env={})
    assert ok.returncode == 0 and "plans: OK" in ok.stdout, ok.stdout + ok.stderr
    (config / "plans.yaml").write_text(PLANS.replace("max_keys: 3", "max_keys: lots"))
    bad = cli("validate", str(config), env={})
    assert bad.returncode == 1
    assert ("plans.yaml:5: plans.basic.max_keys: 'lots' is not a number of keys; expected a "
            "whole number from 1 to 1000000") in bad.stderr


def test_failed_verifications_are_budgeted_per_root_key_and_client(tmp_path: Path) -> None:
    sidecar = FullSidecar(write_config(tmp_path / "config"), tmp_path / "data",
                          env={"VIVA_VERIFY_FAILURES_PER_MINUTE": "3"}).start()
    try:
        env = {"VIVA_DATA_DIR": str(sidecar.data_dir)}
        other_root = cli("admin", "create-root-key", "--scopes", "keys:verify",
                         env=env).stdout.strip()
        api = sidecar.api()
        valid = api.key(api.customer()["id"])["key"]
        other = Admin("127.0.0.1", sidecar.http_port, other_root)
        from sidecar.management.keys import new_key
        from tests.support.ports import eventually

        eventually(lambda: other.post("/v1/keys/verify", {"key": valid}).status == 200,
                   timeout=5)
        ghost = new_key().secret
        guesser = {"client_address": "203.0.113.9"}
        assert [api.code(ghost, **guesser) for _ in range(4)] == ["NOT_FOUND"] * 3 + [
            "RATE_LIMITED"]
        throttled = api.verify(ghost, **guesser)
        assert throttled["code"] == "RATE_LIMITED"
        assert throttled.headers["ratelimit-policy"] == "\"client\";q=3;w=60"
        # the same backend's other clients, the backend itself and another backend: untouched
        assert api.code(ghost, client_address="198.51.100.1") == "NOT_FOUND"
        assert api.code(ghost) == "NOT_FOUND"
        assert other.code(ghost, **guesser) == "NOT_FOUND"
        assert api.code(valid, **guesser) == "VALID"  # a key known valid still verifies
        # without client_address, a root key's failures share one budget
        assert [other.code(ghost) for _ in range(4)] == ["NOT_FOUND"] * 3 + ["RATE_LIMITED"]
        assert api.code(ghost) == "NOT_FOUND"
        bad = api.post("/v1/keys/verify", {"key": ghost, "client_address": "a b"})
        assert bad.status == 400 and bad["field"] == "client_address", bad
    finally:
        sidecar.stop()
