"""The usage endpoints of the admin API (root key, as every admin call).

    POST /v1/usage/events   usage:write   up to 1,000 events → {accepted, duplicates, rejected}
    GET  /v1/usage          usage:read    ?customer_id=&key_id=&meter=&from=&to=&granularity=
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import cast

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sidecar.management.admin import RootKeys, guarded, read_body, reply
from sidecar.management.billing.period import Period
from sidecar.management.db.models import ApiKey, Customer
from sidecar.management.errors import Invalid, NotFound
from sidecar.management.plans import PlanSet
from sidecar.management.usage import schemas as u
from sidecar.management.usage.events import EventIngest
from sidecar.management.usage.series import Query, meter_of, read_series

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
EVENTS_BODY_BYTES = 1 << 20  # 1,000 events of about 1 KiB each
GRANULARITIES = ("hour", "day", "month")
SERIES_QUERY = ("customer_id", "key_id", "meter", "from", "to", "granularity")


class UsageApi:
    def __init__(self, ingest: EventIngest, sessions: async_sessionmaker[AsyncSession],
                 plans: Callable[[], PlanSet | None], roots: RootKeys,
                 clock: Callable[[], float], max_body: int) -> None:
        self.ingest = ingest
        self.sessions = sessions
        self.plans = plans
        self.roots = roots
        self.clock = clock
        self.max_body = max(max_body, EVENTS_BODY_BYTES)

    def register(self, app: web.Application,
                 measured: Callable[[Handler, str], Handler]) -> None:
        app.router.add_post("/v1/usage/events", measured(guarded(self.events, ()), "admin"))
        app.router.add_get("/v1/usage", measured(guarded(self.series, SERIES_QUERY), "admin"))

    async def events(self, request: web.Request) -> web.Response:
        self.roots.actor(request, "usage:write")
        items = await read_body(request, u.UsageEvents, self.max_body)
        return reply(await self.ingest.ingest(items))

    async def series(self, request: web.Request) -> web.Response:
        self.roots.actor(request, "usage:read")
        q = request.query
        customer_id, key_id = id_param(request, "customer_id"), id_param(request, "key_id")
        if customer_id is None and key_id is None:
            raise Invalid("give customer_id, key_id or both", "customer_id")
        granularity = q.get("granularity", "day")
        if granularity not in GRANULARITIES:
            raise Invalid(f"{granularity[:20]!r} is not a granularity; expected hour, day or "
                          "month", "granularity")
        now = datetime.fromtimestamp(self.clock(), UTC)
        start = _time(q.get("from"), "from") or Period.of(now).start
        end = _time(q.get("to"), "to") or now
        if end <= start:
            raise Invalid("to must be after from", "to")
        plans = self.plans()
        meter = meter_of(q.get("meter", "requests"), plans.meters if plans else {})
        query = Query(customer_id, key_id, meter, start, end, cast(u.Granularity, granularity))
        async with self.sessions() as session:
            await _known(session, customer_id, key_id)
            return reply(await read_series(session, query))


def id_param(request: web.Request, name: str) -> str | None:
    """A customer or key id from the query (None when absent or empty); 400 for text no id
    can be (an id is at most 64 characters, without NUL)."""
    text = request.query.get(name) or None
    if text is not None and (len(text) > 64 or "\x00" in text):
        raise Invalid("not an id: at most 64 characters, without NUL", name)
    return text


def _time(text: str | None, field: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or not 2000 <= moment.year <= 9998:
        raise Invalid(f"{text[:40]!r} is not a time; expected RFC 3339 with a zone, such as "
                      "2026-12-01T00:00:00Z", field)
    return moment.astimezone(UTC)


async def _known(session: AsyncSession, customer_id: str | None, key_id: str | None) -> None:
    if customer_id is not None and await session.get(Customer, customer_id) is None:
        raise NotFound(f"no customer {customer_id[:64]!r}", "customer_id")
    if key_id is not None and await session.get(ApiKey, key_id) is None:
        raise NotFound(f"no key {key_id[:64]!r}", "key_id")
