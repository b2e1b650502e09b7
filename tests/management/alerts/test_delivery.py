"""Webhooks end to end, against full-mode sidecar processes on SQLite and on a real
PostgreSQL, delivering to a real HTTP receiver on loopback that checks every signature with
its own implementation of Standard Webhooks: key events arrive signed, a receiver failing
three times gets the event acknowledged once, a restart between a change and its delivery
still delivers, and the signing secret is nowhere but in the create answer."""

from __future__ import annotations

import base64
import signal
import time
from pathlib import Path

from tests.management.alerts.kit import (
    deliveries,
    metrics,
    settled,
    subscribe,
    webhook_sidecar,
)
from tests.management.alerts.receiver import Receiver
from tests.management.kit import Database
from tests.support.ports import eventually


def test_key_events_arrive_signed_and_the_secret_is_shown_once(
        tmp_path: Path, database: Database, receiver: Receiver) -> None:
    sidecar = webhook_sidecar(tmp_path, database).start()
    try:
        api = sidecar.api()
        made = subscribe(api, receiver.url())
        secret = made["secret"]
        assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
        shown = api.get(f"/v1/webhooks/{made['id']}")
        assert shown.status == 200 and secret not in str(shown.body)
        assert shown["events"] == ["key.created", "key.rotated", "key.revoked", "key.expiring"]

        customer = api.customer()
        key = api.key(customer["id"])
        rotated = api.post(f"/v1/keys/{key['id']}/rotate", {"grace_seconds": 600}).body
        assert api.post(f"/v1/keys/{rotated['id']}/revoke").status == 200
        assert api.call("DELETE", f"/v1/customers/{customer['id']}").status == 204

        items = settled(api, made["id"], 4)
        assert [d["status"] for d in items] == ["delivered"] * 4
        events = {e["type"] + ":" + e["data"].get("reason", ""): e
                  for e in receiver.verify_all(secret)}
        assert sorted(events) == ["key.created:", "key.revoked:customer_deleted",
                                  "key.revoked:revoked", "key.rotated:"]
        assert events["key.created:"]["data"]["key"]["id"] == key["id"]
        assert (events["key.rotated:"]["data"]["new_key"]["id"],
                events["key.rotated:"]["data"]["grace_seconds"]) == (rotated["id"], 600)
        assert events["key.revoked:revoked"]["data"]["key"]["revoked_at"]
        assert events["key.revoked:customer_deleted"]["data"]["key"]["id"] == key["id"]
        ids = [r.event_id for r in receiver.snapshot()]
        assert len(ids) == len(set(ids)) == 4 and {d["event_id"] for d in items} == set(ids)
        for r in receiver.snapshot():
            assert key["key"] not in r.body.decode() and rotated["key"] not in r.body.decode()

        detail = api.get(f"/v1/webhooks/{made['id']}/deliveries/{items[0]['id']}")
        assert detail["payload"]["type"] == items[0]["event_type"]
        assert [a["status_code"] for a in detail["attempt_log"]] == [200]
        exposed = metrics(sidecar)
        assert 'viva_webhook_delivery_attempts_total{outcome="delivered"} 4.0' in exposed
        assert 'viva_webhook_events_total{type="key.revoked"} 2.0' in exposed
    finally:
        sidecar.stop()
    stored, log = database.dump(), sidecar.log()
    for text in (secret, secret[6:], base64.b64decode(secret[6:]).hex()):
        assert text.encode() not in stored, "the signing secret is in the database"
        assert text not in log and text not in exposed, "the signing secret leaked"
    assert base64.b64decode(secret[6:]) not in stored


def test_a_receiver_failing_three_times_gets_the_event_once(
        tmp_path: Path, database: Database, receiver: Receiver) -> None:
    sidecar = webhook_sidecar(tmp_path, database).start()
    try:
        api = sidecar.api()
        made = subscribe(api, receiver.url(), ["key.created"])
        receiver.fail_next(3, 503)
        api.key(api.customer()["id"])
        (delivery,) = settled(api, made["id"], 1)
        time.sleep(1.5)  # past any further retry: none comes
        received = receiver.snapshot()
        assert [r.answered for r in received] == [503, 503, 503, 200]
        assert len({r.event_id for r in received}) == 1 == len(receiver.acknowledged())
        receiver.verify_all(made["secret"])  # every attempt signed, each with its timestamp
        detail = api.get(f"/v1/webhooks/{made['id']}/deliveries/{delivery['id']}").body
        assert (detail["status"], detail["attempts"], detail["last_status_code"]) == (
            "delivered", 4, 200)
        assert [a["status_code"] for a in detail["attempt_log"]] == [503, 503, 503, 200]
        assert "HTTP 503" in detail["attempt_log"][0]["error"]
        assert all(a["duration_ms"] >= 0 for a in detail["attempt_log"])
    finally:
        sidecar.stop()


def test_a_restart_between_the_change_and_its_delivery_still_delivers(
        tmp_path: Path, database: Database) -> None:
    receiver = Receiver()  # not listening yet: nothing can be delivered before the crash
    first = webhook_sidecar(tmp_path, database).start()
    api = first.api()
    made = subscribe(api, receiver.url(), ["key.created"])
    key = api.key(api.customer()["id"])  # committed, with its event, when this answers
    first.kill()
    receiver.start()
    second = webhook_sidecar(tmp_path, database).start()
    try:
        # A lease the killed instance held runs out after VIVA_WEBHOOKS_TIMEOUT + 10 s.
        (delivery,) = eventually(lambda: deliveries(second.api(), made["id"],
                                                    status="delivered"), timeout=40, interval=0.2)
        (event,) = receiver.verify_all(made["secret"])
        assert (event["type"], event["data"]["key"]["id"]) == ("key.created", key["id"])
        assert delivery["event_id"] == receiver.acknowledged()[0].event_id
    finally:
        second.stop()
        receiver.stop()


def test_sigterm_hands_back_a_delivery_under_way(tmp_path: Path, database: Database) -> None:
    """A clean stop while an attempt waits on a slow receiver: the process exits within its
    grace, and the next instance sends the delivery at once, not after the lease (30 s)."""
    receiver = Receiver().start()
    receiver.delay = 4.0
    env = {"VIVA_WEBHOOKS_TIMEOUT": "20s", "VIVA_SHUTDOWN_GRACE": "1s"}
    first = webhook_sidecar(tmp_path, database, **env).start()
    try:
        api = first.api()
        made = subscribe(api, receiver.url(), ["key.created"])
        api.key(api.customer()["id"])
        eventually(receiver.snapshot, timeout=10)  # the attempt is under way
        assert first.proc is not None
        first.proc.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        assert first.proc.wait(15) == 0
        assert time.monotonic() - stopped < 8
        first.proc = None
        receiver.delay = 0.0
        second = webhook_sidecar(tmp_path, database, **env).start()
        started = time.monotonic()
        try:
            eventually(lambda: deliveries(second.api(), made["id"], status="delivered"),
                       timeout=15, interval=0.1)
            assert time.monotonic() - started < 15  # well under the 30 s lease
            receiver.verify_all(made["secret"])
        finally:
            second.stop()
    finally:
        first.stop()
        receiver.stop()

