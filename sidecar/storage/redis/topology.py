"""How the sidecar reaches Redis: standalone (TCP or unix socket), Sentinel or Cluster.

redis-py's own clients do the protocol work (its asyncio Redis, Sentinel-managed pool and
RedisCluster with its slot map, MOVED/ASK handling and topology refresh); this module only
decides *where* each command of a round trip goes and keeps that bounded:

- an ``Endpoint`` is one place a pipeline can be sent to — the standalone server, the master a
  Sentinel names, or one Cluster node — with its own circuit breaker and the REDIS_TIMEOUT
  deadline around each round trip;
- a ``Topology`` groups a round trip's commands per endpoint and runs the groups concurrently,
  so N descriptors spread over a Cluster cost one round trip, not N (the reference's #1149).

Every redis-py / socket exception becomes StorageError here (or in store.py); a reply that is a
Redis error for one command stays with that command, so it fails only the request it belongs to.
The clients themselves are made in clients.py from the options of options.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.exceptions as rex
from redis.asyncio.cluster import ClusterNode, RedisCluster

from sidecar.errors import SettingsError, StorageError
from sidecar.storage.redis.breaker import Breaker, BreakerListener
from sidecar.storage.redis.clients import make_client, make_cluster_client, make_sentinel_client
from sidecar.storage.redis.options import TYPES, RedisOptions

log = logging.getLogger("sidecar.storage")

Command = tuple[Any, ...]  # ("INCRBY", key, 3), ("EVALSHA", sha, n, *keys, *argv), …

# Errors that mean "this endpoint did not really answer" (also when they come back as one
# command's reply): they fail its whole round trip and count against its breaker. Any other
# Redis error reply belongs to its command alone.
_TRANSPORT_ERRORS = (rex.ConnectionError, rex.TimeoutError, rex.ClusterDownError,
                     rex.TryAgainError, rex.AskError, rex.ReadOnlyError,
                     rex.RedisClusterException, OSError)
_ANY_ERROR = (rex.RedisError, rex.RedisClusterException, OSError)


class Endpoint:
    """One Redis server a pipeline is sent to, behind its breaker and the round-trip deadline.

    ``run`` returns one reply per command; a reply that is an exception is that command's own
    Redis error. A failed round trip (refused, reset, timed out, cluster down) raises
    StorageError and counts against the breaker. NOSCRIPT (a restarted or promoted server
    forgot the script) is answered here, per endpoint: load the script, rerun only those
    commands, within the same deadline.
    """

    def __init__(self, name: str, client: Any, breaker: Breaker, timeout: float,
                 scripts: dict[str, str], load_script: Callable[[str], Any],
                 concurrency: int, on_failure: Callable[[], None] | None = None) -> None:
        self.name = name
        self.client = client
        self.breaker = breaker
        self.timeout = timeout
        self._scripts = scripts
        self._load_script = load_script
        self._on_failure = on_failure
        # At most one round trip per pooled connection: waiting for one is then ours to
        # bound, and being busy (overload) is told apart from the endpoint failing, which
        # alone counts against the breaker. (A Cluster node's pool would fail at once.)
        self.concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)

    async def run(self, commands: Sequence[Command]) -> list[Any]:
        return list(await self.call(lambda: self._round_trip(commands)))

    async def call(self, work: Callable[[], Awaitable[Any]]) -> Any:
        """``work()`` as one round trip of this endpoint: refused at once while the breaker is
        open, bounded by the timeout, its failures translated and counted."""
        self.breaker.check()
        sent = False
        try:
            async with asyncio.timeout(self.timeout):
                async with self._slots:
                    sent = True
                    result = await work()
        except TimeoutError as exc:
            if not sent:
                raise StorageError(f"redis {self.name}: all {self.concurrency} connections "
                                   f"stayed busy for {self.timeout * 1000:.0f} ms") from exc
            self._failed()
            raise StorageError(f"redis {self.name} did not answer within "
                               f"{self.timeout * 1000:.0f} ms") from exc
        except _TRANSPORT_ERRORS as exc:
            self._failed()
            raise StorageError(f"redis {self.name} unavailable: {exc}") from exc
        except rex.RedisError as exc:
            self.breaker.success()  # it answered, with an error
            raise StorageError(f"redis error: {exc}", transient=False) from exc
        self.breaker.success()
        return result

    def _failed(self) -> None:
        self.breaker.failure()
        if self._on_failure is not None:
            self._on_failure()

    async def _round_trip(self, commands: Sequence[Command]) -> list[Any]:
        replies = await self._pipeline(commands)
        failed = [i for i, r in enumerate(replies) if isinstance(r, Exception)]
        if not failed:
            return replies
        for i in failed:
            if isinstance(replies[i], _TRANSPORT_ERRORS):
                raise replies[i]
        again = [i for i in failed if isinstance(replies[i], rex.NoScriptError)
                 and commands[i][1] in self._scripts]  # a script of ours, so we can load it
        if again:
            for sha in {commands[i][1] for i in again}:
                await self._load_script(self._scripts[sha])
            for i, reply in zip(again, await self._pipeline([commands[i] for i in again]),
                                strict=True):
                replies[i] = reply
        return replies

    async def _pipeline(self, commands: Sequence[Command]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute(raise_on_error=False))


def _key_of(command: Command) -> Any:
    """The key a command touches (EVALSHA: its first key; several share one slot)."""
    return command[3] if command[0] == "EVALSHA" else command[1]


class Topology:
    """A standalone or Sentinel-managed Redis: one endpoint for every command."""

    def __init__(self, client: Any, name: str, opts: RedisOptions, scripts: dict[str, str],
                 listener: BreakerListener | None = None, sentinels: Any = None) -> None:
        self.client = client
        self._sentinels = sentinels  # the Sentinel manager, closed with the client
        self.opts = opts
        self.scripts = scripts
        self.listener = listener
        self.endpoint = Endpoint(name, client, self._breaker(name), opts.timeout, scripts,
                                 self._load_script, max(1, opts.pool_size))

    def _breaker(self, name: str) -> Breaker:
        return Breaker(name, self.opts.breaker_failures, self.opts.breaker_cooldown,
                       self.listener)

    async def _load_script(self, source: str) -> None:
        await self.client.script_load(source)

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """One reply per command: a value, the command's own Redis error, or the StorageError
        of its endpoint's failed round trip."""
        try:
            return await self.endpoint.run(commands)
        except StorageError as exc:
            return [exc] * len(commands)

    async def mget(self, keys: Sequence[str]) -> list[Any]:
        """Values of ``keys`` (None when absent) in one round trip; StorageError on failure."""
        return list(await self.endpoint.call(lambda: self.client.mget(list(keys))))

    async def ping(self) -> None:
        await self.endpoint.call(self.client.ping)

    def breakers(self) -> list[Breaker]:
        return [self.endpoint.breaker]

    async def close(self) -> None:
        # Closing a dead pool is not an error.
        with contextlib.suppress(*_ANY_ERROR):
            await self.client.aclose()
        if self._sentinels is not None:
            with contextlib.suppress(*_ANY_ERROR):
                await self._sentinels.aclose()


class ClusterTopology(Topology):
    """A Redis Cluster: one endpoint (and breaker) per master, commands grouped by the master
    that owns their slot, the groups' pipelines run concurrently.

    The first slot map is fetched in the background (``_connect``): a cluster still forming
    has none to give, and nobody waits for it longer than the timeout meanwhile.
    """

    REFRESH_INTERVAL = 0.1  # seconds between two slot-map refreshes (or first fetches)
    CONNECT_DEADLINE = 5.0  # seconds one first fetch may take in all, whatever the seeds

    def __init__(self, client: RedisCluster, opts: RedisOptions, scripts: dict[str, str],
                 listener: BreakerListener | None = None) -> None:
        self.client = client
        self.opts = opts
        self.scripts = scripts
        self.listener = listener
        self._endpoints: dict[str, Endpoint] = {}
        self._refresh: asyncio.Task[None] | None = None
        self._refreshed_at = 0.0
        self._connecting: asyncio.Task[None] | None = None
        self._connected = False
        self._connect_error = ""
        self._next_connect = 0.0

    def _node_endpoint(self, name: str) -> Endpoint:
        endpoint = self._endpoints.get(name)
        if endpoint is None:
            async def load_script(source: str) -> None:
                node = self.client.get_node(node_name=name)
                await self.client.execute_command("SCRIPT LOAD", source, target_nodes=node)

            endpoint = self._endpoints[name] = Endpoint(
                name, self.client, self._breaker(name), self.opts.timeout, self.scripts,
                load_script, max(1, self.opts.pool_size), self._schedule_refresh)
        return endpoint

    async def _groups(self, commands: Sequence[Command]) -> dict[str, list[int]]:
        """Command indexes per owning master, from redis-py's slot map."""
        if not self._connected:
            await self._wait_connected()
        client = self.client
        try:
            async with asyncio.timeout(self.opts.timeout):
                await client.initialize()  # a no-op once the slot map is known
        except TimeoutError as exc:
            raise StorageError("redis cluster: no seed node answered within "
                               f"{self.opts.timeout * 1000:.0f} ms") from exc
        except (*_ANY_ERROR, IndexError) as exc:
            raise StorageError(f"redis cluster unavailable: {_slot_map_error(exc)}") from exc
        nodes = client.nodes_manager
        groups: dict[str, list[int]] = {}
        for i, command in enumerate(commands):
            try:
                name = nodes.get_node_from_slot(client.keyslot(_key_of(command))).name
            except _TRANSPORT_ERRORS as exc:  # a slot no master serves right now
                self._schedule_refresh()
                raise StorageError(f"redis cluster: {exc}") from exc
            groups.setdefault(name, []).append(i)
        return groups

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        try:
            groups = await self._groups(commands)
        except StorageError as exc:
            return [exc] * len(commands)
        if len(groups) == 1:
            ((name, _),) = groups.items()
            return await self._run_group(name, commands)
        parts = await asyncio.gather(*(self._run_group(name, [commands[i] for i in indexes])
                                       for name, indexes in groups.items()))
        out: list[Any] = [None] * len(commands)
        for indexes, replies in zip(groups.values(), parts, strict=True):
            for i, reply in zip(indexes, replies, strict=True):
                out[i] = reply
        return out

    async def _run_group(self, name: str, commands: Sequence[Command]) -> list[Any]:
        try:
            return await self._node_endpoint(name).run(commands)
        except StorageError as exc:
            return [exc] * len(commands)

    async def _wait_connected(self) -> None:
        """Wait (at most the timeout) for the background fetch of the first slot map, starting
        one unless one failed less than REFRESH_INTERVAL ago; StorageError until it succeeds."""
        loop = asyncio.get_running_loop()
        if self._connecting is None and loop.time() >= self._next_connect:
            self._connecting = loop.create_task(self._connect())
        if self._connecting is not None:
            try:
                async with asyncio.timeout(self.opts.timeout):
                    await asyncio.shield(self._connecting)
            except TimeoutError as exc:
                raise StorageError("redis cluster: no slot map yet after "
                                   f"{self.opts.timeout * 1000:.0f} ms") from exc
        if not self._connected:
            raise StorageError(f"redis cluster unavailable: {self._connect_error}")

    async def _connect(self) -> None:
        """Fetch the first slot map, in the background: it outlives the caller that started it,
        so a slow fetch still completes, and there is one at a time however many callers."""
        try:
            async with asyncio.timeout(self.CONNECT_DEADLINE):
                await self.client.initialize()
            self._connected = True
        except (TimeoutError, *_ANY_ERROR, IndexError) as exc:
            # A cluster still forming answers with no slot at all: redis-py then fails with
            # IndexError, after replacing its seeds by the nodes it was told of (none), and
            # has torn the client down. Start the next try from the seeds of REDIS_URL.
            self._connect_error = _slot_map_error(exc)
            self._next_connect = asyncio.get_running_loop().time() + self.REFRESH_INTERVAL
            old, self.client = self.client, make_cluster_client(self.opts)
            log.debug("redis cluster: no slot map yet: %s", self._connect_error)
            with contextlib.suppress(*_ANY_ERROR):
                await old.aclose()
        finally:
            self._connecting = None

    def _schedule_refresh(self) -> None:
        """Ask the cluster for its slot map again, in the background and not too often: after
        a failover the dead master's slots belong to a promoted replica."""
        loop = asyncio.get_running_loop()
        if self._refresh is not None and not self._refresh.done():
            return
        if loop.time() - self._refreshed_at < self.REFRESH_INTERVAL:
            return
        self._refreshed_at = loop.time()
        self._refresh = loop.create_task(self._refresh_slots())

    async def _refresh_slots(self) -> None:
        try:
            await self.client.nodes_manager.initialize()
        except (*_ANY_ERROR, IndexError) as exc:
            log.debug("redis cluster slot map refresh failed: %s", _slot_map_error(exc))

    async def mget(self, keys: Sequence[str]) -> list[Any]:
        """GETs grouped per master like any round trip (keys of several slots)."""
        replies = await self.execute([("GET", key) for key in keys])
        for reply in replies:
            if isinstance(reply, StorageError):
                raise reply
            if isinstance(reply, Exception):
                raise StorageError(f"redis error: {reply}", transient=False)
        return replies

    async def ping(self) -> None:
        """Every master must answer: a dead one makes part of the key space unreachable."""
        await self._groups([])
        await asyncio.gather(*(self._ping(node) for node in self.client.get_primaries()))

    async def _ping(self, node: ClusterNode) -> None:
        await self._node_endpoint(node.name).call(
            lambda: self.client.execute_command("PING", target_nodes=node))

    def breakers(self) -> list[Breaker]:
        return [e.breaker for e in self._endpoints.values()]

    async def close(self) -> None:
        for task in (self._refresh, self._connecting):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, *_ANY_ERROR):
                    await task
        with contextlib.suppress(*_ANY_ERROR):
            await self.client.aclose()


def _slot_map_error(exc: BaseException) -> str:
    """Why redis-py has no slot map; its IndexError means no node serves any slot yet."""
    if isinstance(exc, IndexError):
        return "no node serves any slot yet (the cluster is not formed)"
    return str(exc) or type(exc).__name__


def connect(opts: RedisOptions, scripts: dict[str, str],
            listener: BreakerListener | None = None) -> Topology:
    """The topology REDIS_TYPE names, with clients built but not yet connected."""
    if opts.type == "cluster":
        return ClusterTopology(make_cluster_client(opts), opts, scripts, listener)
    if opts.type == "sentinel":
        client, sentinels = make_sentinel_client(opts)
        return Topology(client, f"sentinel:{opts.label}", opts, scripts, listener, sentinels)
    if opts.type != "single":
        raise SettingsError(f"REDIS_TYPE={opts.type!r} is not supported; expected one of "
                            f"{', '.join(TYPES)}")
    return Topology(make_client(opts), opts.label, opts, scripts, listener)
