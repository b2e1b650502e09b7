"""Alerts and signed webhooks (full mode).

    schemas.py     the webhooks API's types and the events' payloads (msgspec)
    signing.py     Standard Webhooks: whsec_ secrets, webhook-id/-timestamp/-signature
    sealing.py     signing secrets at rest: AES-GCM under a key from VIVA_SECRET_KEY
    targets.py     webhook URLs and the addresses they may reach (SSRF, DNS rebinding)
    outbox.py      the transactional outbox: events with the change, claims, attempts
    sender.py      one delivery attempt over HTTP
    dispatcher.py  the delivery loop: claim, sign, send, record, back off, stop cleanly
    webhooks.py    endpoints and deliveries (create, list, retry, …) for the API and pages
    api.py         the /v1/webhooks handlers
    marks.py       an alert raised once across instances
    thresholds.py  usage.threshold over a UsageReader
    usage.py       EngineUsageReader: usage from the engine's live counters
    expiring.py    key.expiring
    metrics.py     outbox depth, attempts, failures, latency
    service.py     wires all of the above into full mode
"""
