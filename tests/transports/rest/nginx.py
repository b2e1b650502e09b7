"""Debian's nginx in front of a sidecar: auth_request to /v1/forward-auth, on free ports.

The configuration is the README's "nginx" example, with ports and paths filled in.
"""

from __future__ import annotations

import http.client
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import free_port, wait_port
from tests.support.processes import stop_process
from tests.support.servers import missing

# The README's example, verbatim apart from the {placeholders} and the test-only realip lines.
SITE = """
upstream viva_ratelimit {{
    server 127.0.0.1:{sidecar_port};
    keepalive 16;
}}

server {{
    listen 127.0.0.1:{port};

    # Test only: trust the test client's X-Forwarded-For so it can play several clients.
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;

    location / {{
        auth_request /_ratelimit;
        # Keep the sidecar's headers: auth_request_set reads the subrequest's response.
        auth_request_set $rl_policy      $upstream_http_ratelimit_policy;
        auth_request_set $rl_state       $upstream_http_ratelimit;
        auth_request_set $rl_limit       $upstream_http_x_ratelimit_limit;
        auth_request_set $rl_remaining   $upstream_http_x_ratelimit_remaining;
        auth_request_set $rl_reset       $upstream_http_x_ratelimit_reset;
        auth_request_set $rl_retry_after $upstream_http_retry_after;
        add_header RateLimit-Policy      $rl_policy always;
        add_header RateLimit             $rl_state always;
        add_header X-RateLimit-Limit     $rl_limit always;
        add_header X-RateLimit-Remaining $rl_remaining always;
        add_header X-RateLimit-Reset     $rl_reset always;
        # auth_request passes only 2xx, 401 and 403: the sidecar refuses with 403 here
        # (?deny_status=403) and this turns it into a 429 with Retry-After.
        error_page 403 = @ratelimited;

        proxy_pass http://127.0.0.1:{backend_port};
    }}

    location = /_ratelimit {{
        internal;
        proxy_pass http://viva_ratelimit/v1/forward-auth{auth_query};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_set_header X-RateLimit-Namespace api_requests;
    }}

    location @ratelimited {{
        add_header RateLimit-Policy      $rl_policy always;
        add_header RateLimit             $rl_state always;
        add_header X-RateLimit-Limit     $rl_limit always;
        add_header X-RateLimit-Remaining $rl_remaining always;
        add_header X-RateLimit-Reset     $rl_reset always;
        add_header Retry-After           $rl_retry_after always;
        default_type application/json;
        return 429 '{{"error": "rate limit exceeded"}}\\n';
    }}
}}
"""

# The application behind nginx, played by nginx itself.
BACKEND = """
server {{
    listen 127.0.0.1:{backend_port};
    location / {{
        default_type text/plain;
        return 200 "hello from the app\\n";
    }}
}}
"""

MAIN = """
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{site}
{backend}
}}
"""


def nginx_binary() -> str | None:
    for candidate in ("/usr/sbin/nginx", shutil.which("nginx")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


class NginxProcess:
    """``nginx -p <tmp> -c <tmp>/nginx.conf`` in the foreground, in front of ``sidecar_port``."""

    def __init__(self, sidecar_port: int, auth_query: str = "?deny_status=403") -> None:
        binary = nginx_binary()
        if binary is None:
            missing("nginx")
        self.binary = str(binary)
        self.port, self.backend_port = free_port(), free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="viva-nginx-"))
        self.dir.chmod(0o755)  # workers may run as nobody
        site = SITE.format(sidecar_port=sidecar_port, port=self.port,
                           backend_port=self.backend_port, auth_query=auth_query)
        backend = BACKEND.format(backend_port=self.backend_port)
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(MAIN.format(dir=self.dir, site=site, backend=backend))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> NginxProcess:
        command = [self.binary, "-p", str(self.dir), "-c", str(self.conf),
                   "-e", str(self.dir / "error.log")]
        test = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
        if test.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{test.stderr}")
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def error_log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def get(self, path: str = "/", client: str = "203.0.113.7") -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", path, headers={"X-Forwarded-For": client})
            resp = conn.getresponse()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()
