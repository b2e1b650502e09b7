"""What keeps the pages' sessions to their owner: cookies, same-origin checks, CSRF tokens,
response headers.

- The session cookie is HttpOnly (no script reads it), SameSite=Strict (no other site's page
  makes the browser send it), scoped to its section's path, and Secure when the request came
  over TLS or through a proxy that says so with ``X-Forwarded-Proto: https``.
- Every POST must come from this origin: ``Sec-Fetch-Site`` (when the browser sends it) must be
  same-origin, and ``Origin`` (when sent) must name this host. Every POST made with a session
  must also carry that session's CSRF token (sessions.csrf_token), compared in constant time.
- Pages carry a Content-Security-Policy that allows only this origin's scripts and styles and
  no framing, and are never cached (they show customers' data, and once a key's secret).
  The referrer goes to this origin only: "no-referrer" would make browsers send
  ``Origin: null`` with the forms' POSTs, which the same-origin check must refuse.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from aiohttp import web

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
           "Cross-Origin-Opener-Policy": "same-origin", "Cache-Control": "no-store"}


def protect(response: web.StreamResponse) -> web.StreamResponse:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def over_tls(request: web.Request) -> bool:
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https"


def origin_of(request: web.Request, public_url: str = "") -> str:
    """This service's origin as the browser sees it (VIVA_PUBLIC_URL when set)."""
    if public_url:
        return public_url
    host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip() or request.host
    return f"{'https' if over_tls(request) else 'http'}://{host}"


def same_origin(request: web.Request, public_url: str = "") -> bool:
    """Whether a state-changing request comes from one of this service's own pages."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is None:  # not a browser, or an old one: the CSRF token still has to match
        return True
    netloc = urlsplit(origin).netloc.lower()
    hosts = {request.host.lower(),
             request.headers.get("X-Forwarded-Host", "").split(",")[0].strip().lower()}
    if public_url:
        hosts.add(urlsplit(public_url).netloc.lower())
    return bool(netloc) and netloc in hosts


def token_matches(sent: str, expected: str) -> bool:
    return bool(sent) and hmac.compare_digest(sent.encode(), expected.encode())


def set_cookie(response: web.StreamResponse, request: web.Request, name: str, value: str,
               path: str, max_age: int) -> None:
    response.set_cookie(name, value, path=path, max_age=max_age, httponly=True,
                        samesite="Strict", secure=over_tls(request))


def clear_cookie(response: web.StreamResponse, request: web.Request, name: str,
                 path: str) -> None:
    response.set_cookie(name, "", path=path, max_age=0, httponly=True, samesite="Strict",
                        secure=over_tls(request))
