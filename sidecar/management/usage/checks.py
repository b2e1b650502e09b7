"""Decisions in a customer's namespaces: /v1/check, /v1/report and /v1/forward-auth counted
as that customer's usage.

A customer may own rules namespaces (``namespaces`` on /v1/customers; namespaces.py). The
service calls an observer after each decision of those endpoints, whatever transport serves
them (sidecar/service.py ``RateLimitService.observe``); the observer looks the namespace up in
memory and, when a customer owns it, counts the decision into UsageCounter beside the key
verifications: no key, the owner's plan as this instance knows it, the outcome, the refusing
rule. An unowned namespace costs one dict lookup; a standalone sidecar has no observer.

NamespaceOwners keeps the map true to the catalog as KeyCache keeps keys: this instance's own
changes apply at commit (Catalog.owners_committed), others' when the change log names the
customer (read every 250 ms), by reading that customer's namespaces and plan again, one
customer at a time; a customer named again while being read is read once more, so the last
read is never older than the last change. A change log that was unreadable for a while reloads
the whole map.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge

from sidecar.management.namespaces import Ownership
from sidecar.model import Decision, Descriptor
from sidecar.service import DecisionObserver

log = logging.getLogger("sidecar.usage")

RETRY_SECONDS = 1.0

# The service methods whose decisions a namespace's owner is charged for.
COUNTED_METHODS = ("rest_check", "rest_report", "forward_auth")


@dataclass(frozen=True, slots=True)
class Owner:
    customer_id: str
    plan: str


Record = Callable[[Owner, Sequence[Descriptor], Decision], None]


class NamespaceOwners:
    """namespace → Owner, in memory, for the observer on the request path."""

    def __init__(self, read: Callable[[str | None], Awaitable[list[Ownership]]],
                 registry: CollectorRegistry | None = None) -> None:
        # read(None): every ownership; read(customer_id): that customer's ([]: none, or the
        # customer is deleted)
        self.read = read
        self.gauge = Gauge("viva_usage_owned_namespaces", "Rules namespaces whose decisions "
                           "this process counts as a customer's usage", registry=registry,
                           multiprocess_mode="livemax") if registry is not None else None
        self.by_namespace: dict[str, Owner] = {}  # the same dict for the process' lifetime
        self._of: dict[str, set[str]] = {}  # customer id -> its namespaces here
        self._stale: dict[str, None] = {}  # customers to read again (an ordered set)
        self._everything = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __contains__(self, namespace: str) -> bool:
        return namespace in self.by_namespace

    def observer(self, record: Record) -> DecisionObserver:
        """The service's observer: ``record`` for each decision in an owned namespace."""
        owner_of = self.by_namespace.get  # bound once: a call is one dict lookup

        def observe(namespace: str, descriptors: Sequence[Descriptor],
                    decision: Decision) -> None:
            owner = owner_of(namespace)
            if owner is not None:
                record(owner, descriptors, decision)

        return observe

    # -- keeping the map true ----------------------------------------------------------------

    async def load(self) -> None:
        """Read every ownership (at start, before the change log is followed)."""
        self.replace(await self.read(None))

    def replace(self, rows: list[Ownership]) -> None:
        mapped = {namespace: Owner(customer, plan) for namespace, customer, plan in rows}
        self.by_namespace.clear()  # cleared and filled in one step of the event loop
        self.by_namespace.update(mapped)
        self._of = {}
        for namespace, owner in mapped.items():
            self._of.setdefault(owner.customer_id, set()).add(namespace)
        self._measure()

    def apply(self, customer_id: str, rows: list[Ownership]) -> None:
        """``customer_id`` owns exactly ``rows`` now."""
        for namespace in self._of.pop(customer_id, ()):
            owner = self.by_namespace.get(namespace)
            if owner is not None and owner.customer_id == customer_id:
                del self.by_namespace[namespace]
        for namespace, _, plan in rows:
            before = self.by_namespace.get(namespace)
            if before is not None and before.customer_id != customer_id:
                # moved: its previous owner's change has not been read here yet
                self._of.get(before.customer_id, set()).discard(namespace)
            self.by_namespace[namespace] = Owner(customer_id, plan)
        if rows:
            self._of[customer_id] = {namespace for namespace, _, _ in rows}
        self._measure()

    def _measure(self) -> None:
        if self.gauge is not None:
            self.gauge.set(len(self.by_namespace))

    def stale(self, customer_id: str | None) -> None:
        """The change log named ``customer_id`` (None: anything may have changed)."""
        if customer_id is None:
            self._everything = True
        else:
            self._stale[customer_id] = None
        self._wake.set()

    async def refresh(self) -> None:
        """Read again what was named stale; what cannot be read stays stale."""
        if self._everything:
            self._everything = False
            self._stale.clear()
            try:
                await self.load()
            except BaseException:
                self._everything = True
                raise
        while self._stale:
            customer_id = next(iter(self._stale))
            del self._stale[customer_id]  # named again while being read: read once more
            try:
                rows = await self.read(customer_id)
            except BaseException:
                self._stale[customer_id] = None
                raise
            self.apply(customer_id, rows)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.refresh()
                failures = 0
            except Exception as exc:  # the database away: keep what we have, try again
                failures += 1
                if failures == 1:
                    log.warning("cannot read namespace owners (%s); retrying every %.0fs",
                                type(exc).__name__, RETRY_SECONDS)
                await asyncio.sleep(RETRY_SECONDS)
                self._wake.set()
