"""The command line as a user runs it: real processes, exit codes, what they print."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from tests.support import ROOT
from tests.support.ports import eventually, free_port
from tests.support.servers import SidecarProcess
from tests.transports.kit import RULES

BAD_UNIT = """
domain: first
descriptors:
  - key: k
    rate_limit: {unit: fortnight, requests_per_unit: 1}
"""
BAD_KEY = """
domain: second
descriptors:
  - key: k
    ratelimit: {unit: second, requests_per_unit: 1}
"""


def run(*args: str, env: dict[str, str] | None = None,
        timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sidecar", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.fixture
def good_rules(tmp_path: Path) -> Path:
    folder = tmp_path / "good"
    folder.mkdir()
    (folder / "rules.yaml").write_text(textwrap.dedent(RULES))
    return folder


@pytest.fixture
def bad_rules(tmp_path: Path) -> Path:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.yaml").write_text(BAD_UNIT)
    (folder / "b.yaml").write_text(BAD_KEY)
    return folder


def test_validate_the_shipped_config() -> None:
    result = run("validate", "config")
    assert result.returncode == 0, result.stderr
    assert "config: OK" in result.stdout


def test_validate_lists_every_problem(bad_rules: Path) -> None:
    result = run("validate", str(bad_rules))
    assert result.returncode == 1
    assert "a.yaml" in result.stderr and "fortnight" in result.stderr
    assert "b.yaml" in result.stderr and "ratelimit" in result.stderr
    assert "2 problem(s) found" in result.stderr


def test_serve_with_invalid_rules_exits_1_listing_every_problem(bad_rules: Path) -> None:
    proc = SidecarProcess(bad_rules).start(wait=False)
    assert proc.proc is not None
    assert proc.proc.wait(30) == 1
    log = proc.log()
    proc.stop()
    assert "are invalid" in log
    assert "a.yaml" in log and "fortnight" in log
    assert "b.yaml" in log and "ratelimit" in log


@pytest.mark.parametrize(("env", "name"), [({"PORT": "abc"}, "PORT"),
                                           ({"REDIS_TIMEOUT": "soon"}, "REDIS_TIMEOUT"),
                                           ({"REDIS_URL": "nowhere"}, "REDIS_URL")])
def test_serve_with_a_bad_setting_names_it(good_rules: Path, env: dict[str, str],
                                           name: str) -> None:
    result = run("serve", "--config", str(good_rules), env={
        **env, "GRPC_PORT": str(free_port()), "DEBUG_PORT": str(free_port())})
    assert result.returncode == 2
    assert name in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("how", [{"MODE": "full"}, {"VIVA_MODE": "full"}, "--mode=full"])
def test_full_mode_is_chosen_by_either_variable_or_the_flag(
        good_rules: Path, tmp_path: Path, how: dict[str, str] | str) -> None:
    (good_rules / "plans.yaml").write_text("plans:\n  free: {name: Free}\n")
    flags = [how] if isinstance(how, str) else []
    env = {**(how if isinstance(how, dict) else {}), "VIVA_DATA_DIR": str(tmp_path / "data")}
    proc = SidecarProcess(good_rules, env=env, args=flags).start()
    try:
        url = f"{proc.http_url}/v1/admin/openapi.json"
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert resp.status == 200
        assert (tmp_path / "data" / "viva.db").exists()
    finally:
        proc.stop()


def test_unknown_variables_are_reported_at_start(good_rules: Path) -> None:
    proc = SidecarProcess(good_rules, env={"REDIS_ADRR": "redis:6379", "MODE": "standalone",
                                           "VIVA_WORKERZ": "2"}).start()
    try:
        eventually(lambda: "did you mean `VIVA_WORKERS`?" in proc.log())
    finally:
        assert proc.stop() == 0
    log = proc.log()
    assert "WARNING sidecar.settings: `REDIS_ADRR` is not a setting; did you mean " \
        "`REDIS_ADDR`?" in log
    assert "`MODE`" not in log  # a variable that is read: not a word about it


def test_serve_on_a_taken_port_exits_1(good_rules: Path) -> None:
    first = SidecarProcess(good_rules).start()
    try:
        result = run("serve", "--config", str(good_rules), "--grpc-port", str(first.grpc_port),
                     "--http-port", str(free_port()), "--debug-port", str(free_port()))
    finally:
        first.stop()
    assert result.returncode == 1
    assert "cannot" in result.stderr and "Traceback" not in result.stderr


def test_force_start_without_valid_rules(bad_rules: Path) -> None:
    proc = SidecarProcess(bad_rules, env={"FORCE_START_WITHOUT_INITIAL_CONFIG": "true"}).start()
    try:
        result = run("check", "--address", proc.grpc_address, "--domain", "first",
                     "--descriptor", "k=v")
        assert result.returncode == 1
        assert "UNAVAILABLE: no rate limit configuration loaded" in result.stderr
    finally:
        assert proc.stop() == 0


def test_sigterm_drains_and_exits_0(good_rules: Path) -> None:
    proc = SidecarProcess(good_rules).start()
    try:
        eventually(lambda: urllib.request.urlopen(f"{proc.http_url}/healthcheck").status == 200)
        for expected in (0, 0, 0, 3):  # three a minute: the 4th is over the limit
            result = run("check", "--address", proc.grpc_address, "--domain", "test-domain",
                         "--descriptor", "three=cli")
            assert result.returncode == expected, result.stderr
        assert json.loads(result.stdout)["overallCode"] == "OVER_LIMIT"
    finally:
        code = proc.stop()
    assert code == 0
    assert "shutting down" in proc.log()


def test_serve_logs_its_settings_at_debug_level_without_secrets(good_rules: Path) -> None:
    proc = SidecarProcess(good_rules, env={"LOG_LEVEL": "debug", "REDIS_AUTH": "hunter2",
                                           "NEAR_LIMIT_RATIO": "0.5"}).start()
    try:
        line = eventually(lambda: next((x for x in proc.log().splitlines()
                                        if "sidecar.settings: settings:" in x), None))
    finally:
        proc.stop()
    assert "'REDIS_AUTH': '***'" in line and "'NEAR_LIMIT_RATIO': 0.5" in line
    assert "hunter2" not in proc.log()
