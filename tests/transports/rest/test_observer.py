"""The service's decision observer, through the REST endpoints over real HTTP on a real engine:
it hears every decision of the methods it observes (the domain, the descriptors as the engine
got them, the Decision) and nothing else; it can be set after the transports made their
methods, and removed; a failing observer changes no answer and is logged once."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from sidecar.model import Code, Decision, Descriptor
from sidecar.service import RateLimitService
from sidecar.storage.memory import MemoryStore
from tests.conftest import FakeClock
from tests.transports.rest.kit import Rest, serve_rest, write_rules

Heard = tuple[str, list[tuple[tuple[tuple[str, str], ...], int | None]], Code]


@pytest.fixture
async def rest(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Rest]:
    async with serve_rest(write_rules(tmp_path / "rules"), MemoryStore(), clock=clock) as api:
        yield api


def listen(service: RateLimitService, names: Sequence[str]) -> list[Heard]:
    heard: list[Heard] = []

    def observer(domain: str, descriptors: Sequence[Descriptor], decision: Decision) -> None:
        heard.append((domain, [(d.entries, d.hits_addend) for d in descriptors],
                      decision.overall))

    service.observe(observer, names)
    return heard


async def test_it_hears_each_decision_of_the_methods_it_observes(rest: Rest) -> None:
    assert rest.service is not None
    heard = listen(rest.service, ("rest_check", "rest_report", "forward_auth"))
    for _ in range(4):  # 3 a minute per identifier
        await rest.check(namespace="api_requests", identifier="u1")
    await rest.check(namespace="api_requests", identifier="u2", hits=0)
    report = await rest.report(namespace="shop", descriptors=[[{"key": "user",
                                                                "value": "ann"}]], hits=2)
    assert report.status == 200, report.body
    auth = await rest.request("GET", "/v1/forward-auth", headers={
        "X-RateLimit-Namespace": "api_requests", "X-Forwarded-For": "10.0.0.7"})
    assert auth.status == 200
    lease = await rest.post("/v1/leases", {"namespace": "ws", "identifier": "u1"})
    assert lease.status == 200  # a lease is not a decision of an observed method
    bad = await rest.check(namespace="api_requests")  # refused before the engine
    assert bad.status == 400
    u1 = (("identifier", "u1"),)
    assert heard == [
        *[("api_requests", [(u1, 1)], Code.OK)] * 3,
        ("api_requests", [(u1, 1)], Code.OVER_LIMIT),
        ("api_requests", [((("identifier", "u2"),), 0)], Code.OK),
        ("shop", [((("user", "ann"),), 2)], Code.OK),
        ("api_requests", [((("identifier", "10.0.0.7"),), 1)], Code.OK),
    ]


async def test_only_the_named_methods_are_observed_and_none_after_removal(rest: Rest) -> None:
    assert rest.service is not None
    heard = listen(rest.service, ("rest_report",))
    await rest.check(namespace="api_requests", identifier="u1")
    await rest.report(namespace="api_requests", identifier="u1")
    assert [domain for domain, _, _ in heard] == ["api_requests"]
    rest.service.observe(None, ("rest_report",))
    await rest.report(namespace="api_requests", identifier="u1")
    assert len(heard) == 1
    # a method made after observe() starts with the observer too
    listen(rest.service, ("rest_check",))
    assert rest.service.method("rest_check", "other").observer is not None
    assert rest.service.method("rest_report", "other").observer is None


async def test_a_failing_observer_changes_no_answer_and_is_logged_once(
        rest: Rest, caplog: pytest.LogCaptureFixture) -> None:
    assert rest.service is not None

    def broken(domain: str, descriptors: Sequence[Descriptor], decision: Decision) -> None:
        raise RuntimeError("observer bug")

    rest.service.observe(broken, ("rest_check",))
    with caplog.at_level(logging.DEBUG, logger="sidecar.service"):
        answers = [await rest.check(namespace="api_requests", identifier="u9")
                   for _ in range(4)]
    assert [(a.status, a.body["allowed"], a.body["remaining"]) for a in answers] == [
        (200, True, 2), (200, True, 1), (200, True, 0), (200, False, 0)]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "decision observer of rest_check failed" in errors[0].message
    assert errors[0].exc_info is not None
