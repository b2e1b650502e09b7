"""Prometheus metrics of alerts and webhooks (labels are closed lists: never an endpoint, a
URL or a customer).

    viva_webhook_outbox_depth                    pending deliveries (every instance's)
    viva_webhook_outbox_oldest_age_seconds       how long the oldest pending one has waited
    viva_webhook_delivery_attempts_total{outcome}  delivered, http_error, timeout,
                                                 network_error, refused
    viva_webhook_deliveries_failed_total         given up after VIVA_WEBHOOKS_RETRY_FOR
    viva_webhook_delivery_duration_seconds       one attempt, request to answer
    viva_webhook_events_total{type}              events written to the outbox
    viva_alerts_raised_total{type}               usage.threshold and key.expiring alerts raised
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sidecar.management.alerts.schemas import EVENT_TYPES
from sidecar.management.alerts.sender import OUTCOMES, AttemptResult

_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class AlertMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.depth = Gauge("viva_webhook_outbox_depth", "Webhook deliveries waiting in the "
                           "outbox (pending), across all instances", registry=r)
        self.oldest = Gauge("viva_webhook_outbox_oldest_age_seconds", "Age of the oldest "
                            "pending webhook delivery", registry=r)
        attempts = Counter("viva_webhook_delivery_attempts", "Webhook delivery attempts by "
                           "outcome", ("outcome",), registry=r)
        self._attempts = {o: attempts.labels(o) for o in OUTCOMES}
        self.failed = Counter("viva_webhook_deliveries_failed", "Webhook deliveries given up "
                              "after the retry period", registry=r)
        self.duration = Histogram("viva_webhook_delivery_duration_seconds", "One webhook "
                                  "delivery attempt, request to answer", buckets=_BUCKETS,
                                  registry=r)
        events = Counter("viva_webhook_events", "Events written to the webhook outbox",
                         ("type",), registry=r)
        self._events = {t: events.labels(t) for t in EVENT_TYPES}
        raised = Counter("viva_alerts_raised", "Alerts raised (once each)", ("type",),
                         registry=r)
        self._raised = {t: raised.labels(t) for t in ("usage.threshold", "key.expiring")}

    def attempted(self, result: AttemptResult) -> None:
        self._attempts[result.outcome].inc()
        if result.outcome != "refused":
            self.duration.observe(result.duration)

    def emitted(self, event_type: str) -> None:
        counter = self._events.get(event_type)
        if counter is not None:
            counter.inc()

    def raised(self, alert_type: str) -> None:
        self._raised[alert_type].inc()
