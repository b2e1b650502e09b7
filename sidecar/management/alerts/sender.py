"""One delivery attempt over HTTP: POST the event's body with its Standard Webhooks headers,
bounded by VIVA_WEBHOOKS_TIMEOUT. A 2xx answer delivers; anything else is a failed attempt,
a redirect too (it is never followed: a redirect could point anywhere, past the address
checks). Errors name the host at most, never the URL's path or query, which may hold a token
of the receiver's."""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from aiohttp.resolver import DefaultResolver

from sidecar.management.alerts.targets import GuardedResolver, TargetRefused, refuse_literal

USER_AGENT = "viva-ratelimit-webhooks/1"
OUTCOMES = ("delivered", "http_error", "timeout", "network_error", "refused")
MAX_ERROR = 300
_DRAIN_BYTES = 4096  # of the receiver's answer, read then dropped


@dataclass(frozen=True, slots=True)
class AttemptResult:
    outcome: str  # one of OUTCOMES
    status_code: int | None
    error: str | None
    duration: float  # seconds

    @property
    def delivered(self) -> bool:
        return self.outcome == "delivered"


class Sender:
    def __init__(self, timeout: float, allow_private: bool, connections: int) -> None:
        self.timeout = timeout
        self.allow_private = allow_private
        self.connections = connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            resolver = DefaultResolver() if self.allow_private else GuardedResolver()
            connector = aiohttp.TCPConnector(resolver=resolver, limit=self.connections)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"User-Agent": USER_AGENT}, auto_decompress=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, url: str, headers: dict[str, str], body: bytes) -> AttemptResult:
        """Never raises: every way an attempt can end is an AttemptResult."""
        started = time.perf_counter()
        try:
            status = await self._post(url, headers, body)
        except TargetRefused as exc:
            return _failed("refused", str(exc), started)
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, TargetRefused):
                return _failed("refused", str(exc.os_error), started)
            return _failed("network_error", f"cannot connect to {exc.host}:{exc.port}: "
                           f"{exc.os_error.strerror or type(exc.os_error).__name__}", started)
        except TimeoutError:
            return _failed("timeout", f"no answer within {self.timeout:g}s", started)
        except (aiohttp.ClientError, OSError) as exc:
            return _failed("network_error", scrub(f"{type(exc).__name__}: {exc}", url),
                           started)
        duration = time.perf_counter() - started
        if 200 <= status < 300:
            return AttemptResult("delivered", status, None, duration)
        reason = "a redirect, not followed" if 300 <= status < 400 else f"HTTP {status}"
        return AttemptResult("http_error", status, f"the receiver answered {reason}", duration)

    async def _post(self, url: str, headers: dict[str, str], body: bytes) -> int:
        if not self.allow_private:
            refuse_literal(urlsplit(url).hostname or "")
        async with self._client().post(url, data=body, headers=headers,
                                       allow_redirects=False) as response:
            await response.content.read(_DRAIN_BYTES)
            return response.status


def scrub(text: str, url: str) -> str:
    """``text`` without the URL's path and query (some client errors quote the URL)."""
    parts = urlsplit(url)
    for private in sorted((parts.path, parts.query), key=len, reverse=True):
        if len(private) > 1:
            text = text.replace(private, "/…")
    return text


def _failed(outcome: str, error: str, started: float) -> AttemptResult:
    return AttemptResult(outcome, None, error[:MAX_ERROR], time.perf_counter() - started)

