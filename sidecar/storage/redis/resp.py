"""One connection to a standalone Redis that only moves RESP bytes: the native engine's link.

The native engine (``sidecar._native``) encodes the store calls of a whole batch of requests
as one pipeline and decodes the replies itself; this connection sends each pipeline as it
comes and hands back the bytes of its replies. Several pipelines may be on the wire at once:
Redis answers them in order, so each waits its turn for its ``expected`` replies, found by a
reply counter the caller gives (the extension's ``reply_end``).

It connects as RedisOptions say (TCP, a unix socket or TLS; AUTH and SELECT once connected;
the credentials and database of a ``redis://user:password@host/db`` URL win, as in redis-py),
lazily and again after any failure. A round trip (connecting included) not answered within
the timeout fails with StorageError, and so does every round trip still on that connection,
which is closed: their replies could no longer be told apart.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from sidecar.errors import SettingsError, StorageError
from sidecar.storage.redis.options import RedisOptions, redis_url

# Where the ``count``-th RESP reply from ``start`` ends in ``data``, or None while incomplete;
# ValueError when the bytes are not RESP.
ReplyEnd = Callable[[bytes, int, int], int | None]


class Address(NamedTuple):
    host: str  # or the unix socket's path
    port: int  # 0: a unix socket
    tls: bool
    username: str
    password: str
    db: int


def address_of(opts: RedisOptions) -> Address:
    """Where and how to connect, from ``opts.url`` in any of the reference's forms."""
    url = urlsplit(redis_url(opts))
    user, sep, password = opts.auth.partition(":")
    username, password = (user, password) if sep else ("", user)
    if url.password is not None or url.username:
        username, password = unquote(url.username or ""), unquote(url.password or "")
    db = opts.db
    query = dict(part.partition("=")[::2] for part in url.query.split("&") if part)
    text = query.get("db", "")
    if url.scheme != "unix":
        text = text or url.path.strip("/")
    if text:
        if not text.isdigit():
            raise SettingsError(f"REDIS_URL {opts.url!r}: database {text!r} is not a number")
        db = int(text)
    if url.scheme == "unix":
        return Address(unquote(url.path), 0, False, username, password, db)
    if url.scheme not in ("redis", "rediss") or not url.hostname:
        raise SettingsError(f"REDIS_URL {opts.url!r} is not a Redis URL; expected host:port, "
                            "a unix socket path, or a redis://, rediss:// or unix:// URL")
    return Address(url.hostname, url.port or 6379, url.scheme == "rediss" or opts.tls,
                   username, password, db)


def tls_context(opts: RedisOptions) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=opts.tls_ca or None)
    if opts.tls_cert:
        context.load_cert_chain(opts.tls_cert, opts.tls_key or None)
    if opts.tls_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def command(*args: bytes) -> bytes:
    """One command in RESP (for the few this module sends itself)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


class RespConnection:
    """Round trips of raw RESP pipelines to one Redis endpoint."""

    def __init__(self, opts: RedisOptions, reply_end: ReplyEnd) -> None:
        self.address = address_of(opts)
        self.label = opts.label
        self.timeout = opts.timeout
        self._tls = tls_context(opts) if self.address.tls else None
        self._reply_end = reply_end
        self._link: _Link | None = None
        self._connecting: asyncio.Task[_Link] | None = None

    async def round_trip(self, commands: bytes, expected: int) -> bytes:
        """The bytes of the ``expected`` replies to ``commands``; StorageError when Redis
        cannot be reached or does not answer within the timeout."""
        link = None
        try:
            async with asyncio.timeout(self.timeout):
                link = await self._connected()
                return await link.send(commands, expected)
        except TimeoutError:
            if link is not None:
                link.close(StorageError(f"redis {self.label} did not answer within "
                                        f"{self.timeout * 1000:g} ms"))
            raise StorageError(f"redis {self.label} did not answer within "
                               f"{self.timeout * 1000:g} ms") from None

    async def ping(self) -> None:
        """StorageError unless Redis answers PING."""
        reply = await self.round_trip(command(b"PING"), 1)
        if not reply.startswith(b"+PONG"):
            raise StorageError(f"redis {self.label}: unexpected answer to PING: {reply[:60]!r}")

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self._link is not None:
            self._link.close(StorageError(f"redis {self.label}: connection closed"))
            self._link = None

    async def _connected(self) -> _Link:
        link = self._link
        if link is not None and not link.closed:
            return link
        if self._connecting is None:
            # One connection attempt shared by every round trip that needs it; a caller's
            # timeout does not cancel it for the others.
            self._connecting = asyncio.get_running_loop().create_task(self._connect())
            self._connecting.add_done_callback(self._connected_done)
        return await asyncio.shield(self._connecting)

    def _connected_done(self, task: asyncio.Task[_Link]) -> None:
        self._connecting = None
        if not task.cancelled() and task.exception() is None:
            self._link = task.result()

    async def _connect(self) -> _Link:
        loop = asyncio.get_running_loop()
        a = self.address
        factory = lambda: _Link(self._reply_end, self.label)  # noqa: E731
        try:
            if a.port == 0:
                _, link = await loop.create_unix_connection(factory, a.host)
            else:
                _, link = await loop.create_connection(
                    factory, a.host, a.port, ssl=self._tls,
                    server_hostname=a.host if self._tls is not None else None)
        except (OSError, ssl.SSLError) as exc:
            raise StorageError(f"redis {self.label}: cannot connect: {exc}") from None
        await self._handshake(link)
        return link

    async def _handshake(self, link: _Link) -> None:
        a = self.address
        steps: list[tuple[bytes, bytes]] = []
        if a.password or a.username:
            auth = (b"AUTH", a.username.encode(), a.password.encode()) if a.username \
                else (b"AUTH", a.password.encode())
            steps.append((command(*auth), b"AUTH"))
        if a.db:
            steps.append((command(b"SELECT", str(a.db).encode()), b"SELECT"))
        for cmd, name in steps:
            reply = await link.send(cmd, 1)
            if not reply.startswith(b"+OK"):
                link.close(StorageError(f"redis {self.label}: {name.decode()} refused"))
                # Not transient: wrong credentials or database stay wrong.
                raise StorageError(f"redis {self.label}: {name.decode()} refused: "
                                   f"{reply.strip().decode(errors='replace')}", transient=False)


class _Link(asyncio.Protocol):
    """The socket: pipelines out, replies back to their round trips in order."""

    def __init__(self, reply_end: ReplyEnd, label: str) -> None:
        self._reply_end = reply_end
        self._label = label
        self._transport: asyncio.Transport | None = None
        self._waiting: collections.deque[tuple[int, asyncio.Future[bytes]]] = \
            collections.deque()
        self._buffer = b""
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def send(self, commands: bytes, expected: int) -> asyncio.Future[bytes]:
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        if self.closed or self._transport is None:
            future.set_exception(StorageError(f"redis {self._label}: connection closed"))
            return future
        self._waiting.append((expected, future))
        self._transport.write(commands)
        return future

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        while self._waiting:
            expected, future = self._waiting[0]
            try:
                end = self._reply_end(buffer, expected, 0)
            except ValueError as exc:
                self.close(StorageError(f"redis {self._label}: unreadable reply: {exc}",
                                        transient=False))
                return
            if end is None:
                break
            self._waiting.popleft()
            if not future.done():
                future.set_result(buffer[:end])
            buffer = buffer[end:]
        self._buffer = buffer

    def connection_lost(self, exc: Exception | None) -> None:
        why = f": {exc}" if exc is not None else ""
        self.close(StorageError(f"redis {self._label}: connection lost{why}"))

    def close(self, error: StorageError) -> None:
        """Fail every round trip still waiting and drop the socket."""
        self.closed = True
        while self._waiting:
            _, future = self._waiting.popleft()
            if not future.done():
                future.set_exception(error)
        if self._transport is not None:
            self._transport.abort()
            self._transport = None
