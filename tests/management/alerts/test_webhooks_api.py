"""The webhooks admin API over real HTTP, on SQLite and PostgreSQL: validation naming the field,
scopes, updates and deletion, a delivery retried by hand after it failed, private targets
refused when a webhook is made and when a delivery connects, and no VIVA_SECRET_KEY → 503."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.management.alerts.kit import (
    deliveries,
    metrics,
    settled,
    subscribe,
    webhook_sidecar,
)
from tests.management.alerts.receiver import Receiver
from tests.management.kit import Admin, Database
from tests.support import ROOT
from tests.support.ports import eventually


def test_webhooks_are_made_listed_changed_and_deleted(tmp_path: Path, database: Database,
                                                      receiver: Receiver) -> None:
    sidecar = webhook_sidecar(tmp_path, database).start()
    try:
        api = sidecar.api()
        for body, field in [({"url": "ftp://x.test/", "events": ["key.created"]}, "url"),
                            ({"url": receiver.url(), "events": ["key.made"]}, "events[0]"),
                            ({"url": receiver.url(), "events": []}, "events"),
                            ({"url": receiver.url()}, None),
                            ({"url": receiver.url(), "events": ["key.created"], "x": 1}, None)]:
            refused = api.post("/v1/webhooks", body)
            assert (refused.status, refused["field"]) == (400, field), (body, refused)
        first = subscribe(api, receiver.url("/a"), ["key.created", "key.created"])
        second = subscribe(api, receiver.url("/b"), ["usage.threshold"])
        assert first["events"] == ["key.created"] and first["enabled"] is True
        page = api.get("/v1/webhooks?limit=1")
        assert [w["id"] for w in page["items"]] == [first["id"]] and page["next_cursor"]
        rest = api.get(f"/v1/webhooks?limit=1&cursor={page['next_cursor']}")
        assert [w["id"] for w in rest["items"]] == [second["id"]] and not rest["next_cursor"]

        changed = api.patch(f"/v1/webhooks/{first['id']}", {
            "url": receiver.url("/c"), "events": ["key.revoked"], "description": "ops"})
        assert (changed["url"], changed["events"], changed["description"]) == (
            receiver.url("/c"), ["key.revoked"], "ops")
        assert api.patch(f"/v1/webhooks/{first['id']}", {"url": "gopher://x/"})["field"] == "url"
        assert api.patch(f"/v1/webhooks/{first['id']}", {"enabled": False})["enabled"] is False
        assert api.call("DELETE", f"/v1/webhooks/{second['id']}").status == 204
        for path in (f"/v1/webhooks/{second['id']}", f"/v1/webhooks/{second['id']}/deliveries",
                     f"/v1/webhooks/{first['id']}/deliveries/dlv_nope"):
            assert api.get(path).status == 404, path
        assert [w["id"] for w in api.get("/v1/webhooks")["items"]] == [first["id"]]
        assert api.get(f"/v1/webhooks/{first['id']}/deliveries?status=lost")["field"] == "status"

        audit = api.get(f"/v1/audit?target=webhook:{first['id']}")["items"]
        assert [e["action"] for e in audit] == ["webhook.update", "webhook.update",
                                                "webhook.create"]
        assert audit[-1]["changes"]["url_host"] == "127.0.0.1"
        assert first["secret"] not in str(api.get("/v1/audit?limit=100").body)
    finally:
        sidecar.stop()


def test_a_failed_delivery_is_retried_by_hand(tmp_path: Path, database: Database,
                                              receiver: Receiver) -> None:
    sidecar = webhook_sidecar(tmp_path, database, VIVA_WEBHOOKS_RETRY_FOR="1s").start()
    try:
        api = sidecar.api()
        made = subscribe(api, receiver.url(), ["key.created"])
        receiver.fail_next(1000, 500)
        api.key(api.customer()["id"])
        (failed,) = settled(api, made["id"], 1)
        assert failed["status"] == "failed" and failed["next_attempt_at"] is None
        assert failed["attempts"] >= 2 and failed["last_status_code"] == 500
        assert deliveries(api, made["id"], status="failed") == [failed]
        assert "viva_webhook_deliveries_failed_total 1.0" in metrics(sidecar)
        receiver.fail_next(0)
        path = f"/v1/webhooks/{made['id']}/deliveries/{failed['id']}/retry"
        retried = api.post(path)
        assert retried.status == 202 and retried["status"] == "pending"
        eventually(lambda: deliveries(api, made["id"], status="delivered"), timeout=10)
        assert len(receiver.acknowledged()) == 1
        detail = api.get(f"/v1/webhooks/{made['id']}/deliveries/{failed['id']}")
        assert detail["attempts"] == failed["attempts"] + 1
        assert detail["attempt_log"][-1]["status_code"] == 200
        assert api.post(f"/v1/webhooks/{made['id']}/deliveries/dlv_nope/retry").status == 404
    finally:
        sidecar.stop()


def test_private_targets_are_refused_unless_allowed(tmp_path: Path, database: Database,
                                                    receiver: Receiver) -> None:
    """Refused when made; and when a delivery connects (the setting turned off after the
    webhook was made stands for a name that resolves elsewhere since: DNS rebinding)."""
    allowed = webhook_sidecar(tmp_path, database).start()
    try:
        made = subscribe(allowed.api(), receiver.url(), ["key.created"])
    finally:
        allowed.stop()
    strict = webhook_sidecar(tmp_path, database, VIVA_WEBHOOKS_ALLOW_PRIVATE="false").start()
    try:
        api = strict.api()
        for url in (receiver.url(), f"http://localhost:{receiver.port}/",
                    "http://169.254.169.254/latest/meta-data/", "http://[::1]/",
                    "http://10.0.0.8/hooks"):
            refused = api.post("/v1/webhooks", {"url": url, "events": ["key.created"]})
            assert (refused.status, refused["field"]) == (400, "url"), url
            assert "VIVA_WEBHOOKS_ALLOW_PRIVATE=true" in refused["error"]
        api.key(api.customer()["id"])
        eventually(lambda: deliveries(api, made["id"])[0]["attempts"] >= 1, timeout=10)
        (delivery,) = deliveries(api, made["id"])
        assert delivery["status"] == "pending" and "loopback" in delivery["last_error"]
        assert receiver.snapshot() == []
        assert 'viva_webhook_delivery_attempts_total{outcome="refused"}' in metrics(strict)
    finally:
        strict.stop()


def test_scopes_and_a_missing_secret_key(tmp_path: Path, database: Database,
                                         receiver: Receiver) -> None:
    sidecar = webhook_sidecar(tmp_path, database, VIVA_SECRET_KEY="").start()
    try:
        api = sidecar.api()
        missing = api.post("/v1/webhooks", {"url": receiver.url(), "events": ["key.created"]})
        assert missing.status == 503 and "VIVA_SECRET_KEY" in missing["error"]
        assert api.get("/v1/webhooks")["items"] == []
        env = {**os.environ, "VIVA_DATA_DIR": str(sidecar.data_dir), **database.env}
        reader = subprocess.run(
            [sys.executable, "-m", "sidecar", "admin", "create-root-key", "--scopes",
             "webhooks:read"], capture_output=True, text=True, env=env, cwd=str(ROOT),
            timeout=60).stdout.strip()
        limited = Admin("127.0.0.1", sidecar.http_port, reader)
        eventually(lambda: limited.get("/v1/webhooks").status == 200, timeout=5)
        for method, path in [("POST", "/v1/webhooks"), ("PATCH", "/v1/webhooks/wh_x"),
                             ("DELETE", "/v1/webhooks/wh_x"),
                             ("POST", "/v1/webhooks/wh_x/deliveries/dlv_x/retry")]:
            refused = limited.call(method, path, {"url": receiver.url(), "events": []})
            assert refused.status == 403 and "webhooks:write" in refused["error"], path
        assert limited.get("/v1/keys").status == 403
        assert api.get("/v1/webhooks", key=None).status == 401
    finally:
        sidecar.stop()
