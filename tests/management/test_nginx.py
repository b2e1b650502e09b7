"""nginx auth_request → /v1/keys/forward-auth with an API key (Debian's nginx, the README's
full-mode example): 200 with the x-viva-* headers upstream, 401, 403 for a missing feature,
429 with Retry-After when over a limit."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.management.kit import Admin, FullSidecar, write_config
from tests.transports.rest.nginx import BACKEND, MAIN, NginxProcess, Reply

# The README's example with ports filled in. auth_request passes 2xx, 401 and 403 on; the
# sidecar answers a rate-limited key with 403 (?deny_status=403) and X-Viva-Code, which the
# @denied location turns back into 429.
SITE = """
upstream viva {{ server 127.0.0.1:{sidecar_port}; keepalive 16; }}

server {{
    listen 127.0.0.1:{port};

    location / {{
        auth_request /_viva_key;
        auth_request_set $viva_code        $upstream_http_x_viva_code;
        auth_request_set $viva_customer    $upstream_http_x_viva_customer_id;
        auth_request_set $viva_plan        $upstream_http_x_viva_plan;
        auth_request_set $viva_ratelimit   $upstream_http_ratelimit;
        auth_request_set $viva_retry_after $upstream_http_retry_after;
        add_header RateLimit $viva_ratelimit always;
        error_page 403 = @denied;
        proxy_set_header X-Viva-Customer-Id $viva_customer;
        proxy_set_header X-Viva-Plan $viva_plan;
        proxy_pass http://127.0.0.1:{backend_port};
    }}

    location /reports {{
        auth_request /_viva_key_reports;
        auth_request_set $viva_code $upstream_http_x_viva_code;
        error_page 403 = @denied;
        proxy_pass http://127.0.0.1:{backend_port};
    }}

    location = /_viva_key {{
        internal;
        proxy_pass http://viva/v1/keys/forward-auth?deny_status=403;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        proxy_set_header X-Forwarded-For $remote_addr;
    }}

    location = /_viva_key_reports {{
        internal;
        proxy_pass http://viva/v1/keys/forward-auth?deny_status=403&feature=exports;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        proxy_set_header X-Forwarded-For $remote_addr;
    }}

    location @denied {{
        default_type application/json;
        add_header X-Viva-Code $viva_code always;
        add_header Retry-After $viva_retry_after always;
        if ($viva_code = RATE_LIMITED) {{ return 429 '{{"error": "rate limit exceeded"}}\\n'; }}
        if ($viva_code = QUOTA_EXCEEDED) {{ return 429 '{{"error": "quota exceeded"}}\\n'; }}
        return 403 '{{"error": "forbidden"}}\\n';
    }}
}}
"""


class KeyNginx(NginxProcess):
    def __init__(self, sidecar_port: int) -> None:
        super().__init__(sidecar_port)
        site = SITE.format(sidecar_port=sidecar_port, port=self.port,
                           backend_port=self.backend_port)
        echo = BACKEND.format(backend_port=self.backend_port).replace(
            'return 200 "hello from the app\\n";',
            'add_header X-Saw-Customer $http_x_viva_customer_id always;\n'
            '        return 200 "hello from the app\\n";')
        self.conf.write_text(MAIN.format(dir=self.dir, site=site, backend=echo))

    def call(self, path: str, key: str | None) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", path, headers={"X-Api-Key": key} if key else {})
            resp = conn.getresponse()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[KeyNginx, Admin]]:
    sidecar = FullSidecar(write_config(tmp_path / "config"), tmp_path / "data").start()
    nginx = KeyNginx(sidecar.http_port)
    try:
        nginx.start()
        yield nginx, sidecar.api()
    finally:
        nginx.stop()
        sidecar.stop()


def test_nginx_forward_auth_with_a_key(stack: tuple[KeyNginx, Admin]) -> None:
    nginx, api = stack
    customer = api.customer()
    key = api.key(customer["id"])["key"]
    assert nginx.call("/orders", None).status == 401
    assert nginx.call("/orders", key[:-2] + "zz").status == 401
    ok = nginx.call("/orders", key)
    assert ok.status == 200 and ok.body == b"hello from the app\n", nginx.error_log()
    assert ok.headers["x-saw-customer"] == customer["id"]
    assert ok.headers["ratelimit"].startswith('"per_minute";r=2;t=')
    forbidden = nginx.call("/reports", key)
    assert (forbidden.status, forbidden.headers["x-viva-code"]) == (403, "FORBIDDEN")
    assert [nginx.call("/orders", key).status for _ in range(3)] == [200, 200, 429]
    limited = nginx.call("/orders", key)
    assert limited.status == 429 and limited.headers["x-viva-code"] == "RATE_LIMITED"
    assert 1 <= int(limited.headers["retry-after"]) <= 3600
