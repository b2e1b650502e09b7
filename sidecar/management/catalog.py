"""The admin API's operations on the catalog, each one transaction.

A mutation, its audit event, its change-log row and the webhook events it causes (written to
the outbox by ``events``: key.created, key.rotated, key.revoked) commit together or not at
all: a request that fails half-way leaves the database as it was. Secrets never enter: a key is
stored as its SHA-256 and shown once, by the create or rotate answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import msgspec
from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sidecar.errors import RuleSetError
from sidecar.management import namespaces as ns
from sidecar.management import schemas as s
from sidecar.management.alerts.schemas import KeyCreatedData, KeyRevokedData, KeyRotatedData
from sidecar.management.db.models import (
    ApiKey,
    AuditEvent,
    Change,
    Customer,
    PlanPeriod,
    RootKey,
)
from sidecar.management.errors import Conflict, Invalid, NotFound
from sidecar.management.keys import (
    API_KEY_PREFIX,
    ROOT_KEY_PREFIX,
    display_start,
    hash_key,
    new_id,
    new_key,
    well_formed,
)
from sidecar.management.plans import PlanSet, check_limits

Clock = Callable[[], float]
MAX_PAGE = 100
# Hears, after the commit, a customer whose namespaces or plan may have changed, with what it
# owns now: [(namespace, customer id, plan)], [] when nothing (or the customer is deleted).
OwnersHook = Callable[[str, list[ns.Ownership]], None]


class EventSink(Protocol):
    """Writes an event in the caller's transaction (alerts/outbox.py's Outbox)."""

    async def emit(self, session: AsyncSession, event_type: str, data: Any) -> str | None: ...


@dataclass(frozen=True)
class Actor:
    """Who asks: a root key's id and scopes."""

    id: str
    scopes: frozenset[str]


class Catalog:
    """Customers, keys, root keys and the audit log, over one session factory."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 plans: Callable[[], PlanSet | None], clock: Clock,
                 committed: Callable[[Change], None] | None = None,
                 events: EventSink | None = None) -> None:
        self.sessions = sessions
        self.events = events
        self.plans = plans
        self.clock = clock
        # Hears this instance's own changes once committed (its cache need not wait for the
        # change-log poll; other instances hear them from the poll).
        self.committed = committed
        # Hears this instance's own namespace changes once committed (usage/checks.py), so
        # they apply here before the answer; others learn them from the change log.
        self.owners_committed: OwnersHook | None = None

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        """One transaction; the change-log rows it wrote are announced after it commits."""
        async with self.sessions.begin() as session:
            yield session
        for change in session.info.get("changes", ()):
            if self.committed is not None:
                self.committed(change)
        for customer_id, owned in session.info.get("owners", ()):
            if self.owners_committed is not None:
                self.owners_committed(customer_id, owned)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    # -- customers ---------------------------------------------------------------------------

    async def create_customer(self, actor: Actor, body: s.CustomerCreate) -> s.Customer:
        self._check_plan(body.plan)
        limits = self._limits(body.limits, body.plan)
        owned = ns.check_namespaces(body.namespaces)
        now = self.now()
        row = Customer(id=body.id if body.id is not msgspec.UNSET else new_id("cus"),
                       name=body.name, email=body.email, plan=body.plan, meta=body.meta,
                       limits=limits, created_at=now, updated_at=now)
        try:
            async with self._transaction() as session:
                if await session.get(Customer, row.id) is not None:
                    raise Conflict(f"customer {row.id!r} exists already", "id")
                session.add(row)
                await session.flush()
                session.add(PlanPeriod(customer_id=row.id, plan=row.plan, starts_at=now))
                if owned:  # other instances count its namespaces from the change log on
                    await ns.replace(session, row.id, owned, now)
                    self._owners(session, row, owned)
                    self._changed(session, "customer", customer_id=row.id)
                self._audit(session, actor, "customer.create", f"customer:{row.id}",
                            _fields(body))
        except IntegrityError:  # someone else took the id or a namespace since the checks
            raise await self._taken(row.id, owned, creating=True) from None
        return customer_view(row, sorted(owned))

    async def _taken(self, customer_id: str, owned: list[str], creating: bool) -> Conflict:
        """What a unique key refused a create or an update for: the customer's id (a create
        only) or one of its namespaces."""
        async with self.sessions() as session:
            if creating and await session.get(Customer, customer_id) is not None:
                return Conflict(f"customer {customer_id!r} exists already", "id")
            conflict = await ns.holder_conflict(session, customer_id, owned)
        return conflict or Conflict("another customer took one of these namespaces at the "
                                    "same moment and gave it up again; try again", "namespaces")

    async def get_customer(self, customer_id: str) -> s.Customer:
        async with self.sessions() as session:
            row = await self._customer(session, customer_id)
            owned = await ns.owned(session, [row.id])
        return customer_view(row, owned.get(row.id, []))

    async def list_customers(self, limit: int, cursor: str | None) -> s.CustomerList:
        query = select(Customer).where(Customer.deleted_at.is_(None))
        if cursor:
            query = query.where(Customer.id > cursor)
        async with self.sessions() as session:
            rows = (await session.scalars(query.order_by(Customer.id).limit(limit + 1))).all()
            owned = await ns.owned(session, [r.id for r in rows[:limit]])
        items = [customer_view(r, owned.get(r.id, [])) for r in rows[:limit]]
        return s.CustomerList(items, items[-1].id if len(rows) > limit else None)

    async def update_customer(self, actor: Actor, customer_id: str,
                              body: s.CustomerUpdate) -> s.Customer:
        changes = _fields(body)
        plan = body.plan if body.plan is not msgspec.UNSET else None
        if plan is not None:
            self._check_plan(plan)
        wanted = None if body.namespaces is msgspec.UNSET else \
            ns.check_namespaces(body.namespaces)
        try:
            async with self._transaction() as session:
                row = await self._customer(session, customer_id, lock=True)
                self._update_limits(row, body, plan)
                if plan is not None and plan != row.plan:
                    await self._plan_changed(session, row.id, plan)
                for name in ("name", "email", "plan", "meta"):
                    value = getattr(body, name)
                    if value is not msgspec.UNSET:
                        setattr(row, name, value)
                if wanted is not None:
                    await ns.replace(session, row.id, wanted, self.now())
                owned = (await ns.owned(session, [row.id])).get(row.id, [])
                self._owners(session, row, owned)
                row.updated_at = self.now()
                self._audit(session, actor, "customer.update", f"customer:{row.id}", changes)
                self._changed(session, "customer", customer_id=row.id)
        except IntegrityError:  # a namespace taken by another customer since the check
            raise await self._taken(customer_id, wanted or [], creating=False) from None
        return customer_view(row, owned)

    def _update_limits(self, row: Customer, body: s.CustomerUpdate, plan: str | None) -> None:
        scope = plan or row.plan
        if body.limits is not msgspec.UNSET:
            row.limits = self._limits(body.limits, scope)
        elif plan is not None and row.limits:  # the overrides must still hold
            self._limits([msgspec.convert(x, s.Limit) for x in row.limits], scope)

    async def delete_customer(self, actor: Actor, customer_id: str) -> None:
        """Mark the customer deleted and revoke every key it has (kept for the audit log and
        later billing)."""
        now = self.now()
        async with self._transaction() as session:
            row = await self._customer(session, customer_id, lock=True)
            row.deleted_at = row.updated_at = now
            await self._plan_changed(session, row.id, None)
            released = await ns.release(session, row.id)
            self._owners(session, row, [])
            keys = (await session.scalars(select(ApiKey).where(
                ApiKey.customer_id == row.id, ApiKey.revoked_at.is_(None)))).all()
            for key in keys:
                key.revoked_at = key.updated_at = now
                await self._emit(session, "key.revoked",
                                 KeyRevokedData(key_view(key, row.plan), "customer_deleted"))
            self._audit(session, actor, "customer.delete", f"customer:{row.id}",
                        {"revoked_keys": [k.id for k in keys], "released_namespaces": released})
            self._changed(session, "customer", customer_id=row.id)

    # -- keys --------------------------------------------------------------------------------

    async def create_key(self, actor: Actor, body: s.KeyCreate) -> s.KeyCreated:
        now = self.now()
        async with self._transaction() as session:
            customer = await self._customer(session, body.customer_id, lock=True,
                                            field="customer_id")
            await self._room_for_a_key(session, customer, now)
            limits = self._limits(body.limits, customer.plan)
            made = new_key(API_KEY_PREFIX)
            row = ApiKey(id=new_id("key"), customer_id=customer.id, hash=made.hash,
                         start=made.start, name=body.name, enabled=True, limits=limits,
                         meta=body.meta, created_at=now, updated_at=now,
                         expires_at=body.expires_at)
            session.add(row)
            self._audit(session, actor, "key.create", f"key:{row.id}", _fields(body))
            self._changed(session, "key", row)
            await self._emit(session, "key.created",
                             KeyCreatedData(key_view(row, customer.plan)))
        return _created(row, made.secret, customer.plan)

    async def get_key(self, key_id: str) -> s.Key:
        async with self.sessions() as session:
            row = await self._key(session, key_id)
            return key_view(row, await self._plan_of(session, row.customer_id))

    async def list_keys(self, customer_id: str | None, limit: int,
                        cursor: str | None) -> s.KeyList:
        query = select(ApiKey, Customer.plan).join(Customer)
        if customer_id is not None:
            query = query.where(ApiKey.customer_id == customer_id)
        if cursor:
            query = query.where(ApiKey.id > cursor)
        async with self.sessions() as session:
            rows = (await session.execute(query.order_by(ApiKey.id).limit(limit + 1))).all()
        items = [key_view(key, plan) for key, plan in rows[:limit]]
        return s.KeyList(items, items[-1].id if len(rows) > limit else None)

    async def update_key(self, actor: Actor, key_id: str, body: s.KeyUpdate) -> s.Key:
        async with self._transaction() as session:
            row = await self._key(session, key_id, lock=True)
            plan = await self._plan_of(session, row.customer_id)
            if body.limits is not msgspec.UNSET:
                row.limits = self._limits(body.limits, plan)
            for name in ("enabled", "expires_at", "name", "meta"):
                value = getattr(body, name)
                if value is not msgspec.UNSET:
                    setattr(row, name, value)
            row.updated_at = self.now()
            self._audit(session, actor, "key.update", f"key:{row.id}", _fields(body))
            self._changed(session, "key", row)
        return key_view(row, plan)

    async def rotate_key(self, actor: Actor, key_id: str, grace_seconds: int) -> s.KeyCreated:
        """A new key with the old one's customer, limits and meta; the old one expires after
        ``grace_seconds`` (0: at once)."""
        now = self.now()
        async with self._transaction() as session:
            old = await self._key(session, key_id, lock=True)
            if old.revoked_at is not None:
                raise Conflict(f"key {key_id!r} is revoked; a revoked key cannot be rotated",
                               None)
            plan = await self._plan_of(session, old.customer_id)
            made = new_key(API_KEY_PREFIX)
            row = ApiKey(id=new_id("key"), customer_id=old.customer_id, hash=made.hash,
                         start=made.start, name=old.name, enabled=old.enabled,
                         limits=old.limits, meta=old.meta, created_at=now, updated_at=now,
                         expires_at=old.expires_at, rotated_from=old.id)
            ends = now + timedelta(seconds=grace_seconds)
            if old.expires_at is None or old.expires_at > ends:
                old.expires_at = ends
            old.updated_at = now
            session.add(row)
            self._audit(session, actor, "key.rotate", f"key:{old.id}",
                        {"new_key_id": row.id, "grace_seconds": grace_seconds})
            self._changed(session, "key", old)
            self._changed(session, "key", row)
            await self._emit(session, "key.rotated", KeyRotatedData(
                key_view(old, plan), key_view(row, plan), grace_seconds))
        return _created(row, made.secret, plan)

    async def revoke_key(self, actor: Actor, key_id: str) -> s.Key:
        async with self._transaction() as session:
            row = await self._key(session, key_id, lock=True)
            plan = await self._plan_of(session, row.customer_id)
            if row.revoked_at is None:
                row.revoked_at = row.updated_at = self.now()
                self._audit(session, actor, "key.revoke", f"key:{row.id}", {})
                self._changed(session, "key", row)
                await self._emit(session, "key.revoked",
                                 KeyRevokedData(key_view(row, plan), "revoked"))
        return key_view(row, plan)

    async def find_key(self, key_hash: str) -> tuple[ApiKey, Customer] | None:
        """The key stored under ``key_hash`` and its customer (verification's cache miss)."""
        async with self.sessions() as session:
            found = (await session.execute(select(ApiKey, Customer).join(Customer).where(
                ApiKey.hash == key_hash))).first()
        return None if found is None else (found[0], found[1])

    async def ownerships(self, customer_id: str | None = None) -> list[ns.Ownership]:
        """(namespace, customer, plan) of every owned namespace, or of one customer's."""
        async with self.sessions() as session:
            return await ns.ownerships(session, customer_id)

    # -- root keys and audit -----------------------------------------------------------------

    async def add_root_key(self, secret: str | None, scopes: Sequence[str],
                           name: str | None) -> tuple[str, str]:
        """Register a root key (a new one when ``secret`` is None); returns (id, secret).
        Registering a known secret again changes nothing."""
        secret = secret or new_key(ROOT_KEY_PREFIX).secret
        digest = hash_key(secret)
        try:
            return await self._add_root_key(secret, digest, scopes, name), secret
        except IntegrityError:  # instances starting at once register the same VIVA_ROOT_KEY
            async with self.sessions() as session:
                found = await session.scalar(select(RootKey.id).where(RootKey.hash == digest))
            if found is None:
                raise
            return str(found), secret

    async def _add_root_key(self, secret: str, digest: str, scopes: Sequence[str],
                            name: str | None) -> str:
        async with self._transaction() as session:
            found = await session.scalar(select(RootKey).where(RootKey.hash == digest))
            if found is not None:
                return found.id
            # A VIVA_ROOT_KEY may be any text: show none of it.
            start = display_start(secret) if well_formed(secret, ROOT_KEY_PREFIX) else ""
            row = RootKey(id=new_id("root"), hash=digest, start=start, name=name,
                          scopes=sorted(set(scopes)), created_at=self.now())
            session.add(row)
            self._audit(session, Actor("system", frozenset()), "root_key.create",
                        f"root_key:{row.id}", {"scopes": row.scopes, "name": name})
            self._changed(session, "root_key")
        return row.id

    async def root_keys(self) -> list[RootKey]:
        async with self.sessions() as session:
            return list((await session.scalars(
                select(RootKey).where(RootKey.revoked_at.is_(None)))).all())

    async def list_audit(self, target: str | None, limit: int,
                         cursor: int | None) -> s.AuditList:
        query = select(AuditEvent)
        if target:
            query = query.where(AuditEvent.target == target)
        if cursor is not None:
            query = query.where(AuditEvent.id < cursor)
        async with self.sessions() as session:
            rows = (await session.scalars(query.order_by(AuditEvent.id.desc())
                                          .limit(limit + 1))).all()
        items = [s.AuditEvent(r.id, r.at, r.actor, r.action, r.target, r.changes)
                 for r in rows[:limit]]
        return s.AuditList(items, str(items[-1].id) if len(rows) > limit else None)

    async def changes_after(self, floor: int, limit: int = 1000) -> list[Change]:
        async with self.sessions() as session:
            return list((await session.scalars(select(Change).where(Change.id > floor)
                                               .order_by(Change.id).limit(limit))).all())

    async def last_change(self) -> int:
        async with self.sessions() as session:
            return int(await session.scalar(select(func.coalesce(func.max(Change.id), 0))) or 0)

    async def prune_changes(self, older_than: datetime) -> None:
        async with self._transaction() as session:
            await session.execute(delete(Change).where(Change.at < older_than))

    # -- helpers -----------------------------------------------------------------------------

    def _check_plan(self, plan: str) -> None:
        plans = self.plans()
        if plans is None or plan not in plans.plans:
            known = ", ".join(sorted(plans.plans)) if plans else ""
            raise Invalid(f"unknown plan {plan!r}; expected one of {known}", "plan")

    def _limits(self, limits: list[s.Limit] | None, scope: str) -> list[dict[str, Any]] | None:
        if limits is None:
            return None
        raw: list[dict[str, Any]] = msgspec.to_builtins(limits)
        try:
            check_limits(raw, scope)
        except RuleSetError as exc:
            error = exc.errors[0]
            raise Invalid(error.problem, error.path) from None
        return raw

    async def _customer(self, session: AsyncSession, customer_id: str, lock: bool = False,
                        field: str | None = None) -> Customer:
        query = select(Customer).where(Customer.id == customer_id,
                                       Customer.deleted_at.is_(None))
        row = await session.scalar(query.with_for_update() if lock else query)
        if row is None:
            raise NotFound(f"no customer {customer_id!r}", field)
        return row

    async def _key(self, session: AsyncSession, key_id: str, lock: bool = False) -> ApiKey:
        query = select(ApiKey).where(ApiKey.id == key_id)
        row = await session.scalar(query.with_for_update() if lock else query)
        if row is None:
            raise NotFound(f"no key {key_id!r}")
        return row

    async def _plan_changed(self, session: AsyncSession, customer_id: str,
                            plan: str | None) -> None:
        """End the customer's plan period now and start one on ``plan`` (None: the customer
        is deleted), so billing knows which plan was in force when (billing/invoice.py)."""
        now = self.now()
        await session.execute(update(PlanPeriod).where(
            PlanPeriod.customer_id == customer_id, PlanPeriod.ends_at.is_(None)).values(
            ends_at=now))
        if plan is not None:
            session.add(PlanPeriod(customer_id=customer_id, plan=plan, starts_at=now))

    async def _plan_of(self, session: AsyncSession, customer_id: str) -> str:
        return str(await session.scalar(select(Customer.plan).where(
            Customer.id == customer_id)))

    async def _room_for_a_key(self, session: AsyncSession, customer: Customer,
                              now: datetime) -> None:
        """The plan's max_keys counts keys neither revoked nor expired (the customer row is
        locked, so two creates cannot both take the last place)."""
        plans = self.plans()
        plan = plans.plans.get(customer.plan) if plans else None
        if plan is None or plan.max_keys is None:
            return
        active: ColumnElement[bool] = or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now)
        count = await session.scalar(select(func.count()).select_from(ApiKey).where(
            ApiKey.customer_id == customer.id, ApiKey.revoked_at.is_(None), active))
        if (count or 0) >= plan.max_keys:
            raise Conflict(f"customer {customer.id!r} has {count} active keys, the most its "
                           f"plan {plan.id!r} allows; revoke one or change the plan",
                           "customer_id")

    def _audit(self, session: AsyncSession, actor: Actor, action: str, target: str,
               changes: dict[str, Any]) -> None:
        audit(session, self.now(), actor, action, target, changes)

    async def _emit(self, session: AsyncSession, event_type: str, data: Any) -> None:
        if self.events is not None:
            await self.events.emit(session, event_type, data)

    @staticmethod
    def _owners(session: AsyncSession, row: Customer, owned: Sequence[str]) -> None:
        """Note what the customer owns once this transaction commits (``_transaction``)."""
        session.info.setdefault("owners", []).append(
            (row.id, [(namespace, row.id, row.plan) for namespace in owned]))

    def _changed(self, session: AsyncSession, kind: str, key: ApiKey | None = None,
                 customer_id: str | None = None) -> None:
        change = Change(at=self.now(), kind=kind, key_id=key.id if key else None,
                        key_hash=key.hash if key else None,
                        customer_id=key.customer_id if key else customer_id)
        session.add(change)
        session.info.setdefault("changes", []).append(change)


def audit(session: AsyncSession, at: datetime, actor: Actor, action: str, target: str,
          changes: dict[str, Any]) -> None:
    """An audit event in the caller's transaction."""
    session.add(AuditEvent(at=at, actor=actor.id, action=action, target=target,
                           changes=changes))


def _fields(body: msgspec.Struct) -> dict[str, Any]:
    """The fields a request set, as JSON values (for the audit log; requests hold no
    secrets)."""
    out: dict[str, Any] = msgspec.to_builtins(body)
    return out


def customer_view(row: Customer, namespaces: Sequence[str] = ()) -> s.Customer:
    return s.Customer(row.id, row.name, row.email, row.plan, row.meta, _limit_views(row.limits),
                      row.created_at, row.updated_at, list(namespaces))


def key_view(row: ApiKey, plan: str) -> s.Key:
    return s.Key(row.id, row.start, row.customer_id, plan, row.name, row.enabled,
                 _limit_views(row.limits), row.meta, row.created_at, row.updated_at,
                 row.expires_at, row.revoked_at, row.rotated_from)


def _limit_views(limits: list[dict[str, Any]] | None) -> list[s.Limit] | None:
    return None if limits is None else [msgspec.convert(x, s.Limit) for x in limits]


def _created(row: ApiKey, secret: str, plan: str) -> s.KeyCreated:
    return s.KeyCreated(row.id, secret, row.start, row.customer_id, plan, row.name,
                        row.created_at, row.expires_at)
