"""Two instances on one database (a shared SQLite file, or PostgreSQL) deliver from one
outbox: each event is acknowledged exactly once (no instance crashed, so no duplicate), and
both take part."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from tests.management.alerts.kit import metrics, settled, subscribe, webhook_sidecar
from tests.management.alerts.receiver import Receiver
from tests.management.kit import Database

EVENTS = 16


def delivered_by(process: object) -> float:
    text = metrics(process)  # type: ignore[arg-type]
    found = re.search(r'^viva_webhook_delivery_attempts_total\{outcome="delivered"\} (\S+)$',
                      text, re.M)
    return float(found.group(1)) if found else 0.0


def test_two_instances_deliver_each_event_once(tmp_path: Path, database: Database,
                                               receiver: Receiver) -> None:
    receiver.delay = 0.4  # a slow receiver: deliveries pile up for both to claim
    env = {"VIVA_WEBHOOKS_CONCURRENCY": "2"}
    first = webhook_sidecar(tmp_path, database, **env)
    second = webhook_sidecar(tmp_path, database, **env)  # the same data dir: one SQLite file
    first.start(wait=False)
    second.start(wait=False)
    try:
        first.start_wait()
        second.start_wait()
        api = first.api()
        made = subscribe(api, receiver.url(), ["key.created"])
        customer = api.customer(plan="bigger")
        keys = [(api if i % 4 else second.api()).key(customer["id"])["id"]
                for i in range(EVENTS)]
        items = settled(api, made["id"], EVENTS, timeout=60)
        assert [d["status"] for d in items] == ["delivered"] * EVENTS
        assert all(d["attempts"] == 1 for d in items)
        events = receiver.verify_all(made["secret"])
        assert sorted(e["data"]["key"]["id"] for e in events) == sorted(keys)
        counts = Counter(r.event_id for r in receiver.snapshot())
        assert len(counts) == EVENTS and set(counts.values()) == {1}, counts
        shares = (delivered_by(first), delivered_by(second))
        assert sum(shares) == EVENTS and min(shares) > 0, shares
    finally:
        first.stop()
        second.stop()
