"""Browser sessions and one-time portal links, kept in the catalog database.

A session is a random 256-bit secret in a cookie; the database keeps only its SHA-256, so a
copy of the database opens no session. Each session has a fixed expiry (no sliding renewal:
a stolen cookie is good for a bounded time). Its CSRF token is derived from the secret
(HMAC), so it needs no storage and is worthless without the cookie it belongs to.

A portal link carries a token (``vlink_…``, shaped and checksummed as keys are, stored as its
SHA-256) that is good once, for PORTAL_LINK_TTL; redeeming it opens a portal session bound to
the customer the link was made for. Redeeming marks the link used in the same transaction that
opens the session, so two redemptions of one link cannot both succeed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sidecar.management.db.models import AuditEvent, Customer, PortalLink, WebSession
from sidecar.management.errors import NotFound
from sidecar.management.keys import hash_key, new_key, well_formed

DASHBOARD = "dashboard"
PORTAL = "portal"
DASHBOARD_TTL = timedelta(hours=12)
PORTAL_TTL = timedelta(hours=24)
PORTAL_LINK_TTL = timedelta(minutes=15)
LINK_PREFIX = "vlink"


@dataclass(frozen=True, slots=True)
class Session:
    """One signed-in browser: what it is (dashboard or portal), who (a root key id or a
    customer id), until when, and the CSRF token its forms carry."""

    kind: str
    subject: str
    expires_at: datetime
    csrf: str
    id_hash: str


def csrf_token(secret: str) -> str:
    digest = hmac.new(secret.encode(), b"viva-csrf", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class SessionStore:
    """Sessions and portal links over the catalog's session factory."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession],
                 clock: Callable[[], float]) -> None:
        self.sessions = sessions
        self.clock = clock

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    async def open(self, kind: str, subject: str) -> tuple[str, Session]:
        """A new session; returns the cookie's secret (shown to the browser only) and it."""
        async with self.sessions.begin() as db:
            return self._add(db, kind, subject)

    def _add(self, db: AsyncSession, kind: str, subject: str) -> tuple[str, Session]:
        secret = secrets.token_urlsafe(32)
        now = self.now()
        expires = now + (DASHBOARD_TTL if kind == DASHBOARD else PORTAL_TTL)
        row = WebSession(hash=hash_key(secret), kind=kind, subject=subject, created_at=now,
                         expires_at=expires)
        db.add(row)
        return secret, Session(kind, subject, expires, csrf_token(secret), row.hash)

    async def find(self, kind: str, secret: str) -> Session | None:
        """The live session of ``kind`` behind a cookie's ``secret``, if any."""
        if not secret or len(secret) > 100:
            return None
        async with self.sessions() as db:
            row = await db.get(WebSession, hash_key(secret))
        if row is None or row.kind != kind or row.expires_at <= self.now():
            return None
        return Session(row.kind, row.subject, row.expires_at, csrf_token(secret), row.hash)

    async def close(self, secret: str) -> None:
        async with self.sessions.begin() as db:
            await db.execute(delete(WebSession).where(WebSession.hash == hash_key(secret)))

    async def close_by_hash(self, kind: str, subject: str, id_hash: str) -> bool:
        """End one session of ``subject`` (the dashboard ends a customer's portal session)."""
        async with self.sessions.begin() as db:
            done = await db.execute(delete(WebSession).where(
                WebSession.hash == id_hash, WebSession.kind == kind,
                WebSession.subject == subject))
        return bool(getattr(done, "rowcount", 0))

    async def of_subject(self, kind: str, subject: str) -> list[Session]:
        """The live sessions of ``subject`` (their CSRF tokens are not known: left empty)."""
        async with self.sessions() as db:
            rows = (await db.scalars(select(WebSession).where(
                WebSession.kind == kind, WebSession.subject == subject,
                WebSession.expires_at > self.now()).order_by(WebSession.created_at))).all()
        return [Session(r.kind, r.subject, r.expires_at, "", r.hash) for r in rows]

    async def prune(self) -> None:
        """Forget expired sessions and links (links: kept a day for the audit's sake)."""
        now = self.now()
        async with self.sessions.begin() as db:
            await db.execute(delete(WebSession).where(WebSession.expires_at <= now))
            await db.execute(delete(PortalLink).where(
                PortalLink.expires_at <= now - timedelta(days=1)))

    # -- portal links ------------------------------------------------------------------------

    async def issue_link(self, actor: str, customer_id: str) -> tuple[str, datetime]:
        """A one-time link token for ``customer_id`` (NotFound when there is no such live
        customer); audited."""
        made = new_key(LINK_PREFIX)
        now = self.now()
        expires = now + PORTAL_LINK_TTL
        async with self.sessions.begin() as db:
            customer = await db.scalar(select(Customer.id).where(
                Customer.id == customer_id, Customer.deleted_at.is_(None)))
            if customer is None:
                raise NotFound(f"no customer {customer_id!r}", "customer_id")
            db.add(PortalLink(hash=made.hash, customer_id=customer_id, created_at=now,
                              expires_at=expires, used_at=None))
            db.add(AuditEvent(at=now, actor=actor, action="portal_link.create",
                              target=f"customer:{customer_id}",
                              changes={"expires_at": expires.isoformat()}))
        return made.secret, expires

    async def redeem_link(self, token: str) -> tuple[str, Session] | None:
        """Spend a link: a portal session for its customer, or None when the token is not a
        live, unused link (or its customer is gone)."""
        if not well_formed(token, LINK_PREFIX):
            return None
        now = self.now()
        async with self.sessions.begin() as db:
            spent = await db.execute(
                update(PortalLink).where(PortalLink.hash == hash_key(token),
                                         PortalLink.used_at.is_(None),
                                         PortalLink.expires_at > now)
                .values(used_at=now).returning(PortalLink.customer_id))
            customer_id = spent.scalar_one_or_none()
            if customer_id is None:
                return None
            alive = await db.scalar(select(Customer.id).where(
                Customer.id == customer_id, Customer.deleted_at.is_(None)))
            if alive is None:
                return None
            return self._add(db, PORTAL, customer_id)
