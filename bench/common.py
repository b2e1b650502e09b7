"""Shared helpers of the benchmarks: the servers they start, load tools, figures.

Ports, processes and the servers' command lines come from tests/support, shared with the
tests. Every process a benchmark starts goes through ``Processes``: stopped, with whatever it
forked, however the benchmark ends.

Also, run as a script, the floor servers the benchmarks compare against:

    python bench/common.py noop-rls --port N [--loop uvloop]

a grpc.aio RateLimitService that answers a constant OK RateLimitResponse to every call (the
most grpcio can do with nothing to compute), printing ``ready`` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.ports import free_port, wait_port  # noqa: E402
from tests.support.processes import Processes, pin  # noqa: E402
from tests.support.servers import redis_argv, redis_binary, sidecar_argv  # noqa: E402

# The benchmarks take these from here, with the rest of their toolbox.
__all__ = ["Processes", "free_port", "pin", "wait_port"]

PYTHON = sys.executable
RLS_PATH = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
ENVOY_BOOTSTRAP = ROOT / "deploy" / "envoy" / "envoy.yaml"
# The ports written in the shipped bootstrap, by role.
BOOT_ADMIN, BOOT_LISTENER, BOOT_BACKEND, BOOT_RLS = 9901, 10000, 10001, 8081


# -- small things ---------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of already sorted values, by linear interpolation; 0 when empty."""
    if not ordered:
        return 0.0
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def duration(seconds: float) -> str:
    """A DURATION for h2load (an integer with a unit)."""
    return f"{round(seconds * 1000)}ms"


def ratio(ours: float, floor: float) -> str:
    return f"{ours / floor:.2f}" if floor else "n/a"


def machine() -> str:
    """One line naming the machine, for the figures' header."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs ({model}), "
            f"Python {sys.version.split()[0]}")


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB (from /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def tree_rss_kib(pid: int) -> int:
    """VmRSS of a process and its descendants (the sidecar's supervisor and workers)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += rss_kib(p)
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except (OSError, RuntimeError):
            continue
        todo.extend(int(c) for c in children)
    return total


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None and not Path(t).exists()]
    if missing:
        raise SystemExit(f"needed but not found: {', '.join(missing)} (see bench/README.md)")


# -- the servers ----------------------------------------------------------------------------------


def start_redis(procs: Processes, cpu: int | None = None) -> str:
    """A throw-away redis-server without persistence; returns its URL."""
    binary = redis_binary()
    if binary is None:
        raise SystemExit("redis-server not found (Debian package redis-server)")
    port = free_port()
    folder = procs.tmp / f"redis-{port}"
    folder.mkdir()
    proc = procs.start("redis", redis_argv(binary, port, folder), cpu=cpu)
    wait_port(port, proc)
    return f"redis://127.0.0.1:{port}/0"


@dataclass
class Sidecar:
    proc: subprocess.Popen[bytes]
    grpc_port: int
    http_port: int
    debug_port: int

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a Prometheus series from /metrics whose labels include ``labels``."""
        url = f"http://127.0.0.1:{self.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name):
                continue
            series, _, value = line.rpartition(" ")
            if series != name and not series.startswith(name + "{"):
                continue
            if all(f'{k}="{v}"' in series for k, v in labels.items()):
                total += float(value)
        return total


def native_built() -> bool:
    """Whether sidecar._native is built here (the sidecars then run the native path)."""
    try:
        import sidecar._native  # noqa: F401
    except ImportError:
        return False
    return True


def write_rules(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rules.yaml").write_text(text)
    return folder


def start_sidecar(procs: Processes, rules: Path, transport: str = "fast",
                  redis_url: str | None = None, workers: int = 1, cpu: int | None = None,
                  env: dict[str, str] | None = None, name: str = "sidecar") -> Sidecar:
    """``python -m sidecar serve`` on free ports; returns once gRPC and HTTP listen."""
    grpc_port, http_port, debug_port = free_port(), free_port(), free_port()
    environment = {"LOG_LEVEL": "warn", "VIVA_SHUTDOWN_GRACE": "1s", **(env or {})}
    if redis_url:
        environment.update(BACKEND_TYPE="redis", REDIS_URL=redis_url)
    else:
        environment["BACKEND_TYPE"] = "memory"
    cmd = sidecar_argv(rules, grpc_port, http_port, debug_port, ["--transport", transport])
    if workers > 1:
        cmd += ["--workers", str(workers)]
    proc = procs.start(name, cmd, env=environment, cpu=cpu)
    try:
        wait_port(grpc_port, proc, timeout=30)
        wait_port(http_port, proc, timeout=30)
    except (RuntimeError, TimeoutError) as exc:
        raise RuntimeError(f"{exc}\n{procs.log(name)}") from None
    return Sidecar(proc, grpc_port, http_port, debug_port)


def start_noop(procs: Processes, cpu: int | None = None, loop: str = "asyncio",
               server: str = "aio", env: dict[str, str] | None = None) -> tuple[int, int]:
    """The no-op grpcio RateLimitService (the floor); returns (port, pid)."""
    port = free_port()
    proc = procs.start(f"noop-{port}", [PYTHON, str(Path(__file__)), "noop-rls", "--port",
                                        str(port), "--loop", loop, "--server", server],
                       env=env, cpu=cpu)
    wait_port(port, proc)
    return port, proc.pid


# -- gRPC frames ----------------------------------------------------------------------------------


def rls_request(domain: str, descriptors: Sequence[Sequence[tuple[str, str]]]) -> bytes:
    """A serialized RateLimitRequest."""
    from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
    from envoy.service.ratelimit.v3 import rls_pb2

    request = rls_pb2.RateLimitRequest(domain=domain, descriptors=[
        ratelimit_pb2.RateLimitDescriptor(entries=[
            ratelimit_pb2.RateLimitDescriptor.Entry(key=k, value=v) for k, v in entries])
        for entries in descriptors])
    return bytes(request.SerializeToString())


def grpc_frame(message: bytes) -> bytes:
    """gRPC length-prefixed message: uncompressed flag, 4-byte big-endian length, message."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def check_once(port: int, message: bytes) -> int:
    """One real ShouldRateLimit call through grpcio; its overall_code (1 = OK). Raises on a
    gRPC error, so a benchmark never measures a server that answers errors."""
    import grpc
    from envoy.service.ratelimit.v3 import rls_pb2

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(RLS_PATH, request_serializer=lambda m: m,
                                   response_deserializer=rls_pb2.RateLimitResponse.FromString)
        response = call(message, timeout=5)
    return int(response.overall_code)


# -- h2load and wrk -------------------------------------------------------------------------------


@dataclass
class Load:
    """What one load run measured; latencies in milliseconds."""

    rps: float = 0.0
    requests: int = 0
    failed: int = 0  # failed + errored + timeout (h2load), socket errors + non-2xx (wrk)
    p50: float = 0.0
    p99: float = 0.0
    p999: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


def h2load(url: str, args: Sequence[str], data: Path | None = None, cpu: int | None = None,
           log_file: Path | None = None, grpc: bool = True, timeout: float = 120.0) -> Load:
    """Run h2load; req/s and failures from its summary, percentiles from ``--log-file``."""
    cmd = [*pin(cpu), "h2load", *args]
    if grpc:
        cmd += ["-H", "content-type: application/grpc", "-H", "te: trailers"]
    if data is not None:
        cmd += ["-d", str(data)]  # POST with this body
    if log_file is not None:
        log_file.unlink(missing_ok=True)
        cmd += ["--log-file", str(log_file)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=timeout,
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"h2load failed ({out.returncode}): {out.stderr or out.stdout}")
    rps = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", out.stdout)
    counts = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, "
                       r"(\d+) failed, (\d+) errored, (\d+) timeout", out.stdout)
    if rps is None or counts is None:
        raise RuntimeError(f"unexpected h2load output:\n{out.stdout}")
    load = Load(rps=float(rps.group(1)), requests=int(counts.group(2)),
                failed=sum(int(counts.group(i)) for i in (3, 4, 5)))
    non_2xx = re.search(r"status codes: \d+ 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out.stdout)
    if non_2xx:
        load.failed += sum(int(non_2xx.group(i)) for i in (1, 2, 3))
    if log_file is not None:
        micros = sorted(int(line.split("\t")[2]) for line in
                        log_file.read_text().splitlines() if line.count("\t") == 2)
        ms = [m / 1000 for m in micros]
        load.p50, load.p99, load.p999 = (percentile(ms, q) for q in (0.5, 0.99, 0.999))
    return load


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, seconds: float, connections: int, threads: int = 1,
        cpu: int | None = None, script: Path | None = None) -> Load:
    """``wrk --latency``: req/s, p50 and p99 (wrk's own HdrHistogram percentiles); ``script``
    a wrk Lua file (e.g. one that sets a POST body)."""
    cmd = [*pin(cpu), "wrk", "-t", str(threads), "-c", str(connections),
           "-d", f"{seconds:g}s", "--latency", "--timeout", "5s",
           *(["-s", str(script)] if script else []), url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.stderr or out.stdout}")
    text = out.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in", text)
    if rps is None or total is None:
        raise RuntimeError(f"unexpected wrk output:\n{text}")
    load = Load(rps=float(rps.group(1)), requests=int(total.group(1)))
    for q, attr in (("50", "p50"), ("99", "p99")):
        m = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if m:
            setattr(load, attr, float(m.group(1)) * _UNITS[m.group(2)])
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       text)
    if errors:
        load.failed += sum(int(errors.group(i)) for i in range(1, 5))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non_2xx:
        load.failed += int(non_2xx.group(1))
    return load


# -- where the time goes --------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process, all its threads and its descendants so far."""
    hz = os.sysconf("SC_CLK_TCK")
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
        todo.extend(int(c) for c in children)
    return total / hz


def machine_busy() -> float:
    """CPU seconds all CPUs have been busy since boot (from /proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(f) for f in fields]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Share of a core each named process used between ``start`` and ``stop``; the load tool
    (a child of this process, already waited for) through RUSAGE_CHILDREN."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.shares: dict[str, float] = {}

    def start(self) -> None:
        import resource

        self._children = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._machine = machine_busy()
        self._t0 = time.monotonic()

    def stop(self, tool: str) -> dict[str, float]:
        import resource

        elapsed = time.monotonic() - self._t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.shares = {name: (cpu_seconds(pid) - self._before[name]) / elapsed
                       for name, pid in self.pids.items()}
        self.shares[tool] = (after.ru_utime + after.ru_stime - self._children.ru_utime -
                             self._children.ru_stime) / elapsed
        busy = (machine_busy() - self._machine) / elapsed
        self.shares["anything else"] = max(0.0, busy - sum(self.shares.values()))
        return self.shares

    def line(self) -> str:
        return ", ".join(f"{name} {100 * share:.0f}%" for name, share in self.shares.items())


def thread_ticks(pid: int) -> dict[int, tuple[str, int]]:
    """CPU time (user + system clock ticks) of each thread of ``pid``, with the thread's name."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(task.name)] = (name, int(fields[11]) + int(fields[12]))
    return out


def thread_split(before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]],
                 pid: int, seconds: float) -> str:
    """'main 92% of a core, event_engine x4 11%, …' between two ``thread_ticks``."""
    hz = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for tid, (name, ticks) in after.items():
        label = "main" if tid == pid else name
        used[label] = used.get(label, 0.0) + (ticks - before.get(tid, (name, 0))[1]) / hz
    parts = [f"{label} {100 * cpu / seconds:.0f}%" for label, cpu in
             sorted(used.items(), key=lambda kv: -kv[1]) if cpu / seconds >= 0.005]
    return ", ".join(parts) + " (of one core)"


def start_profile(procs: Processes, pid: int, seconds: float, out: Path, rate: int = 100,
                  native: bool = False) -> subprocess.Popen[bytes]:
    """``py-spy record`` of ``pid`` for ``seconds`` into ``out`` (raw collapsed stacks).

    Non-blocking (the target is not paused, so its throughput barely moves) unless ``native``,
    which pauses it to unwind C frames too (grpcio's Cython core, protobuf's upb).
    """
    spy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    cmd = [spy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
           "--rate", str(rate), "--format", "raw", "-o", str(out)]
    cmd.append("--native" if native else "--nonblocking")
    return procs.start(f"py-spy-{pid}", cmd)


# Where a frame's code lives, by the first match in its file name.
_AREAS = (("sidecar/", "ours"), ("grpc", "grpcio"), ("asyncio", "asyncio loop"),
          ("selectors", "asyncio loop"), ("selectmodule", "asyncio loop"),
          ("uvloop", "asyncio loop"), ("protobuf", "protobuf"), ("_message", "protobuf"),
          ("prometheus_client", "prometheus_client"), ("redis/", "redis-py"),
          ("hiredis", "redis-py"), ("threading", "threads"), ("concurrent/", "threads"))
# Frames that only say "the interpreter was running something": charge the caller instead.
_INTERPRETER = ("libpython", "libc.so", "ceval", "object.h", "abstract.h", ".h)", "libstdc++",
                "<frozen", "<string>", "python3.", "_PyEval", "Objects/", "Python/")


# Python frames whose own ("self") time is C code they call: under grpcio that is its Cython
# core (cygrpc), run as event-loop callbacks on the main thread and in its poller thread.
_C_CALLERS = {"Handle._run (asyncio/events.py)": "grpcio (Cython core)",
              "Thread.run (threading.py)": "grpcio (Cython core)"}


def _area(frame: str) -> str | None:
    if frame in _C_CALLERS:
        return _C_CALLERS[frame]
    where = frame[frame.rfind("(") + 1:] if "(" in frame else frame
    for marker in _INTERPRETER:
        if marker in where:
            return None
    for marker, area in _AREAS:
        if marker in where:
            return area
    return "other"


def _short(frame: str) -> str:
    return re.sub(r":\d+\)$", ")", frame.strip())


@dataclass
class Profile:
    samples: int
    areas: list[tuple[str, float]]  # (area, share of samples), by self time
    top_self: list[tuple[str, float]]  # (frame, share), the leaf frames
    inclusive: list[tuple[str, float]]  # (frame, share) for the frames asked for

    def lines(self) -> list[str]:
        out = [f"samples: {self.samples}",
               "self time by area: " + ", ".join(f"{a} {100 * s:.0f}%" for a, s in self.areas)]
        out += ["inclusive:"] + [f"  {100 * s:5.1f}%  {f}" for f, s in self.inclusive]
        out += ["top frames by self time:"] + [f"  {100 * s:5.1f}%  {f}" for f, s in
                                               self.top_self]
        return out


def summarise_profile(raw: Path, inclusive: Sequence[str] = (), top: int = 15) -> Profile:
    """Self time per area (ours, grpcio, asyncio, protobuf, …) and per leaf frame, and the
    inclusive share of the frames whose text contains each of ``inclusive``."""
    areas: dict[str, int] = {}
    leaves: dict[str, int] = {}
    incl = dict.fromkeys(inclusive, 0)
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_short(f) for f in stack.split(";")]
        leaf, area = frames[-1], None
        for frame in reversed(frames):
            area = _area(frame)
            if area is not None:
                leaf = frame
                break
        areas[area or "other"] = areas.get(area or "other", 0) + count
        leaves[leaf] = leaves.get(leaf, 0) + count
        for name in incl:
            if any(name in f for f in frames):
                incl[name] += count
    if not total:
        return Profile(0, [], [], [])
    share = lambda d: sorted(((k, v / total) for k, v in d.items()), key=lambda kv: -kv[1])  # noqa: E731
    return Profile(total, share(areas), share(leaves)[:top],
                   [(k, v / total) for k, v in incl.items()])


# -- the no-op floor servicer (a child process) ---------------------------------------------------


def noop_main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="common.py noop-rls")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--server", choices=("aio", "sync"), default="aio")
    parser.add_argument("--threads", type=int, default=8, help="sync server's thread pool")
    args = parser.parse_args(argv)
    if args.server == "sync":
        serve_noop_sync(args.port, args.threads)
        return
    factory = asyncio.new_event_loop
    if args.loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve_noop(args.port))


def _noop_servicer(base: type) -> Any:
    from envoy.service.ratelimit.v3 import rls_pb2

    ok = rls_pb2.RateLimitResponse(overall_code=rls_pb2.RateLimitResponse.OK)

    class AsyncNoop(base):  # type: ignore[misc, valid-type]
        async def ShouldRateLimit(self, request: Any, context: Any) -> Any:
            return ok

    class SyncNoop(base):  # type: ignore[misc, valid-type]
        def ShouldRateLimit(self, request: Any, context: Any) -> Any:
            return ok

    return AsyncNoop, SyncNoop


async def serve_noop(port: int) -> None:
    import grpc
    from envoy.service.ratelimit.v3 import rls_pb2_grpc

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    rls_pb2_grpc.add_RateLimitServiceServicer_to_server(
        _noop_servicer(rls_pb2_grpc.RateLimitServiceServicer)[0](), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await stop.wait()
    await server.stop(0.5)


def serve_noop_sync(port: int, threads: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import grpc
    from envoy.service.ratelimit.v3 import rls_pb2_grpc

    server = grpc.server(ThreadPoolExecutor(max_workers=threads),
                         options=[("grpc.so_reuseport", 0)])
    rls_pb2_grpc.add_RateLimitServiceServicer_to_server(
        _noop_servicer(rls_pb2_grpc.RateLimitServiceServicer)[1](), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    stopped = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopped:
        time.sleep(0.1)
    server.stop(0.5).wait()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "noop-rls":
        noop_main(sys.argv[2:])
    else:
        print(__doc__)
