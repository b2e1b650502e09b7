"""Full mode, wired: what the composition root starts beside the standalone sidecar.

    catalog (SQL) ─ Catalog ─ AdminApi (HTTP port: /v1/customers, /v1/keys, /v1/audit, …)
                      │   └── events ─▶ Alerts (outbox, dispatcher, /v1/webhooks, alerts)
    ChangeFeed ─ KeyCache ─ Verifier ─ engine (the sidecar's own: same store and policies)
         │                    │    └── UsageCounter (memory) ─ UsageFlusher ─ usage ledger
         │  /v1/keys/verify, /v1/keys/forward-auth (HTTP), ext_authz Check (gRPC port)
         └ NamespaceOwners ─ observer of /v1/check, /v1/report, /v1/forward-auth ─┘
                             (the service's: a customer's namespaces counted as its usage)

    EventIngest ─ UsageApi (/v1/usage/events, /v1/usage); PeriodTotals
    Billing ─ BillingApi (/v1/invoices…, /v1/billing/periods/{period}/close)
       └── invoice.created ─▶ the Alerts outbox, in the closing transaction

    SessionStore ─ WebSite: /dashboard, /portal, POST /v1/portal/sessions; its pages read
        the usage ledger, PeriodTotals, Billing and the webhooks, and change through the Catalog
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import Counter
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from sidecar.errors import RuleSetError
from sidecar.limiter.engine import Limiter
from sidecar.management import schemas as s
from sidecar.management.admin import AdminApi, RootKeys
from sidecar.management.alerts.service import Alerts
from sidecar.management.billing.api import BillingApi
from sidecar.management.billing.invoicing import Billing
from sidecar.management.billing.schemas import Invoice
from sidecar.management.cache import ChangeFeed, KeyCache
from sidecar.management.catalog import Catalog
from sidecar.management.db.connect import create_engine, database_url, sessions
from sidecar.management.db.migrate import upgrade
from sidecar.management.db.models import Change
from sidecar.management.gateway import CHECK_PATH, ExtAuthz, ForwardAuth, grpcio_servicer
from sidecar.management.openapi import admin_openapi
from sidecar.management.plans import PlanSet, PlansManager
from sidecar.management.schemas import to_json
from sidecar.management.usage.api import UsageApi
from sidecar.management.usage.checks import COUNTED_METHODS, NamespaceOwners
from sidecar.management.usage.counter import UsageCounter
from sidecar.management.usage.events import EventIngest
from sidecar.management.usage.flusher import UsageFlusher
from sidecar.management.usage.ledger import prune_flushes
from sidecar.management.usage.totals import PeriodTotals
from sidecar.management.verify import Verifier
from sidecar.management.web.site import Sources, WebSite
from sidecar.observability.metrics import Metrics
from sidecar.service import RateLimitService
from sidecar.settings import Settings
from sidecar.transports.reply import Reply, RequestParts

log = logging.getLogger("sidecar.full")

FORWARD_AUTH_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
In = TypeVar("In")
Out = TypeVar("Out")


class FullMode:
    def __init__(self, settings: Settings, engine: Limiter, metrics: Metrics,
                 clock: Callable[[], float]) -> None:
        self.settings = settings
        self.metrics = metrics
        self.url = database_url(settings.database_url, settings.data_dir)
        self.db = create_engine(self.url)
        # A new plans version needs no push: cached keys resolve their limits again on next
        # use (verify.py keys the resolution by the plans version).
        self.plans = PlansManager(settings.plans_dir, not settings.ignore_dotfiles,
                                  settings.reload_poll_interval, on_result=self._plans_result)
        self.roots = RootKeys()
        made = sessions(self.db)
        self.alerts = Alerts(settings, made, engine, self._current_plans, self.roots,
                             metrics.registry, clock)
        self.catalog = Catalog(made, self._current_plans, clock, self._changed,
                               self.alerts.outbox)
        self.cache = KeyCache(settings.key_cache_size, clock)
        self.verifications = Counter("viva_key_verifications", "Key verifications by code",
                                     ("code", "transport"), registry=metrics.registry)
        self.plans_loads = Counter("viva_plans_loads", "Plans loads (a failed one keeps the "
                                   "previous plans)", ("result",), registry=metrics.registry)
        self.usage = UsageCounter(clock)
        self.verifier = Verifier(self.catalog, self.cache, engine, self._current_plans,
                                 settings.verify_failures_per_minute, self._count,
                                 record=self.usage.record if settings.usage else None,
                                 observe=self.alerts.observe)
        self._usage_wiring(settings, metrics, clock)
        self._counted: dict[tuple[str, str], Any] = {}
        self.namespaces = NamespaceOwners(self.catalog.ownerships, metrics.registry)
        self.catalog.owners_committed = self.namespaces.apply
        self.feed = ChangeFeed(self.catalog.changes_after, self._changed,
                               prune=self.catalog.prune_changes, resync=self._resync)
        rest = settings.rest
        self.ext_authz = ExtAuthz(self.verifier, settings.key_headers, rest.headers, metrics)
        self.forward_auth = ForwardAuth(self.verifier, settings.key_headers, rest.headers,
                                        rest.xff_index)
        self.admin = AdminApi(self.catalog, self.verifier, self.roots, rest.headers,
                              rest.max_body_bytes, to_json(admin_openapi()), self.plans_view)
        self.web = WebSite(self.catalog, self.roots, self.verifier, Sources(
            engine, self._current_plans, self.plans_view, self.usage_totals, self.billing,
            self.alerts.webhooks, _metering(settings)), settings.public_url, clock)
        self._tasks: set[asyncio.Task[None]] = set()

    def _usage_wiring(self, settings: Settings, metrics: Metrics,
                      clock: Callable[[], float]) -> None:
        db = self.catalog.sessions
        self.events = EventIngest(db, self._current_plans, clock, metrics.registry)
        self.flusher = UsageFlusher(self.usage, db, settings.usage_flush_interval,
                                    metrics.registry, clock,
                                    housekeeping=(self._prune_flushes, self.events.prune))
        # A customer's period so far, every meter at once (for the web pages).
        self.usage_totals = PeriodTotals(db, self._current_plans)
        self.billing = Billing(db, self._current_plans, clock, settings.usage_flush_interval)
        self.billing.invoice_created.append(self._invoice_created)
        self.usage_api = UsageApi(self.events, db, self._current_plans, self.roots, clock,
                                  settings.rest.max_body_bytes)
        self.billing_api = BillingApi(self.billing, self.roots)

    async def _invoice_created(self, session: AsyncSession, invoice: Invoice) -> None:
        """invoice.created, written to the outbox in the closing transaction."""
        await self.alerts.outbox.emit(session, "invoice.created", invoice)

    async def _prune_flushes(self, now: datetime) -> None:
        async with self.catalog.sessions.begin() as session:
            await prune_flushes(session, now - timedelta(days=1))

    def _current_plans(self) -> PlanSet | None:
        return self.plans.current

    def observe_decisions(self, service: RateLimitService) -> None:
        """Count the decisions of /v1/check, /v1/report and /v1/forward-auth made in a
        namespace a customer owns as that customer's usage (usage/checks.py), on every
        transport that serves them; nothing is observed with VIVA_USAGE=false."""
        if self.settings.usage:
            service.observe(self.namespaces.observer(self.usage.record_check),
                            COUNTED_METHODS)

    def plans_view(self) -> s.Plans:
        """What GET /v1/plans shows: the plans in force and the last refused reload."""
        plans, status = self.plans.current, self.plans.status
        items = [] if plans is None else [
            s.PlanView(p.id, p.name, sorted(p.features), p.max_keys, [
                s.PlanLimit(x.name, x.unit.name.lower(), x.requests_per_unit, x.algorithm,
                            x.window_length_ms // 1000, x.burst, x.calendar)
                for x in p.limits]) for p in plans.plans.values()]
        return s.Plans(plans.version if plans else None,
                       datetime.fromtimestamp(plans.loaded_at, UTC) if plans else None,
                       list(plans.files) if plans else [], items, status.last_error or None)

    def _count(self, code: str, transport: str) -> None:
        child = self._counted.get((code, transport))
        if child is None:  # bounded: codes and transports are closed lists
            child = self._counted[(code, transport)] = self.verifications.labels(code, transport)
        child.inc()

    def _plans_result(self, ok: bool) -> None:
        self.plans_loads.labels("success" if ok else "error").inc()

    async def start(self) -> None:
        """Load the plans, migrate the catalog, register VIVA_ROOT_KEY, follow the change
        log. RuleSetError for invalid plans; OSError when the database cannot be used."""
        if not self.plans.load():
            raise self.plans.last_exception or RuleSetError([])
        try:
            revision = await upgrade(self.db)
            if self.settings.root_key:
                await self.catalog.add_root_key(self.settings.root_key, ["admin"],
                                                "VIVA_ROOT_KEY")
            self.roots.replace(await self.catalog.root_keys())
            floor = await self.catalog.last_change()  # changes after it are applied again
            await self.namespaces.load()
            self.namespaces.start()
            self.feed.start(floor)
            self.flusher.start()
            await self.alerts.start()
        except (SQLAlchemyError, OSError) as exc:
            await self.db.dispose()
            raise OSError(f"cannot use the catalog database "
                          f"{self.url.render_as_string(hide_password=True)}: "
                          f"{type(exc).__name__}: {_first_line(exc)}") from None
        log.warning("full mode: catalog at revision %s, plans %s", revision,
                    ", ".join(self.plans.current.plans) if self.plans.current else "")

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        self.plans.start(loop)

    async def stop(self) -> None:
        """After the transports: every decision made has been counted, and the last usage
        batch is written before the database goes; deliveries under way finish within the
        shutdown grace."""
        await self.flusher.stop(self.settings.shutdown_grace)
        await self.feed.stop()
        await self.namespaces.stop()
        await self.plans.stop()
        await self.alerts.stop()
        for task in list(self._tasks):
            task.cancel()
        await self.db.dispose()

    # -- transports --------------------------------------------------------------------------

    def register_http(self, app: web.Application) -> None:
        self.admin.register(app, self._measured)
        self.usage_api.register(app, self._measured)
        self.billing_api.register(app, self._measured)
        self.alerts.register_http(app, self._measured)
        self.web.register(app, self._measured)
        handler = self._measured(self.forward_auth.handle, "key_forward_auth")
        for path in ("/v1/keys/forward-auth", r"/v1/keys/forward-auth/{path:[\s\S]*}"):
            for method in FORWARD_AUTH_METHODS:
                app.router.add_route(method, path, handler)

    def fast_endpoints(self) -> dict[str, Callable[[RequestParts], Awaitable[Reply]]]:
        """The key endpoints as the fast HTTP/1.1 path answers them (from a request's parts),
        counted as register_http counts them."""
        return {"key_verify": self._measured(self.admin.verify_reply, "key_verify"),
                "key_forward_auth": self._measured(self.forward_auth.reply, "key_forward_auth")}

    def _measured(self, handler: Callable[[In], Awaitable[Out]],
                  method: str) -> Callable[[In], Awaitable[Out]]:
        """``handler`` counted as ``method`` in the request counter and latency histogram, and
        in the HTTP transport's in-flight gauge, as the standalone endpoints are."""
        requests = self.metrics.requests.labels(method)
        latency = self.metrics.response_time.labels(method)
        in_flight = self.metrics.in_flight.labels("http")

        async def measured(request: In) -> Out:
            started = time.perf_counter()
            requests.inc()
            in_flight.inc()
            try:
                return await handler(request)
            finally:
                in_flight.dec()
                latency.observe(time.perf_counter() - started)

        return measured

    def grpc_routes(self) -> dict[bytes, Callable[[bytes], Any]]:
        """The fast transport's extra methods."""
        return {CHECK_PATH: self.ext_authz.fast}

    def add_to_grpcio(self, server: Any) -> None:
        from envoy.service.auth.v3 import external_auth_pb2_grpc

        external_auth_pb2_grpc.add_AuthorizationServicer_to_server(
            grpcio_servicer(self.ext_authz), server)

    # -- the change log ----------------------------------------------------------------------

    def _changed(self, change: Change) -> None:
        self.cache.forget(change)
        if change.kind == "customer" and change.customer_id:  # its namespaces, or plan
            self.namespaces.stale(change.customer_id)
        if change.kind == "root_key":
            task = asyncio.get_running_loop().create_task(self._reload_roots())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _resync(self) -> None:
        """The change log is readable again after failures: what it said meanwhile may have
        been pruned, so whatever was learnt from it is dropped or read again."""
        self.cache.clear()
        self.namespaces.stale(None)

    async def _reload_roots(self) -> None:
        self.roots.replace(await self.catalog.root_keys())


def _metering(settings: Settings) -> str:
    """Where the pages' decision counts come from, in a sentence."""
    if not settings.usage:
        return ("usage metering is off (VIVA_USAGE=false): no decision is counted, so these "
                "figures stay at zero")
    return (f"the usage ledger, every instance's decisions counted by the hour and written "
            f"every {settings.usage_flush_interval:g} s (VIVA_USAGE_FLUSH_INTERVAL)")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else ""
