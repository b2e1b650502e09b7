"""Where webhooks may go: URLs checked when made, addresses checked again when a delivery
connects (against DNS rebinding), redirects not followed, attempts bounded in time."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sidecar.management.alerts.sender import Sender, scrub
from sidecar.management.alerts.targets import (
    TargetError,
    address_problem,
    check_url,
    validate_url,
)
from tests.management.alerts.receiver import Receiver


@pytest.mark.parametrize(("address", "kind"), [
    ("127.0.0.1", "loopback"), ("127.9.9.9", "loopback"), ("::1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
    ("fc00::1", "private"), ("169.254.169.254", "link-local"), ("fe80::1%eth0", "link-local"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"), ("0.0.0.0", "unspecified"),
    ("100.64.0.1", "not a public"), ("240.0.0.1", "reserved"),
    ("::ffff:127.0.0.1", "embeds 127.0.0.1 is a loopback"),
    ("2002:a00:1::1", "embeds 10.0.0.1 is a private"),
    ("64:ff9b::a9fe:a9fe", "embeds 169.254.169.254 is a link-local"),
])
def test_internal_addresses_are_refused(address: str, kind: str) -> None:
    problem = address_problem(address)
    assert problem is not None and kind in problem, problem


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700:4700::1111",
                                     "64:ff9b::808:808", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_problem(address) is None


@pytest.mark.parametrize(("url", "says"), [
    ("ftp://example.com/x", "scheme 'ftp' is not allowed"),
    ("example.com/hooks", "scheme 'none' is not allowed"),
    ("https:///hooks", "names no host"),
    ("https://user:pw@example.com/", "credentials"),
    ("https://example.com/a b", "whitespace"),
    ("https://example.com:99999/", "not a URL"),
])
def test_malformed_urls_say_why(url: str, says: str) -> None:
    with pytest.raises(TargetError, match=says):
        check_url(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hooks", "http://localhost:9/hooks",
                                 "http://[::1]:9/", "https://10.0.0.7/", "http://0.0.0.0/",
                                 "http://169.254.169.254/latest/meta-data/"])
async def test_private_targets_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(TargetError, match="VIVA_WEBHOOKS_ALLOW_PRIVATE=true"):
        await validate_url(url, allow_private=False)
    assert await validate_url(url, allow_private=True) == url


async def test_a_host_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(TargetError, match="does not resolve"):
        await validate_url("https://no-such-host.invalid/hooks", allow_private=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::ffff:127.0.0.1]"])
async def test_a_delivery_to_an_internal_address_is_refused_when_it_connects(
        receiver: Receiver, host: str) -> None:
    """A name that resolves to loopback now (whatever it resolved to when the webhook was
    made), and address literals, which the HTTP client connects to without resolving."""
    sender = Sender(timeout=5, allow_private=False, connections=2)
    try:
        result = await sender.send(f"http://{host}:{receiver.port}/hooks", {}, b"{}")
    finally:
        await sender.close()
    assert result.outcome == "refused" and result.status_code is None
    assert "loopback" in (result.error or "") and "VIVA_WEBHOOKS_ALLOW_PRIVATE" in str(
        result.error)
    assert receiver.snapshot() == []


async def test_redirects_are_not_followed_and_slow_receivers_time_out(
        receiver: Receiver) -> None:
    sender = Sender(timeout=0.5, allow_private=True, connections=2)
    try:
        receiver.fail_next(1, 302)
        redirected = await sender.send(receiver.url(), {}, b"{}")
        assert (redirected.outcome, redirected.status_code) == ("http_error", 302)
        assert "redirect, not followed" in (redirected.error or "")
        receiver.delay = 2.0
        slow = await sender.send(receiver.url(), {}, b"{}")
        assert slow.outcome == "timeout" and 0.4 < slow.duration < 1.9
        receiver.delay = 0.0
        ok = await sender.send(receiver.url(), {"webhook-id": "msg_1"}, b"{}")
        assert ok.delivered and ok.status_code == 200
        closed = Receiver()  # a port nobody listens on
        refused = await sender.send(closed.url(), {}, b"{}")
        assert refused.outcome == "network_error" and f":{closed.port}" in str(refused.error)
    finally:
        await sender.close()


def test_errors_never_quote_the_urls_path_or_query() -> None:
    url = "https://hooks.example.com/services/T0/B0/s3cr3t?token=abc123"
    text = scrub(f"InvalidURL: {url}", url)
    assert "s3cr3t" not in text and "abc123" not in text and "hooks.example.com" in text
