"""Alerts end to end, over a full-mode sidecar process on SQLite and on PostgreSQL: real key
verifications take a customer to its plan's thresholds and the receiver gets usage.threshold
once per threshold; a key about to expire gets one key.expiring."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.management.alerts.kit import subscribe, webhook_sidecar
from tests.management.alerts.receiver import Receiver
from tests.management.kit import PLANS, Database
from tests.support.ports import eventually

MONTHLY = "      - {name: monthly, unit: month, requests_per_unit: 5, calendar: true}\n"
ALERT_PLANS = PLANS.replace(MONTHLY, MONTHLY + "    alerts: {thresholds: [0.6, 1.0], "
                            "limits: [monthly]}\n")
ROOMY = [{"name": "per_minute", "unit": "hour", "requests_per_unit": 100}]


def test_thresholds_and_expiring_keys_become_webhooks(tmp_path: Path, database: Database,
                                                     receiver: Receiver) -> None:
    assert "alerts:" in ALERT_PLANS
    sidecar = webhook_sidecar(tmp_path, database, plans=ALERT_PLANS).start()
    try:
        api = sidecar.api()
        made = subscribe(api, receiver.url(), ["usage.threshold", "key.expiring"])
        customer = api.customer(limits=ROOMY)
        key = api.key(customer["id"])["key"]
        assert [api.code(key) for _ in range(3)] == ["VALID"] * 3
        eventually(lambda: receiver.acknowledged("usage.threshold"), timeout=10)
        assert [api.code(key) for _ in range(3)] == ["VALID", "VALID", "QUOTA_EXCEEDED"]
        eventually(lambda: len(receiver.acknowledged("usage.threshold")) == 2, timeout=10)

        expires = datetime.now(UTC) + timedelta(hours=1)
        expiring = api.key(customer["id"], expires_at=expires.isoformat())
        eventually(lambda: receiver.acknowledged("key.expiring"), timeout=10)
        assert api.code(key) == "QUOTA_EXCEEDED"
        time.sleep(1.5)  # several more rounds: nothing is raised twice
        events = receiver.verify_all(made["secret"])
        thresholds = [e["data"] for e in events if e["type"] == "usage.threshold"]
        assert [(t["limit"], t["threshold"], t["used"], t["allowed"]) for t in thresholds] == [
            ("monthly", 0.6, 3, 5), ("monthly", 1.0, 5, 5)]
        assert all(t["customer_id"] == customer["id"] for t in thresholds)
        (notice,) = [e["data"] for e in events if e["type"] == "key.expiring"]
        assert notice["key"]["id"] == expiring["id"] and notice["notice_days"] == 7
        assert len(events) == 3
    finally:
        sidecar.stop()
