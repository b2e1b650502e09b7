"""Client and AsyncClient against a real sidecar process; retries and failure modes."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx2
import pytest
from viva_ratelimit_client import (
    AsyncClient,
    CheckResult,
    Client,
    InvalidRequest,
    RetryPolicy,
    SidecarUnavailable,
)

from tests.support.ports import free_port
from tests.transports.rest.kit import RestSidecar

NS = "api_requests"


@pytest.fixture
def client(sidecar: RestSidecar) -> Iterator[Client]:
    with Client(sidecar.http_url, timeout=5) as c:
        yield c


def test_allow_then_refuse(client: Client, user: str) -> None:
    assert [client.allow(user, NS) for _ in range(5)] == [True, True, True, False, False]


def test_check_gives_the_whole_result(client: Client, user: str) -> None:
    result = client.check(user, NS, hits=2)
    assert (result.allowed, result.limit, result.remaining) == (True, 3, 1)
    assert (result.window_seconds, result.policy, result.retry_after_seconds) == (
        3600, "identifier", None)
    assert result.reset_at is not None and result.reset_at.tzinfo == UTC
    assert result.reset_at > datetime.now(UTC)
    assert 0 < (result.reset_after_seconds or 0) <= 3600
    assert result.error is None and result.results == ()
    refused = client.check(user, NS, hits=2)
    assert not refused
    assert refused.retry_after_seconds == refused.reset_after_seconds


@pytest.mark.parametrize("multi", [False, True])
def test_headers_are_the_sidecars_own(client: Client, sidecar: RestSidecar, user: str,
                                      multi: bool) -> None:
    descriptors = [{"user": user}, {"route": f"/{user}", "method": "GET"}, {"user": "x" + user}]
    body: dict[str, object] = (
        {"namespace": "shop", "descriptors": [[{"key": k, "value": v} for k, v in d.items()]
                                              for d in descriptors]}
        if multi else {"namespace": NS, "identifier": user})
    for hits in (1, 5):
        raw = httpx2.post(f"{sidecar.http_url}/v1/check", json={**body, "hits": hits})
        result = (client.peek(None, "shop", descriptors=descriptors) if multi
                  else client.peek(user, NS))
        expected = [(k, v) for k, v in raw.headers.items()
                    if k.lower().startswith(("ratelimit", "x-ratelimit", "retry-after"))]
        got = [(k.lower(), v) for k, v in result.headers()]
        assert len(got) == len(expected), (got, expected)
        assert all(seconds_apart(a, b) <= 1 for a, b in zip(got, expected, strict=True)), (
            got, expected)
        assert expected


def seconds_apart(got: tuple[str, str], expected: tuple[str, str]) -> int:
    """How many seconds two answers of the same header are apart: the two calls are made an
    instant apart, which may straddle a whole second (the reset times then differ by 1); any
    other difference is a mismatch (a large number)."""
    whole = got[0] in ("x-ratelimit-reset", "retry-after")  # the value is a time
    numbers = re.compile(r"^\d+$" if whole else r"(?<=;t=)\d+")
    if got[0] != expected[0] or numbers.sub("#", got[1]) != numbers.sub("#", expected[1]):
        return 1_000_000
    pairs = zip(numbers.findall(got[1]), numbers.findall(expected[1]), strict=True)
    return max((abs(int(a) - int(b)) for a, b in pairs), default=0)


def test_report_and_peek(client: Client, user: str) -> None:
    reported = client.report(user, NS, 10)
    assert (reported.allowed, reported.remaining) == (False, 0)
    assert not client.peek(user, NS).allowed


def test_descriptors(client: Client, user: str) -> None:
    result = client.check(None, "shop", descriptors=[
        {"user": user}, {"route": f"/{user}", "method": "POST"}, {"other": "x"}])
    assert [(r.allowed, r.limit, r.policy) for r in result.results] == [
        (True, 5, "per_user"), (True, 2, "route.method"), (True, None, None)]
    assert (result.limit, result.remaining) == (2, 1)
    assert ("X-RateLimit-Remaining", "1") in result.headers()


def test_namespace_without_rules(client: Client, user: str) -> None:
    result = client.check(user, "no_rules_here")
    assert (result.allowed, result.limit, result.headers()) == (True, None, [])


def test_the_sidecar_names_the_bad_field(client: Client) -> None:
    with pytest.raises(InvalidRequest) as caught:
        client.check(None, "shop", descriptors=[{"k": "v"}] * 21)
    assert caught.value.field == "descriptors"
    with pytest.raises(InvalidRequest) as caught:
        client.check(None, "shop", descriptors=[{"": "v"}])
    assert caught.value.field == "descriptors[0][0].key"


@pytest.mark.parametrize(("identifier", "namespace", "hits"), [
    ("", NS, 1), ("u", "", 1), ("u", NS, -1), ("u", NS, True)])
def test_obvious_mistakes_fail_before_the_call(client: Client, identifier: str,
                                               namespace: str, hits: int) -> None:
    with pytest.raises(ValueError):
        client.check(identifier, namespace, hits)


def test_connections_are_reused(client: Client, user: str) -> None:
    for _ in range(20):
        client.peek(user, NS)
    pool = client._http._transport._pool  # type: ignore[attr-defined]
    assert len(pool.connections) == 1


@pytest.mark.redis
def test_redis_backed_sidecar(redis_sidecar: RestSidecar, user: str) -> None:
    with Client(redis_sidecar.http_url, timeout=5) as c:
        assert [c.allow(user, NS) for _ in range(4)] == [True, True, True, False]


# -- failures: retries with backoff, then the failure mode ------------------------------------


def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


FAST = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.02)


@pytest.mark.parametrize(("mode", "allowed"), [("open", True), ("closed", False)])
def test_unreachable_answers_per_failure_mode(mode: str, allowed: bool) -> None:
    with Client(closed_url(), retry=FAST, failure_mode=mode) as c:  # type: ignore[arg-type]
        result = c.check("u", NS)
    assert result.allowed is allowed
    assert result.error is not None and "ConnectError" in result.error
    assert result.headers() == []


def test_unreachable_raises_when_asked() -> None:
    with Client(closed_url(), retry=FAST, failure_mode="raise") as c, \
            pytest.raises(SidecarUnavailable, match="ConnectError") as caught:
        c.allow("u", NS)
    assert caught.value.attempts == 3


def test_failure_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="failure_mode"):
        Client(failure_mode="sometimes")  # type: ignore[arg-type]


class Script:
    """A mock transport answering from a list: a status, or an exception to raise."""

    def __init__(self, *steps: int | Exception) -> None:
        self.steps = list(steps)
        self.calls = 0

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.calls += 1
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        if step == 200:
            return httpx2.Response(200, json={"allowed": True, "limit": None})
        return httpx2.Response(step, json={"error": "store down", "field": None})

    def client(self, **options: object) -> Client:
        http = httpx2.Client(base_url="http://sidecar", transport=httpx2.MockTransport(self))
        return Client("http://sidecar", http=http, retry=FAST, **options)  # type: ignore[arg-type]


def test_connect_errors_are_retried() -> None:
    script = Script(httpx2.ConnectError("refused"), httpx2.ConnectError("refused"), 200)
    result = script.client().check("u", NS)
    assert (result.allowed, result.error, script.calls) == (True, None, 3)


def test_retries_run_out_into_the_failure_mode() -> None:
    script = Script(*[httpx2.ConnectError("refused")] * 3)
    result = script.client(failure_mode="closed").check("u", NS)
    assert (result.allowed, result.attempts, script.calls) == (False, 3, 3)
    assert result.error == "ConnectError: refused"


def test_a_503_is_an_answer_not_retried() -> None:
    """The sidecar answered (its store is down): the failure mode decides at once."""
    script = Script(503, 200)
    result = script.client(failure_mode="closed").check("u", NS)
    assert (result.allowed, result.attempts, script.calls) == (False, 1, 1)
    assert result.error == "HTTP 503 from the sidecar: store down"


def test_a_read_timeout_is_not_retried() -> None:
    """The sidecar may have charged the hits already: a retry could charge them twice."""
    script = Script(httpx2.ReadTimeout("slow"), 200)
    result = script.client().check("u", NS)
    assert (result.allowed, script.calls) == (True, 1)
    assert result.error == "ReadTimeout: slow"


def test_unexpected_statuses_are_failures_not_answers() -> None:
    script = Script(404)
    result = script.client(failure_mode="closed").check("u", NS)
    assert (result.allowed, script.calls) == (False, 1)


def test_backoff_grows_and_is_capped() -> None:
    delays = list(RetryPolicy(attempts=6, backoff=0.1, max_backoff=0.3).delays())
    assert len(delays) == 5
    assert all(0 <= d <= cap for d, cap in zip(delays, [0.1, 0.2, 0.3, 0.3, 0.3], strict=True))
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


def test_the_timeout_bounds_a_stalled_sidecar() -> None:
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with Client(url, timeout=0.2, retry=FAST) as c:
            started = time.monotonic()
            result = c.check("u", NS)
            elapsed = time.monotonic() - started
    assert result.allowed and result.error is not None and "Timeout" in result.error
    assert elapsed < 1.0


# -- AsyncClient -------------------------------------------------------------------------------


async def test_async_twin(sidecar: RestSidecar, user: str) -> None:
    async with AsyncClient(sidecar.http_url, timeout=5) as c:
        assert [await c.allow(user, NS) for _ in range(4)] == [True, True, True, False]
        peek = await c.peek(user, NS)
        reported = await c.report(user, "shop", 2)
        multi = await c.check(None, "shop", descriptors=[{"user": user}])
    assert (peek.allowed, peek.remaining) == (False, 0)
    assert (reported.allowed, reported.limit) == (True, None)  # no "identifier" rule in shop
    assert [r.remaining for r in multi.results] == [4]


async def test_async_failure_modes() -> None:
    async with AsyncClient(closed_url(), retry=FAST, failure_mode="closed") as c:
        assert (await c.check("u", NS)).allowed is False
    async with AsyncClient(closed_url(), retry=FAST, failure_mode="raise") as c:
        with pytest.raises(SidecarUnavailable):
            await c.check("u", NS)


async def test_async_invalid_request(sidecar: RestSidecar) -> None:
    async with AsyncClient(sidecar.http_url, timeout=5) as c:
        with pytest.raises(InvalidRequest) as caught:
            await c.check(None, "shop", descriptors=[{"k": "v" * 10}] * 30)
    assert caught.value.field == "descriptors"


def test_result_is_truthy_when_allowed() -> None:
    assert CheckResult(True) and not CheckResult(False)
