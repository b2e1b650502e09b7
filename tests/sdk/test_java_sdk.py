"""The Java SDK (sdk/java) with its own toolchain: `mvn -B verify` builds the client and the
Spring Boot starter and runs their JUnit suites against real sidecars: the client and its
failure modes, every vector of sdk/contract (client vectors in the client module, middleware
vectors in the starter), the auto-configuration, and a real Spring Boot application on a random
port. The starter is built and tested again against Spring Boot 3.5 (`-Pboot3`). Dependencies
come from Maven Central once, then from ~/.m2."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import pytest

from tests.sdk.toolchain import SDK, run, sdk_env, tool

pytestmark = pytest.mark.sdk
JAVA = SDK / "java"


def surefire_counts(module: str) -> dict[str, int]:
    """Tests, failures, errors and skips of a module's last run, from its Surefire reports."""
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for report in (JAVA / module / "target" / "surefire-reports").glob("TEST-*.xml"):
        suite = ET.parse(report).getroot()
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
    return totals


def maven(*args: str, modules: list[str]) -> None:
    mvn, env = tool("mvn"), sdk_env()
    tool("java")
    for module in modules:  # reports of an earlier run must not count
        for report in (JAVA / module / "target" / "surefire-reports").glob("*"):
            report.unlink()
    output = run([mvn, "-B", "-q", *args], JAVA, env, timeout=1200)
    for module in modules:
        counts = surefire_counts(module)
        assert counts["tests"] > 0, f"no test ran in {module}:\n{output[-12000:]}"
        assert counts["failures"] == counts["errors"] == 0, counts
        if os.environ.get("CI"):  # a skip means a missing server, which CI must not hide
            assert counts["skipped"] == 0, f"{module}: {counts}"


def test_java_sdk() -> None:
    maven("verify", modules=["client", "spring-boot-starter"])


def test_spring_boot_starter_on_boot_3_5() -> None:
    maven("-Pboot3", "-pl", "spring-boot-starter", "-am", "verify",
          "-Dtest=io.viva.ratelimit.spring.**", "-Dsurefire.failIfNoSpecifiedTests=false",
          modules=["spring-boot-starter"])
