"""Real Redis topologies for tests: a 3x2 Redis Cluster and a Sentinel-monitored pair.

Everything runs on free loopback ports from throw-away directories and is torn down
by ``stop()`` (and, as a last resort, at interpreter exit).  No redis-cli is needed:
the cluster is assembled with plain commands (CLUSTER ADDSLOTSRANGE / MEET /
REPLICATE) and sentinels are ``redis-server <conf> --sentinel``.

Fixtures (hook them into conftest.py with
``from tests.topologies import redis_cluster, redis_sentinel  # noqa: F401``):

* ``redis_cluster`` -- a healthy, flushed :class:`RedisCluster` for each test; one
  cluster is shared by the session and rebuilt only after a test damaged it
  (killed/paused a node, forced a failover).
* ``redis_sentinel`` -- the same for :class:`RedisSentinel`; tests may call
  ``kill_master()`` freely, the next test gets a fresh topology.
"""

from __future__ import annotations

import atexit
import contextlib
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest

from tests.support.ports import eventually, free_port, wait_port
from tests.support.processes import stop_process
from tests.support.servers import missing, redis_binary

HOST = "127.0.0.1"
SLOTS = 16384

# Redis 7 defaults to a 5 s delay before a diskless full sync: replicas would need
# seconds to attach.  Common to every data node of both topologies.
# Valkey 9 also hands a disk-bound RDB to a bio thread whose completion the main thread
# notices only in its 1 Hz cron: load straight from the socket instead.
_FAST_REPLICATION = ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
                     "--repl-diskless-load", "swapdb"]

_LIVE: set[Node] = set()


def _ports(n: int) -> list[int]:
    """``n`` distinct free ports (free_port() may hand out the same port twice)."""
    out: list[int] = []
    while len(out) < n:
        port = free_port()
        if port not in out:
            out.append(port)
    return out


def _client(port: int, **kwargs: Any) -> Any:
    import redis

    return redis.Redis(host=HOST, port=port, decode_responses=True,
                       socket_timeout=2, socket_connect_timeout=2, **kwargs)


def _info(text: str) -> dict[str, str]:
    """Parse the ``key:value`` lines of CLUSTER INFO (a plain string reply)."""
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def _binary() -> str:
    binary = redis_binary()
    if binary is None:
        missing("redis-server")
    return str(binary)


class Node:
    """One redis-server (data node or sentinel) process on a loopback port."""

    def __init__(self, argv: list[str], port: int, role: str, log: Path) -> None:
        self.argv = argv
        self.port = port
        self.role = role  # "master" / "replica" / "sentinel"; updated on failover
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False

    def __repr__(self) -> str:
        state = "paused" if self.paused else "up" if self.alive else "down"
        return f"<Node {self.role} {self.address} {state}>"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self) -> Node:
        """Start the process without waiting for its port."""
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.paused = False
        _LIVE.add(self)
        return self

    def wait(self, timeout: float = 10.0) -> None:
        try:
            wait_port(self.port, timeout=timeout, proc=self.proc)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{self!r} did not start: {exc}\n{self.log_tail()}") from exc

    def start(self) -> Node:
        self.spawn().wait()
        return self

    def restart(self) -> Node:
        """Start again on the same port and config (a cluster node keeps its id)."""
        self.stop()
        return self.start()

    def kill(self) -> None:
        """SIGKILL: the node vanishes without closing anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.paused = False
        _LIVE.discard(self)

    def pause(self) -> None:
        """SIGSTOP: the port stays open but nothing answers (a hung server)."""
        assert self.alive, self
        self.proc.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
        self.paused = True

    def resume(self) -> None:
        assert self.alive, self
        self.proc.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
        self.paused = False

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)  # sends SIGCONT first, so paused nodes stop too
        self.paused = False
        _LIVE.discard(self)

    def client(self, **kwargs: Any) -> Any:
        """A plain (non-cluster) redis-py client for this one node."""
        return _client(self.port, **kwargs)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@atexit.register
def _stop_leftovers() -> None:
    for node in list(_LIVE):
        node.stop()


def _start_all(nodes: list[Node]) -> None:
    for node in nodes:
        node.spawn()
    for node in nodes:
        node.wait()


# --------------------------------------------------------------------- cluster


class ClusterNode(Node):
    def __init__(self, binary: str, port: int, bus_port: int, role: str, directory: Path,
                 node_timeout_ms: int) -> None:
        log = directory / f"redis-{port}.log"
        super().__init__(
            [binary, "--port", str(port), "--bind", HOST, "--dir", str(directory),
             "--logfile", str(log), "--save", "", "--appendonly", "no",
             "--cluster-enabled", "yes", "--cluster-port", str(bus_port),
             "--cluster-config-file", str(directory / f"nodes-{port}.conf"),
             "--cluster-node-timeout", str(node_timeout_ms), *_FAST_REPLICATION],
            port, role, log)
        self.bus_port = bus_port
        self.node_id = ""
        self.master_id: str | None = None  # for replicas: the node id they follow


class RedisCluster:
    """``masters`` masters with ``replicas`` replica(s) each, slots split evenly.

    ``startup_nodes`` is the reference's REDIS_URL for REDIS_TYPE=cluster.
    """

    def __init__(self, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 1000,
                 binary: str | None = None) -> None:
        self.binary = binary or _binary()
        self.node_timeout_ms = node_timeout_ms
        self.dir = Path(tempfile.mkdtemp(prefix="viva-cluster-"))
        count = masters * (1 + replicas)
        ports = _ports(2 * count)
        self.nodes: list[ClusterNode] = [
            ClusterNode(self.binary, ports[i], ports[count + i],
                        "master" if i < masters else "replica", self.dir, node_timeout_ms)
            for i in range(count)]
        self._masters = masters

    def __repr__(self) -> str:
        return f"<RedisCluster {self.nodes}>"

    # -- addresses and views

    @property
    def startup_nodes(self) -> str:
        return ",".join(node.address for node in self.nodes)

    @property
    def masters(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.role == "master"]

    @property
    def replicas(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.role == "replica"]

    def replicas_of(self, master: ClusterNode) -> list[ClusterNode]:
        return [n for n in self.nodes if n.role == "replica" and n.master_id == master.node_id]

    def node_for_key(self, key: str) -> ClusterNode:
        """The master currently serving ``key`` (asked of a live node)."""
        slot = self.live_nodes()[0].client().cluster("keyslot", key)
        return self.node_for_slot(int(slot))

    def node_for_slot(self, slot: int) -> ClusterNode:
        for start, end, master, *_ in self.live_nodes()[0].client().execute_command(
                "CLUSTER", "SLOTS"):
            if int(start) <= slot <= int(end):
                return self._by_port(int(master[1]))
        raise LookupError(f"slot {slot} is not served")

    def live_nodes(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.alive and not n.paused]

    def client(self, **kwargs: Any) -> Any:
        """A redis-py RedisCluster client on all startup nodes."""
        from redis.cluster import ClusterNode as Startup
        from redis.cluster import RedisCluster as Client

        kwargs.setdefault("decode_responses", True)
        kwargs.setdefault("socket_timeout", 2)
        kwargs.setdefault("socket_connect_timeout", 2)
        nodes = [Startup(HOST, n.port) for n in self.nodes]  # type: ignore[no-untyped-call]
        return Client(startup_nodes=nodes, **kwargs)

    def _by_port(self, port: int) -> ClusterNode:
        return next(n for n in self.nodes if n.port == port)

    # -- lifecycle

    def start(self, timeout: float = 15.0) -> RedisCluster:
        try:
            _start_all(self.nodes)  # type: ignore[arg-type]
            self._assemble(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def start_unformed(self) -> RedisCluster:
        """Start every node without forming the cluster, as a deployment being created looks:
        each node serves no slot and knows no peer until ``form()``."""
        try:
            _start_all(self.nodes)  # type: ignore[arg-type]
        except BaseException:
            self.stop()
            raise
        return self

    def form(self, timeout: float = 15.0) -> None:
        """Form the cluster of nodes started by ``start_unformed()``; returns once healthy."""
        self._assemble(timeout)

    def _assemble(self, timeout: float) -> None:
        masters, replicas = self.nodes[:self._masters], self.nodes[self._masters:]
        clients = {n.port: n.client() for n in self.nodes}
        try:
            for epoch, node in enumerate(self.nodes, 1):
                c = clients[node.port]
                node.node_id = c.execute_command("CLUSTER", "MYID")
                # Distinct epochs up front, as redis-cli does: no epoch collisions to resolve.
                c.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
            for i, node in enumerate(masters):
                first, last = i * SLOTS // len(masters), (i + 1) * SLOTS // len(masters) - 1
                clients[node.port].execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
            seed = clients[masters[0].port]
            for node in self.nodes[1:]:
                seed.execute_command("CLUSTER", "MEET", HOST, node.port, node.bus_port)

            ids = {n.node_id for n in self.nodes}

            def everyone_knows_everyone() -> bool:
                for c in clients.values():
                    known = {n["node_id"] for n in self._nodes_view(c)
                             if "handshake" not in n["flags"] and "noaddr" not in n["flags"]}
                    if known != ids:
                        return False
                return True

            eventually(everyone_knows_everyone, timeout=timeout)
            for i, node in enumerate(replicas):
                master = masters[i % len(masters)]
                clients[node.port].execute_command("CLUSTER", "REPLICATE", master.node_id)
                node.master_id = master.node_id
            self.wait_healthy(timeout)
        finally:
            for c in clients.values():
                c.close()

    @staticmethod
    def _nodes_view(client: Any) -> list[dict[str, Any]]:
        """CLUSTER NODES parsed by hand (stable across redis-py response callbacks)."""
        raw = client.execute_command("CLUSTER", "NODES")
        if isinstance(raw, dict):  # some redis-py versions pre-parse it
            return [{"node_id": v["node_id"], "flags": v["flags"], "master_id": v["master_id"],
                     "address": k.split("@")[0]} for k, v in raw.items()]
        out = []
        for line in str(raw).splitlines():
            parts = line.split()
            if len(parts) >= 8:
                out.append({"node_id": parts[0], "address": parts[1].split("@")[0],
                            "flags": parts[2], "master_id": parts[3]})
        return out

    def health_problem(self) -> str | None:
        """Why the cluster is not in its fully healthy shape, or None if it is."""
        if any(not n.alive or n.paused for n in self.nodes):
            return "a node is down or paused"
        expected_replicas = len(self.nodes) - self._masters
        try:
            for node in self.nodes:
                c = node.client()
                try:
                    info = _info(c.execute_command("CLUSTER", "INFO"))
                    if info.get("cluster_state") != "ok":
                        return f"{node!r}: cluster_state={info.get('cluster_state')}"
                    if info.get("cluster_known_nodes") != str(len(self.nodes)):
                        return f"{node!r}: known nodes {info.get('cluster_known_nodes')}"
                    view = self._nodes_view(c)
                    if any("fail" in n["flags"] for n in view):
                        return f"{node!r} sees failed nodes"
                    # Everyone agrees on who replicates whom (what CLUSTER SLOTS clients get).
                    pairs = {(n["node_id"], n["master_id"]) for n in view
                             if "slave" in n["flags"]}
                    want = {(n.node_id, n.master_id) for n in self.replicas}
                    if pairs != want or len(want) != expected_replicas:
                        return f"{node!r}: replicas {pairs} != {want}"
                    repl = c.info("replication")
                    if node.role == "replica" and repl.get("master_link_status") != "up":
                        return f"{node!r}: master link {repl.get('master_link_status')}"
                    if node.role != repl.get("role", "").replace("slave", "replica"):
                        return f"{node!r}: role is {repl.get('role')}"
                finally:
                    c.close()
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    def wait_healthy(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        problem = self.health_problem()
        while problem is not None:
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {n!r}\n{n.log_tail(8)}" for n in self.nodes)
                raise TimeoutError(f"cluster not healthy after {timeout}s: {problem}\n{tails}")
            time.sleep(0.05)
            problem = self.health_problem()

    def wait_failover(self, master: ClusterNode, timeout: float = 10.0) -> ClusterNode:
        """After ``master`` was killed/paused: wait until one of its replicas took over its
        slots and every live node reports cluster_state:ok. Returns the promoted node."""
        candidates = self.replicas_of(master)
        assert candidates, f"{master!r} has no replica to promote"
        others = [n for n in self.nodes if n is not master]

        def promoted() -> ClusterNode | None:
            new = None
            for node in candidates:
                if node.alive and not node.paused:
                    with contextlib.closing(node.client()) as c:
                        if c.info("replication").get("role") == "master":
                            new = node
            if new is None:
                return None
            for node in others:
                if node.alive and not node.paused:
                    with contextlib.closing(node.client()) as c:
                        if _info(c.execute_command("CLUSTER", "INFO")).get(
                                "cluster_state") != "ok":
                            return None
                        owners = {int(m[1]) for _s, _e, m, *_ in
                                  c.execute_command("CLUSTER", "SLOTS")}
                        if master.port in owners or new.port not in owners:
                            return None
            return new

        new: ClusterNode = eventually(promoted, timeout=timeout, interval=0.1)
        new.role, new.master_id = "master", None
        master.role, master.master_id = "replica", new.node_id  # what it becomes on restart
        for node in candidates:
            if node is not new:
                node.master_id = new.node_id
        return new

    def flushall(self) -> None:
        for node in self.masters:
            with contextlib.closing(node.client()) as c:
                c.flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# -------------------------------------------------------------------- sentinel


class RedisSentinel:
    """A master, one replica, three sentinels (quorum 2), all on loopback.

    ``reference_url`` is the reference's REDIS_URL for REDIS_TYPE=sentinel.
    """

    def __init__(self, master_name: str = "mymaster", sentinels: int = 3, quorum: int = 2,
                 down_after_ms: int = 500, failover_timeout_ms: int = 2000,
                 binary: str | None = None) -> None:
        self.binary = binary or _binary()
        self.master_name = master_name
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.dir = Path(tempfile.mkdtemp(prefix="viva-sentinel-"))
        m_port, r_port, *s_ports = _ports(2 + sentinels)
        self.master = self._data_node(m_port, "master", [])
        self.replica = self._data_node(r_port, "replica", ["--replicaof", HOST, str(m_port)])
        self.original_master_port = m_port
        self._ids = {p: secrets.token_hex(20) for p in s_ports}  # fixed sentinel run ids
        self.sentinels = [self._sentinel(p) for p in s_ports]

    def __repr__(self) -> str:
        return f"<RedisSentinel {self.master!r} {self.replica!r} {self.sentinels}>"

    def _data_node(self, port: int, role: str, extra: list[str]) -> Node:
        log = self.dir / f"redis-{port}.log"
        return Node([self.binary, "--port", str(port), "--bind", HOST, "--dir", str(self.dir),
                     "--logfile", str(log), "--save", "", "--appendonly", "no",
                     *_FAST_REPLICATION, *extra], port, role, log)

    def _sentinel(self, port: int) -> Node:
        conf = self.dir / f"sentinel-{port}.conf"
        log = self.dir / f"sentinel-{port}.log"
        name = self.master_name
        lines = [
            f"port {port}", f"bind {HOST}", f"dir {self.dir}", f"logfile {log}",
            f"sentinel myid {self._ids[port]}",
            "sentinel resolve-hostnames no",
            f"sentinel monitor {name} {HOST} {self.master.port} {self.quorum}",
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
            # Pre-seeded peers: otherwise sentinels find each other and the replica only
            # through hello messages / INFO polls, which takes 2-10 s.
            f"sentinel known-replica {name} {HOST} {self.replica.port}",
            *(f"sentinel known-sentinel {name} {HOST} {p} {self._ids[p]}"
              for p in self._ids if p != port),
        ]
        conf.write_text("\n".join(lines) + "\n")
        return Node([self.binary, str(conf), "--sentinel"], port, "sentinel", log)

    # -- addresses

    @property
    def sentinel_addresses(self) -> str:
        return ",".join(s.address for s in self.sentinels)

    @property
    def reference_url(self) -> str:
        return f"{self.master_name},{self.sentinel_addresses}"

    @property
    def sentinel_hosts(self) -> list[tuple[str, int]]:
        """The ``sentinels`` argument of redis.sentinel.Sentinel."""
        return [(HOST, s.port) for s in self.sentinels]

    def client(self, **kwargs: Any) -> Any:
        """A redis.sentinel.Sentinel on the three sentinels (``master_for(master_name)``)."""
        from redis.sentinel import Sentinel

        kwargs.setdefault("socket_timeout", 2)
        kwargs.setdefault("socket_connect_timeout", 2)
        return Sentinel(self.sentinel_hosts,  # type: ignore[no-untyped-call]
                        sentinel_kwargs={"socket_timeout": 1, "socket_connect_timeout": 1},
                        **kwargs)

    # -- lifecycle

    def start(self, timeout: float = 15.0) -> RedisSentinel:
        try:
            # Master first: a replica started with --replicaof retries a refused
            # connection only once a second (replicationCron).
            self.master.start()
            self.replica.start()
            # Sentinels last, once the replica is in sync: a sentinel whose first INFO of
            # the replica said "link down" re-polls it only a second later.
            eventually(self._replica_attached, timeout=timeout)
            # A sentinel that found a peer not yet listening retries after its 1 s ping
            # period, so this takes ~1 s.  (Shortening it with SENTINEL DEBUG PING-PERIOD
            # makes the sentinels flap +sdown/-sdown on a master killed right after, which
            # costs the same second back in the failover.)
            _start_all(self.sentinels)
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _sentinel_problem(self, sentinel: Node, master_port: int) -> str | None:
        with contextlib.closing(sentinel.client()) as c:
            name = self.master_name
            state = c.execute_command("SENTINEL", "MASTER", name)
            state = dict(zip(state[::2], state[1::2], strict=True)) \
                if isinstance(state, list) else state
            if state.get("flags") != "master" or int(state.get("port", 0)) != master_port:
                return f"{sentinel!r}: master {state.get('port')} flags {state.get('flags')}"
            replicas = c.execute_command("SENTINEL", "REPLICAS", name)
            replicas = [dict(zip(r[::2], r[1::2], strict=True)) if isinstance(r, list) else r
                        for r in replicas]
            ok = [r for r in replicas if r.get("flags") == "slave"
                  and r.get("master-link-status") == "ok"]
            if not ok:
                return f"{sentinel!r}: no usable replica in {replicas}"
            peers = c.execute_command("SENTINEL", "SENTINELS", name)
            peers = [dict(zip(p[::2], p[1::2], strict=True)) if isinstance(p, list) else p
                     for p in peers]
            up = [p for p in peers if p.get("flags") == "sentinel"]
            if len(up) != len(self.sentinels) - 1:
                return f"{sentinel!r}: peers {peers}"
        return None

    def _replica_attached(self) -> bool:
        with contextlib.closing(self.replica.client()) as c:
            return bool(c.info("replication").get("master_link_status") == "up")

    def health_problem(self) -> str | None:
        nodes = [self.master, self.replica, *self.sentinels]
        if any(not n.alive or n.paused for n in nodes):
            return "a process is down or paused"
        if self.master.port != self.original_master_port:
            return "failed over"
        try:
            if not self._replica_attached():
                return "replica not attached"
            for s in self.sentinels:
                problem = self._sentinel_problem(s, self.master.port)
                if problem:
                    return problem
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    def wait_healthy(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        problem = self.health_problem()
        while problem is not None:
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {n!r}\n{n.log_tail(8)}"
                                  for n in [self.master, self.replica, *self.sentinels])
                raise TimeoutError(f"sentinel setup not healthy after {timeout}s: "
                                   f"{problem}\n{tails}")
            time.sleep(0.05)
            problem = self.health_problem()

    def kill_master(self) -> Node:
        """SIGKILL the current master; returns it."""
        old = self.master
        old.kill()
        return old

    def master_address(self) -> tuple[str, int] | None:
        """What the live sentinels agree the master is (None if they disagree)."""
        seen = set()
        for s in self.sentinels:
            if s.alive and not s.paused:
                with contextlib.closing(s.client()) as c:
                    addr = c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME",
                                             self.master_name)
                    seen.add((str(addr[0]), int(addr[1])) if addr else None)
        return seen.pop() if len(seen) == 1 else None

    def wait_failover(self, timeout: float = 10.0) -> tuple[str, int]:
        """Wait until every live sentinel reports a new master address and that master
        accepts writes; returns ``(host, port)`` and swaps ``master``/``replica``."""
        old_port = self.master.port

        def failed_over() -> tuple[str, int] | None:
            addr = self.master_address()
            if addr is None or addr[1] == old_port:
                return None
            with contextlib.closing(_client(addr[1])) as c:
                c.set("viva:topologies:failover-probe", "1", px=1000)
            return addr

        addr: tuple[str, int] = eventually(failed_over, timeout=timeout, interval=0.1)
        if addr[1] == self.replica.port:
            self.master, self.replica = self.replica, self.master
            self.master.role, self.replica.role = "master", "replica"
        return addr

    def flushall(self) -> None:
        with contextlib.closing(self.master.client()) as c:
            c.flushall()

    def stop(self) -> None:
        for node in [*self.sentinels, self.replica, self.master]:
            node.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# -------------------------------------------------------------------- fixtures

T = TypeVar("T", RedisCluster, RedisSentinel)


class _Shared(Generic[T]):
    """One topology per session, rebuilt when a test left it damaged.

    Module-level (not a session fixture) so that conftest.py only has to import the two
    public fixtures; the topology is stopped at pytest's config cleanup (session end).
    """

    def __init__(self, make: Callable[[], T]) -> None:
        self.make: Callable[[], T] = make
        self.current: T | None = None
        self.failed: str | None = None
        self.registered = False

    def get(self, request: pytest.FixtureRequest) -> T:
        if not self.registered:
            request.config.add_cleanup(self.close)
            self.registered = True
        if self.failed is not None:  # don't pay a startup timeout once per test
            pytest.fail(self.failed, pytrace=False)
        if self.current is not None and self.current.health_problem() is not None:
            self.current.stop()
            self.current = None
        if self.current is None:
            topology = self.make()  # may skip/fail via missing()
            try:
                topology.start()
            except Exception as exc:
                self.failed = f"{type(topology).__name__} did not start: {exc}"
                raise
            self.current = topology
        self.current.flushall()
        return self.current

    def close(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None
        self.registered = False
        self.failed = None


_CLUSTER = _Shared[RedisCluster](RedisCluster)
_SENTINEL = _Shared[RedisSentinel](RedisSentinel)


@pytest.fixture
def redis_cluster(request: pytest.FixtureRequest) -> RedisCluster:
    """A healthy, empty 3-master/3-replica cluster (shared; rebuilt if a test broke it)."""
    return _CLUSTER.get(request)


@pytest.fixture
def redis_sentinel(request: pytest.FixtureRequest) -> RedisSentinel:
    """A healthy, empty master/replica/3-sentinel setup (shared; rebuilt after failover)."""
    return _SENTINEL.get(request)
