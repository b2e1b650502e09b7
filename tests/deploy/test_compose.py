"""deploy/compose/compose.yaml: valid against the Compose Specification's JSON schema (the copy
check-jsonschema ships and keeps current), and consistent with the image and the settings.

No container engine runs here, so the file is not started (tests/management runs the full-mode
sidecar on a real PostgreSQL and Redis).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from sidecar.envcheck import environment_warnings
from tests.deploy import dockerfile
from tests.deploy.tools import require_tool
from tests.support import ROOT

COMPOSE = ROOT / "deploy" / "compose" / "compose.yaml"
# What `POSTGRES_PASSWORD=… docker compose up` puts in the file.
SHELL = {"POSTGRES_PASSWORD": "p4ss-from-the-shell"}


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?message} (a missing required one
    fails)."""
    def value(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        if env.get(name):
            return env[name]
        assert op != ":?", f"{name} is required: {arg}"
        return arg if op == ":-" else ""

    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)(:[?-])?([^}]*)\}", value, text)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(interpolate(COMPOSE.read_text(), SHELL))  # type: ignore[no-any-return]


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    checker = require_tool("check-jsonschema")
    return subprocess.run([checker, "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)


def test_valid_against_the_compose_specification() -> None:
    out = validate(COMPOSE)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_schema_check_refuses_a_mistake(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("    environment:\n      MODE",
                                                  "    enviroment:\n      MODE", 1))
    out = validate(broken)
    assert out.returncode == 1
    assert "enviroment" in out.stdout + out.stderr


def test_full_mode_with_postgres_and_redis(compose: dict[str, Any]) -> None:
    services = compose["services"]
    limiter = services["rate-limiter"]
    env = limiter["environment"]
    assert env["MODE"] == "full"
    host, port = env["REDIS_ADDR"].split(":")
    assert host in services and "redis-server" in services[host]["command"]
    assert port == "6379"
    url = urlsplit(env["VIVA_DATABASE_URL"])
    assert url.scheme.startswith("postgresql") and url.hostname in services
    postgres = services[url.hostname]["environment"]
    assert (url.username, url.path.lstrip("/"), url.port) == (
        postgres["POSTGRES_USER"], postgres["POSTGRES_DB"], 5432)
    assert url.password == postgres["POSTGRES_PASSWORD"] == SHELL["POSTGRES_PASSWORD"], \
        "one password, from the shell, never written in the file"
    with pytest.raises(AssertionError, match="POSTGRES_PASSWORD is required"):
        interpolate(COMPOSE.read_text(), {})
    for name, condition in limiter["depends_on"].items():
        assert condition == {"condition": "service_healthy"}
        assert services[name]["healthcheck"]["test"][0] == "CMD"


def test_the_image_as_built_and_configured(compose: dict[str, Any]) -> None:
    limiter = compose["services"]["rate-limiter"]
    assert limiter["image"] == "viva/rate-limiter:latest"
    assert (COMPOSE.parent / limiter["build"]["context"] / "Dockerfile").resolve() == \
        (ROOT / "Dockerfile").resolve()
    parsed = dockerfile.parse((ROOT / "Dockerfile").read_text())
    exposed = {p for e in parsed.final.all("EXPOSE") for p in e.text.split()}
    assert {p.split(":")[1] for p in limiter["ports"]} <= exposed
    (volume,) = limiter["volumes"]
    source, target, mode = volume.split(":")
    assert (COMPOSE.parent / source).resolve() == (ROOT / "config").resolve()
    assert target == dockerfile.env_of(parsed.final)["VIVA_CONFIG_DIR"] and mode == "ro"


def test_every_variable_is_a_setting(compose: dict[str, Any]) -> None:
    env = dict(compose["services"]["rate-limiter"]["environment"])
    assert env["MODE"] == "full" and "VIVA_DATABASE_URL" in env
    assert environment_warnings(env) == []


def test_third_party_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if name != "rate-limiter":
            # A full version (Redis 7.2.7, PostgreSQL 17.2), not a tag that moves.
            assert re.fullmatch(r"[\w./-]+:\d+\.\d+(\.\d+)?-[\w.-]+", service["image"]), name


def test_every_interpolation_is_understood() -> None:
    assert "${" not in interpolate(COMPOSE.read_text(), SHELL)
