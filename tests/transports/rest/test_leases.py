"""/v1/leases on memory and on Redis, through the real HTTP transport: acquire, renew, release,
the answers, the errors, and the rate check's read of a concurrency limit."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sidecar.storage.memory import MemoryStore
from sidecar.storage.redis.options import RedisOptions
from sidecar.storage.redis.store import RedisStore
from tests.conftest import FakeClock
from tests.support.ports import free_port
from tests.transports.rest.kit import Reply, Rest, serve_rest, write_rules

WS = {"namespace": "ws", "identifier": "user_1"}


async def acquire(rest: Rest, **body: Any) -> Reply:
    return await rest.post("/v1/leases", {**WS, **body})


async def renew(rest: Rest, lease_id: str, body: Any = "") -> Reply:
    return await rest.post(f"/v1/leases/{lease_id}/renew", body)


async def release(rest: Rest, lease_id: str) -> Reply:
    return await rest.request("DELETE", f"/v1/leases/{lease_id}")


def at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp()


async def test_the_whole_answer(rest: Rest) -> None:
    reply = await acquire(rest)
    assert reply.status == 200
    body = reply.body
    assert list(body) == ["allowed", "lease_id", "active", "limit", "expires_at", "ttl_seconds",
                          "retry_after_seconds", "policy"]
    assert (body["allowed"], body["active"], body["limit"], body["ttl_seconds"],
            body["retry_after_seconds"], body["policy"]) == (True, 1, 5, 60.0, None,
                                                            "identifier")
    assert body["expires_at"].endswith("Z") and "." in body["expires_at"]  # milliseconds
    token, dot, _ = body["lease_id"].partition(".")
    assert len(token) == 24 and dot
    assert not any(name.lower().startswith(("ratelimit", "x-ratelimit", "retry-after"))
                   for name in reply.headers)


async def test_five_allowed_the_sixth_refused_release_frees_a_slot(rest: Rest) -> None:
    taken = [await acquire(rest) for _ in range(5)]
    assert [r.body["active"] for r in taken] == [1, 2, 3, 4, 5]
    sixth = await acquire(rest)
    assert sixth.status == 200  # the decision is in the body
    assert (sixth.body["allowed"], sixth.body["lease_id"], sixth.body["active"],
            sixth.body["expires_at"]) == (False, None, 5, None)
    assert 1 <= sixth.body["retry_after_seconds"] <= 60
    released = await release(rest, taken[0].body["lease_id"])
    assert released.status == 200
    assert released.body == {"released": True, "active": 4, "limit": 5}
    again = await acquire(rest)
    assert (again.body["allowed"], again.body["active"]) == (True, 5)


async def test_renew_extends_and_keeps_the_id(rest: Rest) -> None:
    lease = (await acquire(rest, ttl=10)).body
    assert lease["ttl_seconds"] == 10.0
    renewed = await renew(rest, lease["lease_id"])
    assert renewed.status == 200
    assert renewed.body["lease_id"] == lease["lease_id"]
    assert (renewed.body["allowed"], renewed.body["ttl_seconds"]) == (True, 10.0)
    assert at(renewed.body["expires_at"]) >= at(lease["expires_at"])
    longer = await renew(rest, lease["lease_id"], {"ttl": 30})
    assert longer.body["ttl_seconds"] == 30.0
    assert at(longer.body["expires_at"]) - at(lease["expires_at"]) >= 19.9


async def test_a_lease_that_is_gone_is_404(rest: Rest) -> None:
    lease_id = (await acquire(rest)).body["lease_id"]
    assert (await release(rest, lease_id)).status == 200
    for reply in (await release(rest, lease_id), await renew(rest, lease_id)):
        assert reply.status == 404
        assert reply.body == {"error": "no such lease: it expired, was released, or was "
                                       "never issued", "field": None}
    forged = "A" * 24 + lease_id[24:]  # the same request, another token
    assert (await release(rest, forged)).status == 404
    for bad in ("x", "a%2Fb", "%20", "A" * 24 + ".%FF%FE", "..."):
        for reply in (await release(rest, bad), await renew(rest, bad)):
            assert reply.status == 404, (bad, reply.body)
            assert "is not a lease id" in reply.body["error"]


async def test_a_holder_that_stops_renewing_loses_its_slot(tmp_path: Path,
                                                           clock: FakeClock) -> None:
    """On the fake clock, so the memory store only: Redis measures leases on its own clock
    (test_leases_real_clock.py)."""
    async with serve_rest(write_rules(tmp_path / "rules"), MemoryStore(), clock=clock) as rest:
        await _dies_and_frees(rest, clock)


async def _dies_and_frees(rest: Rest, clock: FakeClock) -> None:
    lease = (await acquire(rest, namespace="ws", identifier="dead", ttl=2)).body
    for _ in range(4):
        await acquire(rest, identifier="dead")
    assert not (await acquire(rest, identifier="dead")).body["allowed"]
    clock.advance(2)
    freed = await acquire(rest, identifier="dead")
    assert (freed.body["allowed"], freed.body["active"]) == (True, 5)
    assert (await renew(rest, lease["lease_id"])).status == 404


async def test_several_descriptors_and_their_results(rest: Rest) -> None:
    descriptors = [[{"key": "export", "value": "u1"}], [{"key": "region", "value": "eu"}],
                   [{"key": "route", "value": "/x"}]]
    first = await rest.post("/v1/leases", {"namespace": "ws", "descriptors": descriptors})
    body = first.body
    assert body["allowed"] and body["policy"] == "exports" and body["ttl_seconds"] == 30.0
    assert [(r["allowed"], r["active"], r["limit"], r["policy"]) for r in body["results"]] == [
        (True, 1, 2, "exports"), (True, 1, 3, "region"), (True, None, None, None)]
    # the lease expires with its earliest slot: export's 30 s before region's 60 s
    assert body["expires_at"] == body["results"][0]["expires_at"]
    await rest.post("/v1/leases", {"namespace": "ws", "descriptors": descriptors})
    refused = (await rest.post("/v1/leases", {"namespace": "ws",
                                               "descriptors": descriptors})).body
    assert (refused["allowed"], refused["policy"], refused["active"]) == (False, "exports", 2)
    assert [r["allowed"] for r in refused["results"]] == [False, True, True]
    assert refused["results"][1]["active"] == 2  # its slot was given back
    released = await release(rest, body["lease_id"])
    assert released.body == {"released": True, "active": 1, "limit": 2}


async def test_no_concurrency_limit_no_lease(rest: Rest) -> None:
    for body in ({"namespace": "api_requests", "identifier": "u"},
                 {"namespace": "nowhere", "identifier": "u"}):
        reply = await rest.post("/v1/leases", body)
        assert reply.status == 200
        assert reply.body == {"allowed": True, "lease_id": None, "active": None, "limit": None,
                              "expires_at": None, "ttl_seconds": None,
                              "retry_after_seconds": None, "policy": None}


async def test_a_rate_check_reads_a_concurrency_limit(rest: Rest) -> None:
    for _ in range(2):
        await acquire(rest, identifier="reader")
    for _ in range(3):  # a check never takes a slot
        check = await rest.check(namespace="ws", identifier="reader")
        assert (check.body["allowed"], check.body["limit"], check.body["remaining"]) == (
            True, 5, 2)
    for _ in range(3):
        await acquire(rest, identifier="reader")
    check = await rest.check(namespace="ws", identifier="reader")
    assert (check.body["allowed"], check.body["remaining"]) == (False, 0)
    assert check.header("Retry-After") is not None


@pytest.mark.parametrize(("body", "field", "words"), [
    ({**WS, "ttl": 61}, "ttl", "longer than the lease_ttl of the rule ws.identifier (60 s)"),
    ({**WS, "ttl": 0}, "ttl", "0 is out of range; expected a number of seconds from 0.001"),
    ({**WS, "ttl": "1m"}, "ttl", "got a string"),
    ({"identifier": "u"}, "namespace", "required"),
    ({"namespace": "ws"}, "identifier", "required"),
    ({**WS, "descriptors": [[{"key": "a", "value": "b"}]]}, "descriptors", "not both"),
    ({**WS, "hits": 1}, "hits", "unknown field; expected namespace, identifier, descriptors, ttl"),
    ({"namespace": "ws", "descriptors": [[{"key": "a"}]]}, "descriptors[0][0].value",
     "required"),
])
async def test_bad_bodies_name_the_field(rest: Rest, body: dict[str, Any], field: str,
                                         words: str) -> None:
    reply = await rest.post("/v1/leases", body)
    assert reply.status == 400
    assert reply.body["field"] == field
    assert words in reply.body["error"]


async def test_bad_renewal_bodies(rest: Rest) -> None:
    lease_id = (await acquire(rest)).body["lease_id"]
    for body, field in (("{", None), ({"ttl": -1}, "ttl"), ({"ttl": 61}, "ttl"),
                        ({"ttl": 1, "x": 2}, "x"), ([], None)):
        reply = await renew(rest, lease_id, body)
        assert reply.status == 400, body
        assert reply.body["field"] == field
    assert (await renew(rest, lease_id, {})).status == 200  # an empty object: no ttl asked
    assert (await release(rest, lease_id)).status == 200


async def test_store_down_is_503(tmp_path: Path) -> None:
    store = RedisStore(RedisOptions(url=f"redis://127.0.0.1:{free_port()}/0", timeout=0.2))
    async with serve_rest(write_rules(tmp_path / "rules"), store) as rest:
        lease_id = "A" * 24 + ".WyJ3cyIsW1tbImlkZW50aWZpZXIiLCJ1Il1dXSxudWxsXQ"
        for reply in (await acquire(rest), await renew(rest, lease_id),
                      await release(rest, lease_id)):
            assert reply.status == 503
            assert reply.body["error"].startswith("cannot decide now: redis")


async def test_descriptors_too_long_for_a_lease_id_are_refused_before_any_slot(
        rest: Rest) -> None:
    long = "x" * 3000
    body = {"namespace": "ws", "descriptors": [[{"key": "identifier", "value": long}],
                                               [{"key": "region", "value": long}]]}
    reply = await rest.post("/v1/leases", body)
    assert reply.status == 400 and reply.body["field"] == "descriptors"
    assert "too many for a lease id" in reply.body["error"]
    ok = await rest.post("/v1/leases", {"namespace": "ws", "identifier": long})
    assert ok.body["allowed"] and ok.body["active"] == 1  # nothing was held for the refused
    assert (await release(rest, ok.body["lease_id"])).status == 200  # its id fits a URL
