"""Alerts and webhooks, wired for full mode: the outbox the catalog writes events to, the
dispatcher that delivers them, the webhooks API, and the rounds that raise usage.threshold and
key.expiring every VIVA_ALERTS_INTERVAL.

    Catalog ─ emit (in its transaction) ─▶ Outbox ◀─ claim/record ─ Dispatcher ─▶ receivers
    Verifier ─ touch(customer) ─▶ ThresholdAlerts ─ UsageReader ─▶ engine counters
    ExpiryNotices ─ api_keys ─▶ Outbox
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sidecar.limiter.engine import Limiter
from sidecar.management.admin import Handler, RootKeys
from sidecar.management.alerts.api import WebhooksApi
from sidecar.management.alerts.dispatcher import Dispatcher, DispatchOptions
from sidecar.management.alerts.expiring import ExpiryNotices
from sidecar.management.alerts.metrics import AlertMetrics
from sidecar.management.alerts.outbox import Outbox
from sidecar.management.alerts.sealing import Sealer, SealError
from sidecar.management.alerts.sender import Sender
from sidecar.management.alerts.thresholds import ThresholdAlerts, UsageReader
from sidecar.management.alerts.usage import EngineUsageReader
from sidecar.management.alerts.webhooks import Webhooks
from sidecar.management.db.models import WebhookEndpoint
from sidecar.management.plans import PlanSet
from sidecar.management.verify import Outcome
from sidecar.settings import Settings

log = logging.getLogger("sidecar.alerts")


class Alerts:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession],
                 engine: Limiter, plans: Callable[[], PlanSet | None], roots: RootKeys,
                 registry: CollectorRegistry, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.interval = settings.alerts_interval
        self.metrics = AlertMetrics(registry)
        self.sealer = Sealer(settings.secret_key, settings.secret_key_previous) \
            if settings.secret_key else None
        self.outbox = Outbox(sessions, clock, settings.webhooks_retry_for)
        sender = Sender(settings.webhooks_timeout, settings.webhooks_allow_private,
                        settings.webhooks_concurrency)
        options = DispatchOptions(settings.webhooks_timeout, settings.webhooks_backoff,
                                  settings.webhooks_backoff_max, settings.webhooks_concurrency)
        self.dispatcher = Dispatcher(self.outbox, sender, lambda: self.sealer, options,
                                     self.metrics)
        self.outbox.listeners += [self.metrics.emitted, self.dispatcher.wake]
        self.webhooks = Webhooks(sessions, self.sealer, clock, settings.webhooks_allow_private,
                                 self.dispatcher.wake)
        self.api = WebhooksApi(self.webhooks, roots, settings.rest.max_body_bytes)
        self.thresholds = ThresholdAlerts(EngineUsageReader(engine, sessions, plans), sessions,
                                          self.outbox, plans, self.metrics.raised)
        self.expiry = ExpiryNotices(sessions, self.outbox, settings.key_expiring_days)
        self._task: asyncio.Task[None] | None = None

    def use_usage_reader(self, reader: UsageReader) -> None:
        """Read usage for usage.threshold from ``reader`` (e.g. the billing ledger) instead
        of the engine's counters."""
        self.thresholds.reader = reader

    def observe(self, outcome: Outcome) -> None:
        """Key verification's hook (the hot path: one set insertion, for plans with
        alerts)."""
        if outcome.key is not None and outcome.plan is not None and \
                outcome.plan.alerts is not None and outcome.decision is not None:
            self.thresholds.touch(outcome.key.customer_id)

    def register_http(self, app: web.Application,
                      measured: Callable[[Handler, str], Handler]) -> None:
        self.api.register(app, measured)

    async def start(self) -> None:
        await self._reseal()
        self.dispatcher.start()
        self._task = asyncio.get_running_loop().create_task(self._rounds())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.dispatcher.stop(self.settings.shutdown_grace)

    async def _rounds(self) -> None:
        while True:
            for work in (self.expiry.run_once, self.thresholds.run_once):
                try:
                    await work()
                except Exception as exc:  # the database away: next round
                    log.warning("alerts round failed: %s", type(exc).__name__)
            await asyncio.sleep(self.interval)

    async def _reseal(self) -> None:
        """Seal again under VIVA_SECRET_KEY the secrets an older key sealed (rotation)."""
        sealer = self.sealer
        if sealer is None:
            return
        async with self.sessions.begin() as session:
            rows = (await session.scalars(select(WebhookEndpoint).where(
                WebhookEndpoint.deleted_at.is_(None)))).all()
            for row in rows:
                if sealer.is_current(row.secret):
                    continue
                try:
                    row.secret = sealer.seal(sealer.open(row.secret, row.id), row.id)
                except SealError as exc:
                    log.error("webhook %s: its signing secret cannot be opened (%s); its "
                              "deliveries fail until it is made again", row.id, exc)
