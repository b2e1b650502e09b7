"""Two full-mode sidecar processes on one PostgreSQL and one Redis: a revocation made on one
is answered by the other within a second, and the plan's limits are shared."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.management.kit import FullSidecar, write_config
from tests.management.postgres import PostgresServer
from tests.support.servers import RedisServer


@pytest.fixture
def pair(tmp_path: Path, postgres: PostgresServer, redis_clean: RedisServer
         ) -> Iterator[tuple[FullSidecar, FullSidecar]]:
    config = write_config(tmp_path / "config")
    env = {"VIVA_DATABASE_URL": postgres.url, "REDIS_URL": redis_clean.url,
           "REDIS_TIMEOUT": "1s"}
    first = FullSidecar(config, tmp_path / "a", env=env)
    second = FullSidecar(config, tmp_path / "b", env=env)
    first.start(wait=False)
    second.start(wait=False)  # both migrate the same database at once
    try:
        for process in (first, second):
            process.start_wait()
        yield first, second
    finally:
        first.stop()
        second.stop()


@pytest.mark.redis
def test_a_revocation_reaches_the_other_instance_within_a_second(
        pair: tuple[FullSidecar, FullSidecar]) -> None:
    a, b = (p.api() for p in pair)
    customer = a.customer()
    made = a.key(customer["id"])
    key = made["key"]
    # created on A, valid on B at once (never cached there before)
    assert b.code(key) == "VALID"
    assert a.code(key) == "VALID"
    assert b.code(key) == "VALID"
    assert a.code(key) == "RATE_LIMITED"  # 3 per hour, counted in the shared Redis
    assert b.code(key) == "RATE_LIMITED"

    second_key = a.key(customer["id"])["key"]
    assert b.code(second_key) == "RATE_LIMITED"  # the customer's keys share its limits
    assert a.post(f"/v1/keys/{made['id']}/revoke").status == 200
    revoked_at = time.monotonic()
    codes = []
    while time.monotonic() - revoked_at < 3.0:
        codes.append(b.code(key))
        if codes[-1] == "REVOKED":
            break
        time.sleep(0.02)
    assert codes[-1] == "REVOKED", codes
    assert time.monotonic() - revoked_at < 1.0, f"B answered {codes}"
