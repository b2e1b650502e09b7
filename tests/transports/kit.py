"""Run the whole sidecar in-process on free loopback ports, with a temporary rules folder."""

from __future__ import annotations

import os
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sidecar.app import Sidecar
from sidecar.settings import Settings
from tests.support.ports import free_port

RULES = """
domain: test-domain
descriptors:
  - key: three
    rate_limit: {unit: minute, requests_per_unit: 3}
  - key: key4
    rate_limit: {unit: day, requests_per_unit: 1, name: key4_rate_limit}
  - key: one
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: two
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: route
    descriptors:
      - key: method
        rate_limit: {unit: second, requests_per_unit: 50}
  - key: free
    rate_limit: {unlimited: true}
"""

LOOPBACK = {"HOST": "127.0.0.1", "GRPC_HOST": "127.0.0.1", "DEBUG_HOST": "127.0.0.1"}


@dataclass
class Running:
    sidecar: Sidecar
    rules_dir: Path

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.sidecar.settings.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.sidecar.settings.port}"

    @property
    def debug_url(self) -> str:
        return f"http://127.0.0.1:{self.sidecar.settings.debug_port}"


def write_rules(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text))


def make_settings(rules_dir: Path, env: dict[str, str] | None = None) -> Settings:
    """Settings from ``env`` only, except VIVA_NATIVE: the suites run on both paths (CI runs
    them a second time with VIVA_NATIVE=false), in-process sidecars as the processes do."""
    flags = {"config": str(rules_dir), "grpc_port": free_port(), "http_port": free_port(),
             "debug_port": free_port()}
    path = {"VIVA_NATIVE": os.environ["VIVA_NATIVE"]} if "VIVA_NATIVE" in os.environ else {}
    return Settings.load(flags=flags, env={**LOOPBACK, "VIVA_RELOAD_POLL_INTERVAL": "0",
                                           **path, **(env or {})})


@asynccontextmanager
async def running(tmp_path: Path, files: dict[str, str] | None = None,
                  env: dict[str, str] | None = None,
                  clock: Callable[[], float] = time.time) -> AsyncIterator[Running]:
    """A started Sidecar; stopped (if the test did not) on the way out."""
    rules_dir = tmp_path / "rules"
    write_rules(rules_dir, {"rules.yaml": RULES} if files is None else files)
    sidecar = Sidecar(make_settings(rules_dir, env), clock=clock)
    await sidecar.start()
    try:
        yield Running(sidecar, rules_dir)
    finally:
        await sidecar.stop()


def request(domain: str, *descriptors: ratelimit_pb2.RateLimitDescriptor,
            hits: int = 0) -> rls_pb2.RateLimitRequest:
    return rls_pb2.RateLimitRequest(domain=domain, descriptors=descriptors, hits_addend=hits)


def descriptor(*pairs: tuple[str, str], hits: int | None = None,
               limit: tuple[int, int] | None = None) -> ratelimit_pb2.RateLimitDescriptor:
    d = ratelimit_pb2.RateLimitDescriptor(
        entries=[ratelimit_pb2.RateLimitDescriptor.Entry(key=k, value=v) for k, v in pairs])
    if hits is not None:
        d.hits_addend.value = hits
    if limit is not None:
        d.limit.requests_per_unit, d.limit.unit = limit
    return d


@asynccontextmanager
async def rls_stub(address: str) -> AsyncIterator[rls_pb2_grpc.RateLimitServiceStub]:
    async with grpc.aio.insecure_channel(address) as channel:
        yield rls_pb2_grpc.RateLimitServiceStub(channel)


async def health_status(address: str, service: str) -> str:
    """The gRPC health status name of ``service`` (raises grpc.aio.AioRpcError)."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
