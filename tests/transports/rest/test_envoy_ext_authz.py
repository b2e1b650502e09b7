"""End to end: Envoy's HTTP ext_authz filter → /v1/forward-auth of a sidecar process.

The bootstrap is the README's ext_authz example with ports filled in; the app is a
direct_response route. The sidecar reads the last X-Forwarded-For address, the one Envoy
appended (use_remote_address), so a client cannot pick its own identifier.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.envoy import EnvoyProcess
from tests.support.ports import free_port
from tests.transports.rest.kit import LOOPBACK, RestSidecar, write_rules

BOOTSTRAP = """
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
static_resources:
  listeners:
  - name: ingress
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listener}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {hcm}
          stat_prefix: ingress
          use_remote_address: true          # Envoy appends the peer to X-Forwarded-For
          route_config:
            virtual_hosts:
            - name: app
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                direct_response: {{status: 200, body: {{inline_string: "hello from the app"}}}}
          http_filters:
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              failure_mode_allow: true        # the sidecar unreachable: let traffic through
              allowed_headers:                # request headers the sidecar gets
                patterns: [{{exact: x-forwarded-for, ignore_case: true}}]
              http_service:
                server_uri:
                  {{uri: "http://127.0.0.1:{sidecar}", cluster: viva_rest, timeout: 0.25s}}
                path_prefix: /v1/forward-auth
                authorization_request:
                  headers_to_add: [{{key: X-RateLimit-Namespace, value: api_requests}}]
                authorization_response:
                  allowed_client_headers:             # refused: to the client with the 429
                    patterns:
                    - {{exact: retry-after, ignore_case: true}}
                    - {{prefix: ratelimit, ignore_case: true}}
                    - {{prefix: x-ratelimit, ignore_case: true}}
                  allowed_client_headers_on_success:  # allowed: added to the app's response
                    patterns:
                    - {{prefix: ratelimit, ignore_case: true}}
                    - {{prefix: x-ratelimit, ignore_case: true}}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: viva_rest
    type: STATIC
    load_assignment:
      cluster_name: viva_rest
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {sidecar}}}}}}}
"""
HCM = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
       "HttpConnectionManager")


@pytest.fixture
def envoy(tmp_path: Path) -> Iterator[EnvoyProcess]:
    env = {**LOOPBACK, "VIVA_FORWARD_AUTH_XFF_INDEX": "-1"}
    sidecar = RestSidecar(write_rules(tmp_path / "rules", unit="hour"), env=env).start()
    admin, listener = free_port(), free_port()
    bootstrap = BOOTSTRAP.format(admin=admin, listener=listener, sidecar=sidecar.http_port,
                                 hcm=HCM)
    proxy = EnvoyProcess(bootstrap, admin, listener)
    try:
        proxy.start()
        yield proxy
    finally:
        proxy.stop()
        sidecar.stop()


@pytest.mark.envoy
def test_allowed_then_429_through_envoy(envoy: EnvoyProcess) -> None:
    replies = [envoy.request("/orders/42", headers={"X-Forwarded-For": f"6.6.6.{n}"})
               for n in range(5)]  # a forged address each time: still one client
    assert [r.status for r in replies] == [200, 200, 200, 429, 429], envoy.log()
    ok, refused = replies[0], replies[3]
    assert ok.body == b"hello from the app"
    assert ok.headers["ratelimit-policy"] == '"identifier";q=3;w=3600'
    assert ok.headers["x-ratelimit-remaining"] == "2"
    assert 1 <= int(refused.headers["retry-after"]) <= 3600
    assert refused.headers["ratelimit"].startswith('"identifier";r=0;t=')
