"""ghz (a Go gRPC load tool built on grpc-go) against the fast transport: another independent
client implementation, driven by a protoset made from xds-protos' own descriptors.

Install (CI does this before the tests; when CI is set a missing tool fails the test):
    GOBIN=$HOME/go/bin go install github.com/bojand/ghz/cmd/ghz@v0.93.0
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from envoy.service.ratelimit.v3 import rls_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor

from tests.h2.conftest import ThreadedServer, find_tool

# Also on the whole native path: the native engine answering inside Rust (conftest.py).
RUST_ENGINE = True

GHZ = "go install github.com/bojand/ghz/cmd/ghz@v0.93.0"
CALL = "envoy.service.ratelimit.v3.RateLimitService.ShouldRateLimit"


def protoset(path: Path) -> Path:
    """A FileDescriptorSet of rls.proto and everything it imports, from the Python package."""
    files: dict[str, FileDescriptor] = {}

    def add(fd: FileDescriptor) -> None:
        if fd.name in files:
            return
        for dep in fd.dependencies:
            add(dep)
        files[fd.name] = fd

    add(rls_pb2.DESCRIPTOR)
    out = descriptor_pb2.FileDescriptorSet()
    for fd in files.values():
        fd.CopyToProto(out.file.add())
    path.write_bytes(out.SerializeToString())
    return path


def ghz(server: ThreadedServer, tmp_path: Path, data: dict[str, object],
        total: int) -> dict[str, object]:
    binary = find_tool("ghz", GHZ)
    result = subprocess.run(
        [binary, "--insecure", "--protoset", str(protoset(tmp_path / "rls.protoset")),
         "--call", CALL, "-d", json.dumps(data), "-n", str(total), "-c", "8",
         "--connections", "2", "--format", "json", f"127.0.0.1:{server.port}"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    return report


def test_ghz_calls_all_succeed(server: ThreadedServer, tmp_path: Path) -> None:
    data = {"domain": "d", "descriptors": [{"entries": [{"key": "k", "value": "v"}]}]}
    report = ghz(server, tmp_path, data, 2000)
    assert report["statusCodeDistribution"] == {"OK": 2000}
    assert not report.get("errorDistribution")


def test_ghz_sees_invalid_argument(server: ThreadedServer, tmp_path: Path) -> None:
    report = ghz(server, tmp_path, {"domain": "", "descriptors": []}, 50)
    assert report["statusCodeDistribution"] == {"InvalidArgument": 50}
