"""The Ruby SDK (sdk/ruby) with its own toolchain: `rake test` runs the client and its failure
modes, the Rack middleware (under Rack::Lint and behind a real WEBrick server) and every vector
of sdk/contract, client and middleware, against real sidecars, with `ruby -w`; `gem build`
packs the gem. Debian's ruby, rake, ruby-minitest, ruby-rack, ruby-rack-test and ruby-webrick."""

from __future__ import annotations

import os
import re
import tarfile
from pathlib import Path

import pytest

from tests.sdk.toolchain import SDK, run, sdk_env, tool

pytestmark = pytest.mark.sdk
RUBY = SDK / "ruby"
SUMMARY = re.compile(r"(\d+) runs, (\d+) assertions, (\d+) failures, (\d+) errors, (\d+) skips")


def test_ruby_sdk() -> None:
    tool("ruby")
    output = run([tool("rake"), "test"], RUBY, sdk_env(), timeout=600)
    found = SUMMARY.findall(output)
    assert found, output
    runs, _, failures, errors, skips = (int(n) for n in found[-1])
    assert runs > 0 and failures == errors == 0, output
    if os.environ.get("CI"):  # a skip means a missing server, which CI must not hide
        assert skips == 0, output
    assert "warning:" not in output, output


def test_ruby_gem_builds(tmp_path: Path) -> None:
    gem = tmp_path / "viva-rate_limiter.gem"
    run([tool("gem"), "build", "viva-rate_limiter.gemspec", "--output", str(gem)], RUBY)
    with tarfile.open(gem) as archive:
        data = archive.extractfile("data.tar.gz")
        assert data is not None
        with tarfile.open(fileobj=data, mode="r:gz") as files:
            packed = set(files.getnames())
    assert {"lib/viva/rate_limiter.rb", "lib/viva/rate_limiter/middleware.rb",
            "README.md"} <= packed
