"""Where webhooks may be sent: the URL checked at create and update, every address checked
again at delivery (server-side request forgery).

A webhook URL is http or https, names a host that resolves, and carries no credentials. Unless
VIVA_WEBHOOKS_ALLOW_PRIVATE=true, every address its host resolves to must be public: loopback,
private, link-local (cloud metadata services), multicast, reserved and unspecified addresses
are refused, also when embedded in IPv6 (IPv4-mapped, 6to4, NAT64). The check runs again
when a delivery connects, on the very addresses it connects to (GuardedResolver), so a name
that resolved to a public address when the webhook was made and to an internal one later (DNS
rebinding) is refused then. Redirects are never followed (sender.py).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

ALLOW_HINT = "set VIVA_WEBHOOKS_ALLOW_PRIVATE=true to allow private targets"
RESOLVE_SECONDS = 5.0
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetError(ValueError):
    """A webhook URL that is not acceptable; the message says why."""


class TargetRefused(OSError):
    """A delivery's host resolved to an address webhooks may not reach (an OSError, so the
    HTTP client treats it as a failed connection)."""


def _embedded(ip: IPAddress) -> IPAddress | None:
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.ipv4_mapped or ip.sixtofour


def address_problem(address: str) -> str | None:
    """Why webhooks may not reach ``address`` (None: a public address)."""
    ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])  # no IPv6 zone
    inner = _embedded(ip)
    if inner is not None:
        problem = address_problem(str(inner))
        return f"{address} embeds {problem}" if problem else None
    for kind, found in (("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
                        ("multicast", ip.is_multicast), ("unspecified", ip.is_unspecified),
                        ("reserved", ip.is_reserved), ("private", ip.is_private)):
        if found:
            return f"{address} is a {kind} address"
    return None if ip.is_global else f"{address} is not a public address"


def check_url(url: str) -> SplitResult:
    """``url`` parsed; TargetError naming what is wrong with it."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise TargetError("the URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise TargetError("not a URL; expected e.g. https://example.com/webhooks") from None
    if parts.scheme not in ("http", "https"):
        raise TargetError(f"scheme {parts.scheme or 'none'!r} is not allowed; expected http "
                          "or https")
    if not parts.hostname:
        raise TargetError("the URL names no host; expected e.g. https://example.com/webhooks")
    if parts.username is not None or parts.password is not None:
        raise TargetError("credentials in the URL (user:password@) are not accepted: they "
                          "would be stored in clear; expected a URL without them")
    return parts


async def resolve(host: str, port: int) -> list[str]:
    """Every address of ``host`` (an empty list when it does not resolve in time)."""
    loop = asyncio.get_running_loop()
    try:
        found = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_SECONDS)
    except (OSError, TimeoutError, UnicodeError):
        return []
    return list(dict.fromkeys(str(info[4][0]) for info in found))


async def validate_url(url: str, allow_private: bool) -> str:
    """``url`` if webhooks may be sent there now; TargetError otherwise."""
    parts = check_url(url)
    host = parts.hostname or ""
    addresses = await resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
    if not addresses:
        raise TargetError(f"host {host!r} does not resolve; expected a name or address that "
                          "does")
    if not allow_private:
        for address in addresses:
            problem = address_problem(address)
            if problem:
                raise TargetError(f"host {host!r} resolves to {problem}; {ALLOW_HINT}")
    return url


def refuse_literal(host: str) -> None:
    """TargetRefused when ``host`` is an address literal webhooks may not reach (the HTTP
    client connects to a literal without asking the resolver)."""
    try:
        problem = address_problem(host.strip("[]"))
    except ValueError:
        return  # a name: GuardedResolver checks what it resolves to
    if problem:
        raise TargetRefused(f"refused: {problem}; {ALLOW_HINT}")


class GuardedResolver(AbstractResolver):
    """The HTTP client's resolver, refusing a host when any of its addresses is not public."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self.inner = inner or DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        for result in results:
            problem = address_problem(result["host"])
            if problem:
                raise TargetRefused(f"refused: {host} resolves to {problem}; {ALLOW_HINT}")
        return results

    async def close(self) -> None:
        await self.inner.close()
