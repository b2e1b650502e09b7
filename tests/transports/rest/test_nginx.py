"""End to end: nginx auth_request → /v1/forward-auth of a sidecar process; 200s then 429s."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.transports.rest.kit import LOOPBACK, RestSidecar, write_rules
from tests.transports.rest.nginx import NginxProcess


@pytest.fixture
def nginx(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[NginxProcess]:
    sidecar = RestSidecar(write_rules(tmp_path / "rules", unit="hour"), env=LOOPBACK).start()
    query = getattr(request, "param", "?deny_status=403")
    proxy: NginxProcess | None = None
    try:
        proxy = NginxProcess(sidecar.http_port, query)  # skips (fails in CI) without nginx
        proxy.start()
        yield proxy
    finally:
        if proxy is not None:
            proxy.stop()
        sidecar.stop()


def test_allowed_then_429_with_retry_after(nginx: NginxProcess) -> None:
    replies = [nginx.get("/orders") for _ in range(5)]
    assert [r.status for r in replies] == [200, 200, 200, 429, 429], nginx.error_log()
    ok, refused = replies[0], replies[3]
    assert ok.body == b"hello from the app\n"
    assert ok.headers["ratelimit-policy"] == '"identifier";q=3;w=3600'
    assert ok.headers["ratelimit"].startswith('"identifier";r=2;t=')
    assert (ok.headers["x-ratelimit-limit"], ok.headers["x-ratelimit-remaining"]) == ("3", "2")
    assert "retry-after" not in ok.headers
    assert json.loads(refused.body) == {"error": "rate limit exceeded"}
    assert 1 <= int(refused.headers["retry-after"]) <= 3600
    assert refused.headers["retry-after"] == refused.headers["x-ratelimit-reset"]
    assert refused.headers["ratelimit"].startswith('"identifier";r=0;t=')
    assert refused.headers["x-ratelimit-remaining"] == "0"


def test_each_client_address_has_its_own_budget(nginx: NginxProcess) -> None:
    assert [nginx.get(client="198.51.100.1").status for _ in range(4)] == [200, 200, 200, 429]
    assert nginx.get(client="198.51.100.2").status == 200


@pytest.mark.parametrize("nginx", [""], indirect=True)
def test_why_deny_status_403(nginx: NginxProcess) -> None:
    """auth_request treats any status but 2xx, 401 and 403 as an error: a plain 429 from the
    subrequest reaches the client as a 500, hence ?deny_status=403 and error_page 403."""
    assert [nginx.get().status for _ in range(4)] == [200, 200, 200, 500]
    assert "auth request unexpected status: 429" in nginx.error_log()
