"""GrpcClient and AsyncGrpcClient: RLS straight to the sidecar's gRPC port, same answers."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from viva_ratelimit_client import Client, InvalidRequest, RetryPolicy, SidecarUnavailable
from viva_ratelimit_client.grpc_client import AsyncGrpcClient, GrpcClient

from tests.support.ports import free_port
from tests.transports.rest.kit import RestSidecar

NS = "api_requests"
FAST = RetryPolicy(attempts=2, backoff=0.01)


@pytest.fixture
def grpc_client(sidecar: RestSidecar) -> Iterator[GrpcClient]:
    with GrpcClient(sidecar.grpc_address, timeout=5) as c:
        yield c


@pytest.fixture
def rest_client(sidecar: RestSidecar) -> Iterator[Client]:
    with Client(sidecar.http_url, timeout=5) as c:
        yield c


def test_allow_then_refuse(grpc_client: GrpcClient, user: str) -> None:
    assert [grpc_client.allow(user, NS) for _ in range(5)] == [True, True, True, False, False]


def same(result: object) -> dict[str, object]:
    """A result's fields but reset_at (two calls may straddle a second)."""
    fields = dataclasses.asdict(result)  # type: ignore[call-overload]
    fields.pop("reset_at")
    for item in fields["results"]:
        item.pop("reset_at")
    return fields  # type: ignore[no-any-return]


@pytest.mark.parametrize("hits", [1, 3, 0])
def test_answers_match_the_rest_client(grpc_client: GrpcClient, rest_client: Client,
                                       user: str, hits: int) -> None:
    grpc_client.check(user, NS, hits)
    over_grpc, over_rest = grpc_client.peek(user, NS), rest_client.peek(user, NS)
    assert same(over_grpc) == same(over_rest)
    assert over_grpc.headers() == over_rest.headers()


def test_descriptors_match_the_rest_client(grpc_client: GrpcClient, rest_client: Client,
                                           user: str) -> None:
    descriptors = [{"user": user}, {"route": f"/{user}", "method": "GET"}, {"user": "x" + user},
                   {"nothing": "here"}]
    grpc_client.check(None, "shop", 2, descriptors=descriptors)
    over_grpc = grpc_client.peek(None, "shop", descriptors=descriptors)
    over_rest = rest_client.peek(None, "shop", descriptors=descriptors)
    assert same(over_grpc) == same(over_rest)
    assert [r.policy for r in over_grpc.results] == ["per_user", "route.method", "per_user.2",
                                                     None]
    assert over_grpc.headers() == over_rest.headers()
    refused = grpc_client.check(None, "shop", descriptors=descriptors)
    assert not refused.allowed
    assert refused.retry_after_seconds == rest_client.peek(
        None, "shop", descriptors=descriptors).retry_after_seconds


def test_report_charges_past_the_limit(grpc_client: GrpcClient, user: str) -> None:
    assert not grpc_client.report(user, NS, 10).allowed
    assert not grpc_client.allow(user, NS)


def test_unlimited_and_unknown(grpc_client: GrpcClient) -> None:
    assert grpc_client.check("vip", NS).limit is None
    assert grpc_client.check("x", "no_rules_here").limit is None


def test_invalid_argument_is_an_invalid_request(grpc_client: GrpcClient) -> None:
    with pytest.raises(InvalidRequest, match="domain must not be empty"):
        grpc_client._call({"namespace": "", "identifier": "u", "hits": 1})


@pytest.mark.parametrize(("mode", "allowed"), [("open", True), ("closed", False)])
def test_unreachable(mode: str, allowed: bool) -> None:
    with GrpcClient(f"127.0.0.1:{free_port()}", retry=FAST,
                    failure_mode=mode) as c:  # type: ignore[arg-type]
        result = c.check("u", NS)
    assert result.allowed is allowed
    assert result.error is not None and result.error.startswith("UNAVAILABLE")


def test_unreachable_raises_when_asked() -> None:
    with GrpcClient(f"127.0.0.1:{free_port()}", retry=FAST, failure_mode="raise") as c, \
            pytest.raises(SidecarUnavailable):
        c.check("u", NS)


async def test_async_twin(sidecar: RestSidecar, user: str) -> None:
    async with AsyncGrpcClient(sidecar.grpc_address, timeout=5) as c:
        assert [await c.allow(user, NS) for _ in range(4)] == [True, True, True, False]
        peek = await c.peek(user, NS)
        multi = await c.check(None, "shop", descriptors=[{"user": user}])
    assert (peek.allowed, peek.remaining, peek.policy) == (False, 0, "identifier")
    assert [r.remaining for r in multi.results] == [4]


async def test_async_unreachable() -> None:
    async with AsyncGrpcClient(f"127.0.0.1:{free_port()}", retry=FAST,
                               failure_mode="closed") as c:
        assert (await c.check("u", NS)).allowed is False
