"""Envoy's ext_authz filter (gRPC) → the sidecar's Authorization/Check, through a real Envoy
running the shipped deploy/envoy/envoy-full.yaml, on both gRPC transports: one call
authenticates and rate-limits (200 / 401 / 403 / 429 with the headers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.envoy import EnvoyProcess
from tests.management.kit import Admin, FullSidecar, write_config
from tests.support import ROOT

BOOTSTRAP = ROOT / "deploy" / "envoy" / "envoy-full.yaml"


@pytest.fixture(params=["fast", "grpcio"])
def stack(request: pytest.FixtureRequest, tmp_path: Path
          ) -> Iterator[tuple[EnvoyProcess, Admin]]:
    sidecar = FullSidecar(write_config(tmp_path / "config"), tmp_path / "data",
                          env={"VIVA_TRANSPORT": request.param}).start()
    proxy = EnvoyProcess.shipped(sidecar.grpc_port, BOOTSTRAP)
    try:
        proxy.start()
        yield proxy, sidecar.api()
    finally:
        proxy.stop()
        sidecar.stop()


@pytest.mark.envoy
def test_ext_authz_authenticates_and_rate_limits_in_one_call(
        stack: tuple[EnvoyProcess, Admin]) -> None:
    envoy, api = stack
    customer = api.customer()
    key = api.key(customer["id"])["key"]

    missing = envoy.request("/orders")
    assert (missing.status, missing.headers["x-viva-code"]) == (401, "MISSING"), envoy.log()
    assert missing.headers["www-authenticate"].startswith("Bearer")
    mistyped = key[:-1] + ("2" if key.endswith("1") else "1")  # always another key
    bad = envoy.request("/orders", headers={"x-api-key": mistyped})
    assert (bad.status, bad.headers["x-viva-code"]) == (401, "NOT_FOUND")

    ok = envoy.request("/orders", headers={"x-api-key": key})
    assert ok.status == 200 and ok.body == b"ok\n", envoy.log()
    assert ok.headers["x-upstream-customer-id"] == customer["id"]
    assert ok.headers["x-upstream-plan"] == "basic"
    assert ok.headers["x-upstream-key-id"].startswith("key_")
    assert ok.headers["ratelimit-policy"] == '"per_minute";q=3;w=3600, "monthly";q=5;w=2592000'
    assert ok.headers["ratelimit"].startswith('"per_minute";r=2;t=')

    # the /exports route requires the feature `exports`, which basic lacks: nothing charged
    forbidden = envoy.request("/exports/1", headers={"authorization": f"Bearer {key}"})
    assert (forbidden.status, forbidden.headers["x-viva-code"]) == (403, "FORBIDDEN")

    spoofed = envoy.request("/orders", headers={"authorization": f"Bearer {key}",
                                                "x-viva-customer-id": "someone-else"})
    assert spoofed.status == 200 and spoofed.headers["x-upstream-customer-id"] == customer["id"]
    assert envoy.request("/orders", headers={"x-api-key": key}).status == 200
    limited = envoy.request("/orders", headers={"x-api-key": key})
    assert (limited.status, limited.headers["x-viva-code"]) == (429, "RATE_LIMITED")
    assert 1 <= int(limited.headers["retry-after"]) <= 3600
    assert limited.headers["ratelimit"].startswith('"per_minute";r=0;t=')
    assert b"rate limit exceeded" in limited.body
    assert envoy.request("/healthz").status == 200  # a public route needs no key

    # the route's cost (viva-cost: 5) is charged when the plan has the feature
    api.patch(f"/v1/customers/{customer['id']}", {"plan": "bigger"})
    export = envoy.request("/exports/1", headers={"x-api-key": key})
    assert export.status == 200 and export.headers["ratelimit"].startswith(
        '"per_minute";r=92;t=')  # 3 charged before, then 5

    api.post(f"/v1/keys/{api.get('/v1/keys')['items'][0]['id']}/revoke")
    revoked = envoy.request("/orders", headers={"x-api-key": key})
    assert (revoked.status, revoked.headers["x-viva-code"]) == (401, "REVOKED")


async def test_many_first_uses_of_a_key_at_once_are_all_answered(tmp_path: Path) -> None:
    """Concurrent ext_authz calls for a key not cached yet each look it up in SQL; on the fast
    transport (calls started eagerly, outside a Task) a lookup waiting for a pooled
    connection must still work: every call VALID, none INTERNAL."""
    import asyncio

    import grpc
    from envoy.service.auth.v3 import external_auth_pb2 as authz

    sidecar = FullSidecar(write_config(tmp_path / "config"), tmp_path / "data").start()
    try:
        api = sidecar.api()
        key = api.key(api.customer(plan="bigger")["id"])["key"]
        request = authz.CheckRequest()
        request.attributes.request.http.headers["x-api-key"] = key
        async with grpc.aio.insecure_channel(sidecar.grpc_address) as channel:
            check = channel.unary_unary("/envoy.service.auth.v3.Authorization/Check",
                                        request_serializer=lambda m: m.SerializeToString(),
                                        response_deserializer=authz.CheckResponse.FromString)
            answers = await asyncio.gather(*(check(request, timeout=20) for _ in range(60)),
                                           return_exceptions=True)
        assert [a if isinstance(a, Exception) else a.status.code for a in answers] == [0] * 60
        assert "unexpected error" not in sidecar.log()
    finally:
        sidecar.stop()
