"""Headless Chromium (Debian's, driven by Playwright: no browser download), axe-core for
accessibility, and screenshots for people to look at.

axe-core is fetched once with ``npm pack`` at a pinned version (npm checks the tarball
against the registry's integrity hash) into tests/artifacts/cache/, which git ignores: the
suite needs no third-party browser code in the repository, and CI already reaches the npm
registry for the Node SDK.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from tests.support import ROOT
from tests.support.servers import missing

AXE_VERSION = "4.14.1"
ARTIFACTS = ROOT / "tests" / "artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
CACHE = ARTIFACTS / "cache"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
# What axe must never find on a page.
BLOCKING = ("serious", "critical")


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        missing("chromium (Debian's package)")
    return str(found)


def axe_source() -> str:
    """axe.min.js of AXE_VERSION, from the npm registry the first time."""
    target = CACHE / f"axe-core-{AXE_VERSION}.min.js"
    if target.exists():
        return target.read_text()
    if shutil.which("npm") is None:
        missing("npm (to fetch axe-core)")
    CACHE.mkdir(parents=True, exist_ok=True)
    packed = subprocess.run(["npm", "pack", f"axe-core@{AXE_VERSION}", "--json",
                             "--pack-destination", str(CACHE)], capture_output=True,
                            text=True, timeout=300, check=True)
    tarball = CACHE / json.loads(packed.stdout)[0]["filename"]
    with tarfile.open(tarball) as archive:
        member = archive.extractfile("package/axe.min.js")
        assert member is not None
        target.write_bytes(member.read())
    tarball.unlink()
    return target.read_text()


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)


def check_accessibility(page: Any, name: str) -> list[dict[str, Any]]:
    """Run axe-core on the page (WCAG 2.x A and AA rules and best practices); fail on any
    serious or critical violation; return the lesser ones."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        # Evaluated through the DevTools protocol: the page's CSP (script-src 'self') does
        # not apply, and the page itself stays as it is served.
        page.evaluate(axe_source())
    violations: list[dict[str, Any]] = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))")
    blocking = [v for v in violations if v["impact"] in BLOCKING]
    assert not blocking, f"{name}: {json.dumps(blocking, indent=1)}"
    return [v for v in violations if v["impact"] not in BLOCKING]


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def look(page: Any, name: str) -> list[dict[str, Any]]:
    """What each page gets: a screenshot, then the accessibility check."""
    screenshot(page, name)
    return check_accessibility(page, name)
