"""The Java SDK (sdk/java): its JUnit suite under Maven, against real sidecar processes.

`mvn -B verify` builds the client and the Spring Boot starter and runs every test: the client
and its failure modes, every vector of sdk/contract (client vectors in the client module,
middleware vectors in the starter), the auto-configuration, and a real Spring Boot application
on a random port. The starter is also built and tested against Spring Boot 3.5 (`-Pboot3`).
Dependencies come from Maven Central once, then from ~/.m2.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.sdk.toolchain import in_ci, require, run_suite, tail
from tests.servers import ROOT

pytestmark = pytest.mark.sdk

JAVA = ROOT / "sdk" / "java"


def surefire_counts(module: str) -> dict[str, int]:
    """Tests, failures, errors and skips of a module's last run, from its Surefire reports."""
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for report in (JAVA / module / "target" / "surefire-reports").glob("TEST-*.xml"):
        suite = ET.parse(report).getroot()
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
    return totals


def check_reports(modules: list[str], output: str) -> None:
    for module in modules:
        counts = surefire_counts(module)
        assert counts["tests"] > 0, f"no test ran in {module}:\n{tail(output)}"
        assert counts["failures"] == counts["errors"] == 0, counts
        if in_ci():  # a skip means a missing server, which CI must not hide
            assert counts["skipped"] == 0, f"{module}: {counts}"


def run_maven(*args: str) -> str:
    tools = require("mvn", "java")
    for module in ("client", "spring-boot-starter"):
        clean_reports(JAVA / module / "target" / "surefire-reports")
    return run_suite([tools["mvn"], "-B", "-q", *args], cwd=JAVA, timeout=1200).output


def clean_reports(folder: Path) -> None:
    for report in folder.glob("*"):
        report.unlink()


def test_java_sdk() -> None:
    output = run_maven("verify")
    check_reports(["client", "spring-boot-starter"], output)


def test_spring_boot_starter_on_boot_3_5() -> None:
    output = run_maven(
        "-Pboot3",
        "-pl",
        "spring-boot-starter",
        "-am",
        "verify",
        "-Dtest=io.viva.ratelimit.spring.**",
        "-Dsurefire.failIfNoSpecifiedTests=false",
    )
    check_reports(["spring-boot-starter"], output)
