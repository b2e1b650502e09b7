"""The Ruby SDK (sdk/ruby): its Minitest suite against real sidecar processes, and the gem.

`rake test` runs the client and its failure modes, the Rack middleware (under Rack::Lint and
behind a real WEBrick server) and every vector of sdk/contract, client and middleware; it
needs Debian's ruby, rake, ruby-minitest, ruby-rack, ruby-rack-test and ruby-webrick.
"""

from __future__ import annotations

import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.sdk.toolchain import in_ci, require, run_suite, tail
from tests.servers import ROOT

pytestmark = pytest.mark.sdk

RUBY = ROOT / "sdk" / "ruby"
SUMMARY = re.compile(r"(\d+) runs, (\d+) assertions, (\d+) failures, (\d+) errors, (\d+) skips")


def test_ruby_sdk() -> None:
    tools = require("ruby", "rake")
    output = run_suite([tools["rake"], "test"], cwd=RUBY, timeout=600).output
    found = SUMMARY.findall(output)
    assert found, f"no Minitest summary:\n{tail(output)}"
    runs, _, failures, errors, skips = (int(n) for n in found[-1])
    assert runs > 0 and failures == errors == 0, found[-1]
    if in_ci():  # a skip means a missing server, which CI must not hide
        assert skips == 0, f"{skips} skipped:\n{tail(output)}"
    assert "warning:" not in output, tail(output)  # the suite runs with ruby -w


def test_ruby_gem_builds(tmp_path: Path) -> None:
    tools = require("gem")
    gem = tmp_path / "viva-rate_limiter.gem"
    done = subprocess.run(
        [tools["gem"], "build", "viva-rate_limiter.gemspec", "--output", str(gem)],
        cwd=RUBY,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with tarfile.open(gem) as archive:
        names = archive.getnames()
        assert {"metadata.gz", "data.tar.gz"} <= set(names)
        data = archive.extractfile("data.tar.gz")
        assert data is not None
        with tarfile.open(fileobj=data, mode="r:gz") as files:
            packed = set(files.getnames())
    assert {
        "lib/viva/rate_limiter.rb",
        "lib/viva/rate_limiter/middleware.rb",
        "README.md",
    } <= packed
