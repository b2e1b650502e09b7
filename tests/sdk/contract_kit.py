"""The Python runner's parts for sdk/contract (its README says what they must do): the contract
files, sidecar processes of each profile, the silent server, and the expectation matchers."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx2

from tests.support import ROOT
from tests.support.ports import free_port, wait_port
from tests.support.processes import stop_process
from tests.support.servers import RedisServer, missing

CONTRACT_DIR = ROOT / "sdk" / "contract"
VERSION = 4
KNOWN_EXPECT = frozenset({
    "return", "result", "headers", "error", "unavailable", "status", "body", "json",
    "verification", "lease", "released", "sidecar_requests", "silent_requests",
    "min_elapsed_ms", "max_elapsed_ms"})
LEASE_CALLS = ("acquire_lease", "renew_lease", "release_lease")
CALLS = ("allow", "check", "report", "verifyKey", *LEASE_CALLS)
STEP_KEYS = frozenset({
    "call", "namespace", "identifier", "descriptors", "hits", "key", "cost", "limits",
    "features", "client_address", "lease_id", "ttl_ms", "save", "wait_ms", "request", "client",
    "middleware", "expect"})
VECTOR_KEYS = frozenset({
    "name", "about", "target", "window_s", "client", "middleware", "setup", "steps"})
# A vector with window_s starts its setup and steps with at least this much of a window left.
WINDOW_MARGIN_S = 10.0
SAVED = re.compile(r"\$\{([a-z_]+)\.([a-z_]+)\}")


def load() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """contract.json and every vector, refusing what this runner does not know."""
    contract = json.loads((CONTRACT_DIR / "contract.json").read_text())
    if contract["version"] != VERSION:
        raise ValueError(f"contract version {contract['version']}; this runner knows {VERSION}")
    vectors = []
    for name in contract["vector_files"]:
        for vector in json.loads((CONTRACT_DIR / name).read_text())["vectors"]:
            where = f"{name}: {vector['name']}"
            if set(vector) - VECTOR_KEYS:
                raise ValueError(f"{where}: unknown {set(vector) - VECTOR_KEYS}")
            if vector["target"] not in contract["targets"]:
                raise ValueError(f"{where}: unknown target {vector['target']}")
            if "setup" in vector and vector["target"] != "full":
                raise ValueError(f"{where}: setup needs the target full")
            for step in vector["steps"]:
                unknown = (set(step["expect"]) - KNOWN_EXPECT) | (set(step) - STEP_KEYS)
                if unknown or step.get("call", "allow") not in CALLS:
                    raise ValueError(f"{where}: unknown {unknown or step}")
            vectors.append(vector)
    return contract, vectors


def wait_for_window(vector: dict[str, Any]) -> None:
    """``window_s``: the vector's requests must fall in one epoch-aligned window of that many
    seconds (the sidecar's fixed windows), so wait for the next one when this one is nearly
    over."""
    if "window_s" not in vector:
        return
    left = vector["window_s"] - time.time() % vector["window_s"]
    if left < WINDOW_MARGIN_S:
        time.sleep(left + 0.05)


def new_root_key() -> str:
    """The run's root key ({root_key}): what the full-mode sidecars register at start-up."""
    return f"vroot_contract_{secrets.token_hex(16)}"


def sidecar_binary(contract: dict[str, Any]) -> str:
    """VIVA_RATELIMIT_BIN, else the viva-ratelimit next to this Python (the repository's .venv)."""
    variable = contract["sidecar"]["executable_env"]
    if os.environ.get(variable):
        return os.environ[variable]
    exe = Path(sys.executable).parent / "viva-ratelimit"
    if not exe.exists():
        missing(f"the sidecar executable ({variable} or {exe})")
    return str(exe)


class Sidecar:
    """The sidecar executable with a contract profile, on free loopback ports."""

    def __init__(self, contract: dict[str, Any], profile: str, redis_port: int,
                 root_key: str) -> None:
        self.profile = profile
        self.http_port = free_port()
        self.counter = contract["sidecar"]["request_counter"]
        self.http = httpx2.Client(timeout=10)  # one: making a client costs ~0.1 s (TLS setup)
        self.data_dir = tempfile.mkdtemp(prefix="viva-contract-")
        values = {"{rules}": str(CONTRACT_DIR / contract["rules"]),
                  "{plans}": str(CONTRACT_DIR / contract["plans"]),
                  "{http_port}": str(self.http_port), "{grpc_port}": str(free_port()),
                  "{debug_port}": str(free_port()), "{redis_port}": str(redis_port),
                  "{closed_port}": str(free_port()), "{data_dir}": self.data_dir,
                  "{root_key}": root_key}

        def fill(text: str) -> str:
            return re.sub(r"\{[a-z_]+\}", lambda m: values.get(m.group(0), m.group(0)), text)

        spec = contract["sidecar"]
        env = {**os.environ, **{k: fill(v) for k, v in
                                {**spec["env"], **spec["profiles"][profile]["env"]}.items()}}
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sidecar_binary(contract), *map(fill, spec["args"])],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.http_port, timeout=30, proc=self.proc)
        if profile != "store_down":
            self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                url = f"http://127.0.0.1:{self.http_port}/healthcheck"
                if self.http.get(url).status_code == 200:
                    return
            except httpx2.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"sidecar {self.profile} not healthy within 30s")

    def requests(self) -> float:
        """The REST request counter of contract.json's request_counter."""
        text = self.http.get(f"http://127.0.0.1:{self.http_port}{self.counter['path']}").text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(self.counter["metric"] + "{"):
                continue
            labels, _, value = line.rpartition("}")
            if any(f'{name}="{v}"' in labels for name, accepted in self.counter["labels"].items()
                   for v in accepted):
                total += float(value)
        return total

    def setup(self, requests: list[dict[str, Any]], root_key: str) -> dict[str, str]:
        """A vector's setup: each admin request in order, sent with the root key; the string
        fields of the answers saved under ``save`` as ``NAME.FIELD`` for the later ones."""
        saved: dict[str, str] = {}
        for request in requests:
            request = json.loads(fill_saved(json.dumps(request), saved))
            reply = self.http.request(
                request["method"], f"http://127.0.0.1:{self.http_port}{request['path']}",
                json=request.get("body"), headers={"Authorization": f"Bearer {root_key}"})
            if not 200 <= reply.status_code < 300:
                raise AssertionError(f"setup {request['method']} {request['path']}: "
                                     f"HTTP {reply.status_code} {reply.text}")
            if "save" in request:
                saved.update({f"{request['save']}.{k}": v for k, v in reply.json().items()
                              if isinstance(v, str)})
        return saved

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()
        self.http.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)


class SilentServer:
    """Accepts connections, reads what arrives, never answers; counts the connections a
    request arrived on (an HTTP client may open spare ones)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests = 0
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(conn)
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    def _drain(self, conn: socket.socket) -> None:
        try:
            if conn.recv(4096):
                with self.lock:
                    self.requests += 1
            while conn.recv(4096):
                pass
        except OSError:
            return

    def stop(self) -> None:
        self.listener.close()
        with self.lock:
            for conn in self.conns:
                conn.close()


class Targets:
    """What a vector's {port} points at; servers start on first use and live until stop()."""

    def __init__(self, contract: dict[str, Any]) -> None:
        self.contract = contract
        self.root_key = new_root_key()
        self.sidecars: dict[str, Sidecar] = {}
        self.redis: RedisServer | None = None
        self.silent: SilentServer | None = None

    def port(self, place: str) -> int:
        if place == "closed_port":
            return free_port()
        if place == "silent_server":
            self.silent = self.silent or SilentServer()
            return int(self.silent.port)
        return self.sidecar(place).http_port

    def sidecar(self, place: str) -> Sidecar:
        if place not in self.sidecars:
            redis_port = 0
            if self.contract["sidecar"]["profiles"][place].get("needs_redis"):
                if self.redis is None:
                    binary = os.environ.get("VIVA_REDIS_SERVER")
                    self.redis = RedisServer()
                    self.redis.binary = binary or self.redis.binary
                    self.redis.start()
                redis_port = self.redis.port
            self.sidecars[place] = Sidecar(self.contract, place, redis_port, self.root_key)
        return self.sidecars[place]

    def counters(self, place: str) -> tuple[float, float]:
        sidecar = self.sidecars.get(place)
        return (sidecar.requests() if sidecar else 0.0,
                float(self.silent.requests) if self.silent and place == "silent_server" else 0.0)

    def stop(self) -> None:
        for sidecar in self.sidecars.values():
            sidecar.stop()
        if self.redis is not None:
            self.redis.stop()
        if self.silent is not None:
            self.silent.stop()


# -- matching ----------------------------------------------------------------------------------


def match(path: str, expect: Any, actual: Any) -> list[str]:
    """One line per mismatch between an expectation and what happened, each with its path."""
    if isinstance(expect, dict) and len(expect) == 1:
        ((key, arg),) = expect.items()
        if key == "between":
            number = int(actual) if isinstance(actual, str) and re.fullmatch(
                r"-?\d+", actual.strip()) else actual
            ok = isinstance(number, int | float) and not isinstance(number, bool) \
                and arg[0] <= number <= arg[1]
            return [] if ok else [f"{path}: expected a number in {arg}, got {actual!r}"]
        if key == "matches":
            ok = isinstance(actual, str) and re.search(arg, actual) is not None
            return [] if ok else [f"{path}: expected to match {arg!r}, got {actual!r}"]
        if key == "absent":
            return [] if actual is None else [f"{path}: expected absent, got {actual!r}"]
    if isinstance(expect, list):
        if not isinstance(actual, list) or len(actual) != len(expect):
            return [f"{path}: expected {len(expect)} items, got {actual!r}"]
        return [p for i, (e, a) in enumerate(zip(expect, actual, strict=True))
                for p in match(f"{path}[{i}]", e, a)]
    if isinstance(expect, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected an object, got {actual!r}"]
        return [p for key in sorted(expect) for p in match(f"{path}.{key}", expect[key],
                                                             actual.get(key))]
    same = expect == actual and isinstance(expect, bool) == isinstance(actual, bool)
    return [] if same else [f"{path}: expected {expect!r}, got {actual!r}"]


def check(expect: dict[str, Any], actual: dict[str, Any], elapsed_ms: float,
          grew: tuple[float, float]) -> list[str]:
    """Every mismatch of a step; "error" and "unavailable" are checked both ways."""
    out = [f"unexpected {key}: {actual[key]}" for key in ("error", "unavailable")
           if key not in expect and actual.get(key) is not None]
    for key, want in expect.items():
        if key == "min_elapsed_ms" and elapsed_ms < want:
            out.append(f"took {elapsed_ms:.0f} ms, expected at least {want}")
        elif key == "max_elapsed_ms" and elapsed_ms > want:
            out.append(f"took {elapsed_ms:.0f} ms, expected at most {want}")
        elif key == "sidecar_requests":
            out += match(key, want, grew[0])
        elif key == "silent_requests":
            out += match(key, want, grew[1])
        elif key == "headers":
            got = {k.lower(): v for k, v in actual["headers"].items()}
            out += [p for name, value in want.items()
                    for p in match(f"headers.{name}", value, got.get(name.lower()))]
        elif not key.endswith("_elapsed_ms"):
            out += match(key, want, actual.get(key))
    return out


def substitute(step: dict[str, Any], run: str) -> dict[str, Any]:
    """``${run}`` replaced in every string of the step."""
    return json.loads(json.dumps(step).replace("${run}", run))  # type: ignore[no-any-return]


def fill_saved(text: str, saved: dict[str, str]) -> str:
    """``${NAME.FIELD}`` replaced by what the setup (or an earlier step) saved, as JSON string
    content; KeyError for what nothing saved."""
    return SAVED.sub(lambda m: json.dumps(saved[f"{m.group(1)}.{m.group(2)}"])[1:-1], text)


def save(name: str, answer: dict[str, Any], saved: dict[str, str]) -> None:
    """A step's ``save``: the string fields of its answer, as ``NAME.FIELD`` for later steps."""
    saved.update({f"{name}.{k}": v for k, v in answer.items() if isinstance(v, str)})


def leaks(secrets_: list[str], texts: dict[str, str]) -> list[str]:
    """The places where a secret shows: an error message, the text form of a result or of
    the client must never hold the key or the root key."""
    return [f"the {place} shows a secret: {text[:300]!r}" for place, text in texts.items()
            for secret in secrets_ if secret and secret in text]
