"""Sessions, CSRF and same-origin checks of the pages, over real HTTP against a full-mode
sidecar process: forged and cross-site POSTs are refused and change nothing, expired and
ended sessions send the browser back to sign-in, portal links work once and not after 15
minutes, and no secret of a session or a link is stored in the database."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.management.kit import ROOT_KEY, FullSidecar, write_config
from tests.management.web.kit import Browserless, create_root_key
from tests.support.ports import eventually


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FullSidecar]:
    folder = tmp_path_factory.mktemp("web-sessions")
    process = FullSidecar(write_config(folder / "config"), folder / "data").start()
    api = process.api()
    for cid in ("acme", "globex"):
        api.customer(id=cid, name=cid.title())
    yield process
    process.stop()


@pytest.fixture
def web(sidecar: FullSidecar) -> Browserless:
    return Browserless(sidecar.http_port)


def database(sidecar: FullSidecar) -> sqlite3.Connection:
    return sqlite3.connect(sidecar.data_dir / "viva.db")


def test_signing_in_sets_a_strict_http_only_cookie_and_signing_out_ends_the_session(
        web: Browserless) -> None:
    assert web.get("/dashboard").location == "/dashboard/sign-in"
    form = web.get("/dashboard/sign-in")
    assert form.status == 200 and 'type="password"' in form.text
    signed = web.sign_in()
    assert (signed.status, signed.location) == (303, "/dashboard")
    cookie = signed.headers["Set-Cookie"]
    for flag in ("HttpOnly", "SameSite=Strict", "Path=/dashboard"):
        assert flag in cookie, cookie
    assert "Secure" not in cookie  # plain HTTP: a Secure cookie would never come back
    overview = web.get("/dashboard")
    assert overview.status == 200 and "<h1>Overview</h1>" in overview.text
    stolen = dict(web.cookies)
    out = web.post("/dashboard/sign-out", {"csrf": overview.csrf()})
    assert (out.status, out.location) == (303, "/dashboard/sign-in")
    assert "viva_dashboard" not in web.cookies
    web.cookies.update(stolen)  # the old cookie is dead on the server too
    assert web.get("/dashboard").location == "/dashboard/sign-in"


def test_the_cookie_is_secure_behind_a_tls_proxy(web: Browserless) -> None:
    signed = web.post("/dashboard/sign-in", {"root_key": ROOT_KEY},
                      headers={"X-Forwarded-Proto": "https"})
    assert signed.status == 303 and "Secure" in signed.headers["Set-Cookie"]


def test_sign_in_refuses_bad_keys_and_keys_without_the_dashboard_scope(
        sidecar: FullSidecar, web: Browserless) -> None:
    wrong = web.sign_in("vroot_" + "1" * 28)
    assert wrong.status == 401 and "not valid" in wrong.text and not web.cookies
    reader = create_root_key(sidecar.data_dir, "customers:read")
    eventually(lambda: web.sign_in(reader).status == 403, timeout=5)
    assert "lacks the &#39;dashboard&#39; scope" in web.sign_in(reader).text
    assert not web.cookies


def test_a_dashboard_user_gets_only_the_pages_its_scopes_allow(
        sidecar: FullSidecar, web: Browserless) -> None:
    viewer = create_root_key(sidecar.data_dir, "dashboard,customers:read,keys:read")
    eventually(lambda: web.sign_in(viewer).status == 303, timeout=5)
    page = web.get("/dashboard/customers/acme")
    assert page.status == 200 and "Create key" not in page.text and "Change plan" not in page.text
    # usage:read, billing:read and webhooks:read are other scopes: their parts are left out
    for absent in ("Usage against the limits", "Invoices", "/dashboard/webhooks"):
        assert absent not in page.text, absent
    overview = web.get("/dashboard")
    assert overview.status == 200 and "need a root key with the <code>usage:read</code>" in \
        overview.text and "Webhook failures" not in overview.text
    for path in ("/dashboard/audit", "/dashboard/webhooks", "/dashboard/invoices/inv_1",
                 "/dashboard/customers/acme/invoices/running"):
        assert web.get(path).status == 403, path
    refused = web.post("/dashboard/customers/acme/plan", {"csrf": page.csrf(), "plan": "bigger"})
    assert refused.status == 403 and "customers:write" in refused.text
    assert sidecar.api().get("/v1/customers/acme")["plan"] == "basic"


def test_a_post_without_the_csrf_token_or_from_another_site_changes_nothing(
        sidecar: FullSidecar, web: Browserless) -> None:
    web.sign_in()
    token = web.get("/dashboard/customers").csrf()
    new = {"name": "Forged", "id": "forged", "plan": "basic"}
    attempts = [
        ({**new}, {}),  # no token
        ({**new, "csrf": "x" + token[1:]}, {}),  # a wrong one
        ({**new, "csrf": token}, {"Origin": "http://evil.test"}),
        ({**new, "csrf": token}, {"Origin": "null"}),
        ({**new, "csrf": token}, {"Sec-Fetch-Site": "cross-site"}),
    ]
    for form, headers in attempts:
        refused = web.post("/dashboard/customers", form, headers=headers)
        assert refused.status == 403, (form, headers)
        assert "Request refused" in refused.text
    other = Browserless(web.port)  # another browser's session has another token
    other.sign_in()
    assert other.post("/dashboard/customers", {**new, "csrf": token}).status == 403
    assert sidecar.api().get("/v1/customers/forged").status == 404
    made = web.post("/dashboard/customers", {**new, "csrf": token})
    assert (made.status, made.location) == (303, "/dashboard/customers/forged?done=created")
    audit = sidecar.api().get("/v1/audit?target=customer:forged")["items"]
    assert [e["action"] for e in audit] == ["customer.create"]
    assert audit[0]["actor"].startswith("root_")


def test_an_expired_session_sends_the_browser_back_to_sign_in(
        sidecar: FullSidecar, web: Browserless) -> None:
    web.sign_in()
    assert web.get("/dashboard").status == 200
    with database(sidecar) as db:
        db.execute("UPDATE web_sessions SET expires_at = '2020-01-01 00:00:00.000000'")
    assert web.get("/dashboard").location == "/dashboard/sign-in"
    page = web.post("/dashboard/customers", {"name": "Late", "plan": "basic", "csrf": "x"})
    assert page.location == "/dashboard/sign-in"


def test_pages_send_protective_headers(web: Browserless) -> None:
    page = web.get("/dashboard/sign-in")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "same-origin"
    style = web.get("/web/static/app.css")
    assert style.status == 200 and style.headers["Content-Type"].startswith("text/css")
    assert web.get("/web/static/../service.py").status == 404


def test_a_portal_link_works_once_for_its_customer_only(
        sidecar: FullSidecar, web: Browserless) -> None:
    api = sidecar.api()
    made = api.post("/v1/portal/sessions", {"customer_id": "acme"})
    assert made.status == 201, made.body
    url = made["url"]
    assert url.startswith(f"http://127.0.0.1:{sidecar.http_port}/portal/enter?token=vlink_")
    token = url.split("token=")[1]
    landing = web.get(f"/portal/enter?token={token}")
    assert landing.status == 200 and token in landing.text  # GET spends nothing
    entered = web.post("/portal/enter", {"token": token})
    assert (entered.status, entered.location) == (303, "/portal")
    assert "Path=/portal" in entered.headers["Set-Cookie"]
    home = web.get("/portal")
    assert home.status == 200 and "<h1>Acme</h1>" in home.text and "Globex" not in home.text
    again = Browserless(web.port).post("/portal/enter", {"token": token})
    assert again.status == 404 and "used already" in again.text
    assert web.get("/dashboard").location == "/dashboard/sign-in"  # no dashboard access
    actions = [e["action"] for e in api.get("/v1/audit?target=customer:acme")["items"]]
    assert "portal_link.create" in actions


def test_a_portal_link_expires_after_15_minutes_and_needs_the_scope(
        sidecar: FullSidecar, web: Browserless) -> None:
    api = sidecar.api()
    token = api.post("/v1/portal/sessions", {"customer_id": "globex"})["url"].split("=")[1]
    with database(sidecar) as db:
        db.execute("UPDATE portal_links SET expires_at = '2020-01-01 00:00:00.000000'")
    assert web.post("/portal/enter", {"token": token}).status == 404
    assert api.post("/v1/portal/sessions", {"customer_id": "nobody"}).status == 404
    bad = api.post("/v1/portal/sessions", {"customer": "acme"})
    assert bad.status == 400 and "unknown field `customer`" in bad["error"]
    keys_only = create_root_key(sidecar.data_dir, "keys:write")
    from tests.management.kit import Admin

    limited = Admin("127.0.0.1", sidecar.http_port, keys_only)
    eventually(lambda: limited.post("/v1/portal/sessions", {"customer_id": "acme"}).status
               == 403, timeout=5)


def test_no_session_or_link_secret_is_stored(sidecar: FullSidecar, web: Browserless) -> None:
    web.sign_in()
    link = sidecar.api().post("/v1/portal/sessions", {"customer_id": "acme"})["url"]
    portal = Browserless(web.port)
    portal.post("/portal/enter", {"token": link.split("=")[1]})
    secrets = [web.cookies["viva_dashboard"][1], portal.cookies["viva_portal"][1],
               link.split("=")[1]]
    stored = b"".join(p.read_bytes() for p in sorted(Path(sidecar.data_dir).glob("viva.db*")))
    for secret in secrets:
        assert secret.encode() not in stored
    assert all(secret not in sidecar.log() for secret in secrets)


def test_failed_sign_ins_use_up_the_address_s_failure_budget(tmp_path: Path) -> None:
    process = FullSidecar(write_config(tmp_path / "config"), tmp_path / "data",
                          env={"VIVA_VERIFY_FAILURES_PER_MINUTE": "2"}).start()
    try:
        web = Browserless(process.http_port)
        assert [web.sign_in("wrong-" + "x" * 30).status for _ in range(2)] == [401, 401]
        throttled = web.sign_in(ROOT_KEY)  # even the right key waits out the minute
        assert throttled.status == 429 and "Too many failed attempts" in throttled.text
        assert not web.cookies
    finally:
        process.stop()
