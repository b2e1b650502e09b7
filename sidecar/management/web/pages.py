"""What every page of a section (the dashboard, the portal) shares: finding the session
behind the cookie, refusing cross-site and token-less POSTs, and turning failures into pages.

    page(handler)    GET:  session → handler(request, visit)
    action(handler)  POST: same origin → session → CSRF token → handler(request, visit, form)

A handler raises the admin API's errors (NotFound, Invalid, Conflict, Forbidden); they become
an error page with the same status and message the JSON API would give.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar

from aiohttp import web
from multidict import MultiDictProxy

from sidecar.management.admin import is_database_error
from sidecar.management.errors import AdminError
from sidecar.management.web.render import Renderer
from sidecar.management.web.security import (
    clear_cookie,
    protect,
    same_origin,
    set_cookie,
    token_matches,
)
from sidecar.management.web.sessions import (
    DASHBOARD,
    DASHBOARD_TTL,
    PORTAL_TTL,
    Session,
    SessionStore,
)

log = logging.getLogger("sidecar.web")

V = TypeVar("V")
Form = MultiDictProxy[Any]
Page = Callable[[web.Request, V], Awaitable[web.StreamResponse]]
Action = Callable[[web.Request, V, Form], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Route = Callable[[str, str, Handler], None]  # add(method, path, handler)
MAX_FORM_BYTES = 64 * 1024


class CrossSite(Exception):
    """A POST from another origin, or without its session's CSRF token."""


class Section(ABC, Generic[V]):
    """One signed-in area of the site, under ``path``, with its own cookie."""

    kind: str
    cookie: str
    path: str
    title: str

    def __init__(self, store: SessionStore, renderer: Renderer, public_url: str) -> None:
        self.store = store
        self.renderer = renderer
        self.public_url = public_url

    @abstractmethod
    async def visit(self, request: web.Request, session: Session) -> V | None:
        """What the pages need of the signed-in party; None when it may no longer sign in."""

    @abstractmethod
    def signed_out(self, request: web.Request) -> web.StreamResponse:
        """The answer to a request without a live session."""

    def render(self, template: str, visit: V | None, status: int = 200,
               **context: Any) -> web.Response:
        return self.renderer.page(template, status, visit=visit, section=self, **context)

    async def session(self, request: web.Request) -> Session | None:
        return await self.store.find(self.kind, request.cookies.get(self.cookie, ""))

    def start(self, request: web.Request, secret: str, to: str) -> web.StreamResponse:
        """Redirect into the section with a new session's cookie."""
        response = protect(web.HTTPSeeOther(to))
        ttl = DASHBOARD_TTL if self.kind == DASHBOARD else PORTAL_TTL
        set_cookie(response, request, self.cookie, secret, self.path,
                   int(ttl.total_seconds()))
        return response

    def end(self, request: web.Request, to: str) -> web.StreamResponse:
        response = protect(web.HTTPSeeOther(to))
        clear_cookie(response, request, self.cookie, self.path)
        return response

    # -- wrappers ----------------------------------------------------------------------------

    def page(self, handler: Page[V]) -> Handler:
        async def run(request: web.Request) -> web.StreamResponse:
            visit: V | None = None
            try:
                session = await self.session(request)
                visit = None if session is None else await self.visit(request, session)
                if visit is None:
                    return self.signed_out(request)
                return await handler(request, visit)
            except Exception as exc:  # every failure becomes a page
                return self.failed(exc, visit)

        return run

    def action(self, handler: Action[V]) -> Handler:
        async def run(request: web.Request) -> web.StreamResponse:
            visit: V | None = None
            try:
                if not same_origin(request, self.public_url):
                    raise CrossSite("this form was sent from another site")
                session = await self.session(request)
                visit = None if session is None else await self.visit(request, session)
                if session is None or visit is None:
                    return self.signed_out(request)
                form = await self.form(request)
                if not token_matches(str(form.get("csrf", "")), session.csrf):
                    raise CrossSite("the form's security token is missing or stale; reload "
                                    "the page and try again")
                return await handler(request, visit, form)
            except Exception as exc:  # every failure becomes a page
                return self.failed(exc, visit)

        return run

    async def form(self, request: web.Request) -> Form:
        if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_FORM_BYTES,
                                                actual_size=request.content_length)
        return await request.post()

    def failed(self, exc: Exception, visit: V | None) -> web.StreamResponse:
        if isinstance(exc, web.HTTPException):
            return protect(exc)
        if isinstance(exc, CrossSite):
            return self.error(visit, 403, "Request refused", str(exc))
        if isinstance(exc, AdminError):
            titles = {400: "Not accepted", 401: "Not signed in", 403: "Not allowed",
                      404: "Not found", 409: "Not possible now"}
            return self.error(visit, exc.status, titles.get(exc.status, "Error"), exc.message,
                              exc.field)
        if is_database_error(exc):
            log.error("catalog database error on a page: %s", type(exc).__name__)
            return self.error(visit, 503, "Unavailable",
                              "The catalog database is unavailable; try again shortly.")
        log.exception("unexpected error on a page", exc_info=exc)
        return self.error(visit, 500, "Error", "Something went wrong; see the service log.")

    def error(self, visit: V | None, status: int, title: str, message: str,
              field: str | None = None) -> web.StreamResponse:
        try:
            return self.render("error.html", visit, status, title=title, message=message,
                               field=field)
        except Exception:  # a broken error page must still answer
            log.exception("cannot render the error page")
            return protect(web.Response(text=f"{title}: {message}", status=status))


def query(request: web.Request, name: str, limit: int = 200) -> str:
    value = request.query.get(name, "")
    return value[:limit]


def one_of(value: str, allowed: Mapping[str, Any], default: str) -> str:
    return value if value in allowed else default
