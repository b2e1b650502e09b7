"""Full-mode sidecar processes with webhooks on, retrying fast, and what the tests ask of them."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

from tests.management.kit import Admin, Database, FullSidecar, write_config
from tests.support.ports import eventually

SECRET_KEY = "sealing-key-of-the-tests-0123456789abcdef"
WEBHOOK_ENV = {"VIVA_SECRET_KEY": SECRET_KEY, "VIVA_WEBHOOKS_ALLOW_PRIVATE": "true",
               "VIVA_WEBHOOKS_BACKOFF": "200ms", "VIVA_WEBHOOKS_BACKOFF_MAX": "1s",
               "VIVA_WEBHOOKS_TIMEOUT": "3s", "VIVA_ALERTS_INTERVAL": "300ms"}
KEY_EVENTS = ["key.created", "key.rotated", "key.revoked", "key.expiring"]


def webhook_sidecar(tmp_path: Path, database: Database, plans: str | None = None,
                    data: str = "data", **env: str) -> FullSidecar:
    config = tmp_path / "config"
    if not config.exists() or plans is not None:
        write_config(config, *([plans] if plans else []))
    return FullSidecar(config, tmp_path / data, env={**WEBHOOK_ENV, **database.env, **env})


def subscribe(api: Admin, url: str, events: list[str] | None = None) -> dict[str, Any]:
    made = api.post("/v1/webhooks", {"url": url, "events": events or KEY_EVENTS})
    assert made.status == 201, made
    return dict(made.body)


def deliveries(api: Admin, webhook_id: str, **query: str) -> list[dict[str, Any]]:
    suffix = "&".join(f"{k}={v}" for k, v in query.items())
    listed = api.get(f"/v1/webhooks/{webhook_id}/deliveries?limit=100&{suffix}")
    assert listed.status == 200, listed
    return list(listed["items"])


def settled(api: Admin, webhook_id: str, count: int, timeout: float = 20) -> list[Any]:
    """The webhook's deliveries once ``count`` of them are no longer pending."""
    def done() -> list[Any] | None:
        items = deliveries(api, webhook_id)
        finished = [d for d in items if d["status"] != "pending"]
        return items if len(finished) >= count else None

    return list(eventually(done, timeout=timeout, interval=0.1))


def metrics(process: FullSidecar) -> str:
    with urllib.request.urlopen(f"{process.http_url}/metrics", timeout=5) as response:
        return str(response.read().decode())
