"""The portal side: the WSGI middleware's answers, headers and redirects, over real HTTP.

The portal under test is a plain WSGI app wrapped in the middleware, driven by
werkzeug's test client; the service it asks is the real service app served on
a loopback port (or a canned fake for answers the real one never gives).
"""

from __future__ import annotations

import html
import logging
import re

import pytest
from flask import Flask, flash, get_flashed_messages, session
from werkzeug.test import Client

from service.portal import (
    DEVICE_ID,
    FAILURE_MESSAGES,
    FAILURE_REASONS,
    AutoLoginMiddleware,
    FlaskAutoLogin,
    LoginRefusedError,
    VerificationError,
    Verifier,
    is_portal_path,
)
from tests.conftest import API_KEYS, PORTAL, LinkActions
from tests.support.gunicorn_server import free_port

PORTAL_KEY = API_KEYS["portal-key"][0]
GOOD = {"user_id": "42", "target": "/tickets/1234", "issued_at": "x", "expires_at": "y"}


@pytest.fixture
def links(service_app) -> LinkActions:
    actions = LinkActions(service_app.test_client())
    actions.enable()
    return actions


@pytest.fixture
def canned(canned):
    """The fake service, answering ``GOOD`` until told otherwise."""
    canned.answer(200, GOOD)
    return canned


class Portal:
    """A plain WSGI portal behind the middleware, recording what reaches whom."""

    def __init__(self, service_url: str, key: str = PORTAL_KEY, **options) -> None:
        self.app_calls: list[dict] = []
        self.logins: list[tuple[str, dict]] = []
        self.failures: list[str] = []
        self.refuse = False
        self.verifier = Verifier(service_url, key, connect_timeout=0.5, read_timeout=0.3)
        self.middleware = AutoLoginMiddleware(
            self.app,
            login=self.login,
            on_failure=self.on_failure,
            verifier=self.verifier,
            **options,
        )
        self.client = Client(self.middleware)

    def app(self, environ, start_response):
        self.app_calls.append(
            {
                key: environ.get(key)
                for key in ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "REQUEST_URI")
            }
        )
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"the page"]

    def login(self, environ, user_id, claims):
        assert "t0ken" not in environ["QUERY_STRING"]
        if self.refuse:
            raise LoginRefusedError(user_id)
        self.logins.append((user_id, claims))
        return [("Set-Cookie", f"sid=session-of-{user_id}; HttpOnly; Path=/")]

    def on_failure(self, environ, reason):
        self.failures.append(reason)
        return [("Set-Cookie", f"notice={reason}; Path=/")]


@pytest.fixture
def portal(service_url):
    portal = Portal(service_url)
    yield portal
    portal.verifier.close()


@pytest.fixture
def fake_portal(canned):
    portal = Portal(canned.url)
    yield portal
    portal.verifier.close()


def path_of(url: str) -> str:
    assert url.startswith(PORTAL)
    return url[len(PORTAL) :]


def assert_no_store(response) -> None:
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"


# --- a good link ---------------------------------------------------------------


def test_a_good_link_signs_in_and_303s_to_its_target_without_the_token(portal, links):
    url = links.issue(target="/tickets/1234?tab=notes").json["url"]
    response = portal.client.get(
        path_of(url),
        headers={"User-Agent": "Mail/1.0"},
        environ_overrides={"REMOTE_ADDR": "127.0.0.1"},
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/tickets/1234?tab=notes"
    assert_no_store(response)
    assert response.headers["Set-Cookie"] == "sid=session-of-42; HttpOnly; Path=/"
    assert [(user_id, claims["target"]) for user_id, claims in portal.logins] == [
        ("42", "/tickets/1234?tab=notes")
    ]
    assert set(portal.logins[0][1]) == {"user_id", "target", "issued_at", "expires_at"}
    assert portal.app_calls == []  # the app never sees the token request
    # The service logged who clicked, from where (the sign-in log).
    signins = links.client.get(
        "/v1/admin/signins", headers={"Authorization": f"Bearer {API_KEYS['admin-key'][0]}"}
    ).json["signins"]
    assert [(s["outcome"], s["ip"], s["user_agent"]) for s in signins] == [
        ("ok", "127.0.0.1", "Mail/1.0")
    ]


def test_following_the_redirect_reaches_the_page_once(portal, links):
    token = links.token(target="/tickets/1234")
    first = portal.client.get(f"/tickets/1234?auto_login={token}")
    second = portal.client.get(first.headers["Location"])
    assert second.status_code == 200
    assert portal.app_calls[0]["QUERY_STRING"] == ""
    assert len(portal.logins) == 1


def test_where_the_user_goes_comes_from_the_token_not_the_request(portal, links):
    token = links.token(target="/tickets/1234")
    response = portal.client.get(
        f"/other/page?next=https://evil.test/&auto_login={token}&redirect=//evil.test",
        headers={"Host": "evil.test", "X-Forwarded-Host": "evil.test", "Referer": "x"},
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/tickets/1234"


def test_the_redirect_keeps_the_mount_point(links, service_url):
    portal = Portal(service_url)
    try:
        token = links.token(target="/tickets/1234")
        # SCRIPT_NAME=/portal, PATH_INFO=/tickets/...
        ok = portal.client.get(f"/tickets/1234?auto_login={token}", "http://x/portal/")
        bad = portal.client.get("/tickets/9?auto_login=bad&a=1", "http://x/portal/")
    finally:
        portal.verifier.close()
    assert ok.headers["Location"] == "/portal/tickets/1234"
    assert bad.headers["Location"] == "/portal/tickets/9?a=1"


@pytest.mark.parametrize(
    "target",
    (
        "//evil.test",
        "//evil.test/tickets/1",
        "/\\evil.test",
        "\\\\evil.test",
        "https://evil.test",
        "https://evil.test/tickets/1",
        "javascript:alert(1)",
        "/%2F%2Fevil.test",
        "/%2f/evil.test",
        "/%5Cevil.test",
        "/\t/evil.test",
        "/ /evil.test",
        "tickets/1234",
        "",
        None,
        ["/"],
    ),
)
def test_a_verified_target_off_the_portal_is_never_followed(fake_portal, canned, target):
    canned.answer(200, {**GOOD, "target": target})
    response = fake_portal.client.get("/tickets/1?auto_login=t0ken&next=//evil.test")
    assert response.status_code == 303
    if target is None or isinstance(target, list):
        # Not a string: the answer is malformed, nobody is signed in.
        assert response.headers["Location"] == "/tickets/1?next=//evil.test"
        assert fake_portal.failures == ["service_unavailable"]
    else:
        assert response.headers["Location"] == "/"
        assert [user_id for user_id, _ in fake_portal.logins] == ["42"]


def test_a_target_carrying_the_token_param_loses_it(fake_portal, canned):
    canned.answer(200, {**GOOD, "target": "/t?a=1&auto_login=again#notes"})
    response = fake_portal.client.get("/t?auto_login=t0ken")
    assert response.headers["Location"] == "/t?a=1#notes"


@pytest.mark.parametrize(
    "value", ["/", "/tickets/1?tab=notes&x=1", "/a/b#c", "/%7Euser", "/a//b", "/a?u=//x"]
)
def test_is_portal_path_accepts_paths(value):
    assert is_portal_path(value)


# --- links that fail ---------------------------------------------------------------


def test_an_invalid_token_lands_on_the_same_page_without_it(portal):
    response = portal.client.get("/tickets/1234?tab=notes&auto_login=not-a-token&x=%2F1")
    assert response.status_code == 303
    assert response.headers["Location"] == "/tickets/1234?tab=notes&x=%2F1"
    assert_no_store(response)
    assert response.headers["Set-Cookie"] == "notice=token_invalid; Path=/"
    assert portal.failures == ["token_invalid"]
    assert portal.logins == []
    # No loop: the landing page has no token, the app answers it.
    assert portal.client.get(response.headers["Location"]).status_code == 200
    assert portal.app_calls[0]["QUERY_STRING"] == "tab=notes&x=%2F1"


def test_a_revoked_token_is_token_revoked(portal, links):
    token = links.token(target="/tickets/1234")
    assert links.bump().status_code == 200
    response = portal.client.get(f"/tickets/1234?auto_login={token}")
    assert response.headers["Location"] == "/tickets/1234"
    assert portal.failures == ["token_revoked"]


@pytest.mark.parametrize("code", ["token_expired", "token_revoked", "token_invalid"])
def test_each_refusal_of_the_service_is_told_to_the_portal(fake_portal, canned, code):
    canned.answer(401, {"status": 401, "code": code})
    response = fake_portal.client.get("/tickets/7?auto_login=t0ken")
    assert (response.status_code, response.headers["Location"]) == (303, "/tickets/7")
    assert fake_portal.failures == [code]


def test_a_portal_that_refuses_the_user_is_login_refused(portal, links):
    portal.refuse = True
    token = links.token(target="/tickets/1234")
    response = portal.client.get(f"/tickets/1234?auto_login={token}")
    assert (response.status_code, response.headers["Location"]) == (303, "/tickets/1234")
    assert portal.failures == ["login_refused"]


def test_a_request_path_of_another_host_lands_on_this_one(fake_portal, canned):
    canned.answer(401, {"code": "token_invalid"})
    response = fake_portal.client.get(
        "/", environ_overrides={"PATH_INFO": "//evil.test/x", "QUERY_STRING": "auto_login=t"}
    )
    assert response.headers["Location"] == "/evil.test/x"
    response = fake_portal.client.get(
        "/", environ_overrides={"PATH_INFO": "/\\evil.test", "QUERY_STRING": "auto_login=t"}
    )
    assert response.headers["Location"] == "/%5Cevil.test"


@pytest.mark.parametrize("query", ["auto_login=", "auto_login", "auto_login=" + "a" * 5000])
def test_an_empty_or_huge_token_is_invalid_without_asking(fake_portal, canned, query):
    response = fake_portal.client.get(f"/p?{query}&b=2")
    assert (response.status_code, response.headers["Location"]) == (303, "/p?b=2")
    assert fake_portal.failures == ["token_invalid"]
    assert canned.requests == []


def test_every_copy_of_the_token_param_is_dropped(fake_portal, canned):
    canned.answer(401, {"code": "token_invalid"})
    response = fake_portal.client.get("/p?auto_login=a&auto%5Flogin=b&auto_login=c&k=v")
    assert response.headers["Location"] == "/p?k=v"


# --- the service cannot answer -------------------------------------------------


@pytest.mark.parametrize(
    ("case", "why"),
    (
        ("connection refused", "cannot connect"),
        ("timeout", "timed out"),
        ("503", "HTTP 503 store_unavailable"),
        ("403", "HTTP 403 forbidden"),
        ("bad json", "HTTP 200, body is not JSON"),
        ("no user", "HTTP 200 without user_id and target"),
        ("400", "HTTP 400 invalid_request"),
    ),
)
def test_an_unreachable_service_is_service_unavailable(canned, case, why, caplog):
    canned.answer(
        *{
            "timeout": (200, GOOD),
            "503": (503, {"code": "store_unavailable"}),
            "403": (403, {"code": "forbidden"}),
            "bad json": (200, b"<html>"),
            "no user": (200, {"target": "/"}),
            "400": (400, {"code": "invalid_request"}),
        }.get(case, (200, GOOD))
    )
    canned.slow = case == "timeout"
    url = f"http://127.0.0.1:{free_port()}" if case == "connection refused" else canned.url
    portal = Portal(url)
    try:
        response = portal.client.get("/tickets/1234?auto_login=t0ken&tab=x")
    finally:
        portal.verifier.close()
    assert (response.status_code, response.headers["Location"]) == (303, "/tickets/1234?tab=x")
    assert_no_store(response)
    assert portal.failures == ["service_unavailable"]
    assert portal.logins == []
    warning = next(r for r in caplog.records if r.name == "service.portal")
    assert warning.levelno == logging.WARNING
    assert why in warning.getMessage()


def test_the_verify_call_carries_the_portal_key_and_the_client(fake_portal, canned):
    fake_portal.client.get(
        "/t?auto_login=t0ken",
        headers={"User-Agent": "U" * 600},
        environ_overrides={"REMOTE_ADDR": "203.0.113.7"},
    )
    (call,) = canned.requests
    assert call["path"] == "/v1/tokens/verify"
    assert call["authorization"] == f"Bearer {PORTAL_KEY}"
    device = call["json"]["client"].pop("device")
    assert DEVICE_ID.fullmatch(device)
    assert call["json"] == {
        "token": "t0ken",
        "client": {"ip": "203.0.113.7", "user_agent": "U" * 512},
    }
    assert PORTAL_KEY not in repr(fake_portal.verifier)


# --- only GET signs in -----------------------------------------------------------


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_reach_the_app_without_the_token_and_sign_no_one_in(
    fake_portal, canned, method
):
    response = fake_portal.client.open(
        "/tickets/1?a=1&auto_login=t0ken&b=2",
        method=method,
        environ_overrides={"REQUEST_URI": "/tickets/1?a=1&auto_login=t0ken&b=2"},
    )
    assert response.status_code == 200
    assert fake_portal.app_calls == [
        {
            "REQUEST_METHOD": method,
            "PATH_INFO": "/tickets/1",
            "QUERY_STRING": "a=1&b=2",
            "REQUEST_URI": "/tickets/1?a=1&b=2",
        }
    ]
    assert canned.requests == []  # a scanner does not spend the verification
    assert fake_portal.logins == [] and fake_portal.failures == []


@pytest.mark.parametrize(
    "header",
    [{"Sec-Purpose": "prefetch;prerender"}, {"Purpose": "prefetch"}, {"X-Moz": "prefetch"}],
)
def test_a_browser_prefetch_signs_no_one_in(fake_portal, canned, header):
    response = fake_portal.client.get("/tickets/1?auto_login=t0ken", headers=header)
    assert response.status_code == 200
    assert fake_portal.app_calls[0]["QUERY_STRING"] == ""
    assert canned.requests == [] and fake_portal.logins == []


def test_a_request_without_the_token_is_untouched(fake_portal, canned):
    fake_portal.client.get("/tickets/1?auto_logins=x&a=1")
    assert fake_portal.app_calls[0]["QUERY_STRING"] == "auto_logins=x&a=1"
    assert canned.requests == []


def test_a_custom_token_param(canned):
    portal = Portal(canned.url, token_param="t")
    try:
        response = portal.client.get("/x?t=t0ken&auto_login=1")
    finally:
        portal.verifier.close()
    assert response.headers["Location"] == "/tickets/1234"
    assert canned.requests[0]["json"]["token"] == "t0ken"


# --- confirm mode --------------------------------------------------------------


@pytest.fixture
def confirm_portal(canned):
    portal = Portal(canned.url, confirm=True)
    yield portal
    portal.verifier.close()


def _form(response) -> dict[str, str]:
    text = response.get_data(as_text=True)
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', text))
    fields = {name: html.unescape(value) for name, value in fields.items()}
    action = html.unescape(re.search(r'action="([^"]+)"', text).group(1))
    return {"action": action, **fields}


def test_confirm_mode_get_shows_one_button_and_verifies_nothing(confirm_portal, canned):
    response = confirm_portal.client.get("/tickets/1?tab=2&auto_login=t0k%26en")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert_no_store(response)
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert "Continue to the portal" in response.get_data(as_text=True)
    assert _form(response) == {
        "action": "/auto-login/confirm",
        "auto_login": "t0k&en",
        "page": "/tickets/1?tab=2",
    }
    assert canned.requests == [] and confirm_portal.logins == []
    assert confirm_portal.app_calls == []


def test_confirm_mode_post_signs_in(confirm_portal, canned):
    form = _form(confirm_portal.client.get("/tickets/1?auto_login=t0ken"))
    response = confirm_portal.client.post(form.pop("action"), data=form)
    assert (response.status_code, response.headers["Location"]) == (303, "/tickets/1234")
    assert_no_store(response)
    assert canned.requests[0]["json"]["token"] == "t0ken"
    assert [user_id for user_id, _ in confirm_portal.logins] == ["42"]


def test_confirm_mode_failure_lands_on_the_page(confirm_portal, canned):
    canned.answer(401, {"code": "token_expired"})
    form = _form(confirm_portal.client.get("/tickets/1?tab=2&auto_login=t0ken"))
    response = confirm_portal.client.post(form.pop("action"), data=form)
    assert response.headers["Location"] == "/tickets/1?tab=2"
    assert confirm_portal.failures == ["token_expired"]


@pytest.mark.parametrize(
    ("page", "landing"),
    (("//evil.test", "/"), ("https://evil.test", "/"), ("/p?auto_login=x&a=1", "/p?a=1")),
)
def test_confirm_mode_failure_landing_stays_on_the_portal(confirm_portal, canned, page, landing):
    canned.answer(401, {"code": "token_invalid"})
    response = confirm_portal.client.post(
        "/auto-login/confirm", data={"auto_login": "t0ken", "page": page}
    )
    assert response.headers["Location"] == landing


def test_confirm_mode_head_and_other_posts_pass_through(confirm_portal, canned):
    assert confirm_portal.client.head("/tickets/1?auto_login=t0ken").status_code == 200
    assert confirm_portal.client.post("/tickets/1", data={"auto_login": "t0ken"}).status_code == 200
    assert canned.requests == [] and confirm_portal.logins == []


def test_confirm_post_without_a_form_is_invalid(confirm_portal, canned):
    response = confirm_portal.client.post("/auto-login/confirm", data=b"{}")
    assert response.status_code == 303
    assert confirm_portal.failures == ["token_invalid"]
    assert canned.requests == []


# --- the device cookie and links bound to their first browser -------------------

DEVICE_COOKIE = "__Host-autologin_device"
ADMIN = {"Authorization": f"Bearer {API_KEYS['admin-key'][0]}"}


def device_cookies(response) -> list[dict[str, str | bool]]:
    """Return each device cookie the answer sets: name, value and attributes."""
    cookies = []
    for header in response.headers.getlist("Set-Cookie"):
        first, *attributes = [part.strip() for part in header.split(";")]
        name, _, value = first.partition("=")
        if name.endswith("autologin_device"):
            cookie: dict[str, str | bool] = {"name": name, "value": value}
            for attribute in attributes:
                key, equals, setting = attribute.partition("=")
                cookie[key.lower()] = setting if equals else True
            cookies.append(cookie)
    return cookies


def issue_with_id(links, **body) -> tuple[str, str]:
    """Issue a link of user 42; return its path on the portal and its link id."""
    answer = links.issue(target="/tickets/1234", **body).json
    assert answer["auto_login"] is True, answer
    return path_of(answer["url"]), answer["link_id"]


def ledger_entry(links, link_id: str) -> dict:
    response = links.client.get(f"/v1/admin/links/{link_id}", headers=ADMIN)
    assert response.status_code == 200, response.json
    return response.json


def void(links, link_id: str) -> None:
    response = links.client.post(
        f"/v1/admin/links/{link_id}/revoke", json={"reason": "forwarded"}, headers=ADMIN
    )
    assert response.status_code == 200, response.json


def test_a_verification_sets_a_long_lived_device_cookie(fake_portal, canned):
    response = fake_portal.client.get("/t?auto_login=t0ken")
    (cookie,) = device_cookies(response)
    assert cookie == {
        "name": DEVICE_COOKIE,
        "value": cookie["value"],
        "max-age": str(400 * 24 * 60 * 60),
        "path": "/",
        "httponly": True,
        "samesite": "Lax",
        "secure": True,
    }
    # The id is what the service was sent, and random: 256 bits, base64url.
    assert DEVICE_ID.fullmatch(cookie["value"]) and len(cookie["value"]) == 43
    assert canned.requests[0]["json"]["client"]["device"] == cookie["value"]
    # The portal's own cookie comes first, as before.
    assert response.headers["Set-Cookie"].startswith("sid=session-of-42;")


def test_a_development_portal_sets_it_without_secure_and_the_host_prefix(canned):
    portal = Portal(canned.url, secure_cookies=False)
    try:
        (cookie,) = device_cookies(portal.client.get("/t?auto_login=t0ken"))
    finally:
        portal.verifier.close()
    assert cookie["name"] == "autologin_device"
    assert "secure" not in cookie
    assert (cookie["httponly"], cookie["samesite"], cookie["path"]) == (True, "Lax", "/")


def test_a_browser_keeps_its_device_id_from_click_to_click(fake_portal, canned):
    first = device_cookies(fake_portal.client.get("/t?auto_login=t0ken"))[0]["value"]
    canned.answer(401, {"code": "token_expired"})
    # A failure renews the cookie too, with the same id.
    again = device_cookies(fake_portal.client.get("/t?auto_login=t0ken"))[0]["value"]
    other = Client(fake_portal.middleware)
    elsewhere = device_cookies(other.get("/t?auto_login=t0ken"))[0]["value"]
    sent = [call["json"]["client"]["device"] for call in canned.requests]
    assert sent == [first, first, elsewhere]
    assert again == first != elsewhere


@pytest.mark.parametrize(
    "value", ["", "short", "a" * 129, "has.dots.in.it.0123456789", '"quoted space 0123456789"']
)
def test_a_device_cookie_that_is_not_ours_is_replaced(fake_portal, canned, value):
    fake_portal.client.set_cookie(DEVICE_COOKIE, value)
    response = fake_portal.client.get("/t?auto_login=t0ken")
    device = canned.requests[0]["json"]["client"]["device"]
    assert DEVICE_ID.fullmatch(device) and device != value
    assert device_cookies(response)[0]["value"] == device


def test_the_device_cookie_is_found_among_others(fake_portal, canned):
    mine = "Ab-_0123456789abcdefghij"
    # Without the client's cookie jar, which would replace the header.
    Client(fake_portal.middleware, use_cookies=False).get(
        "/t?auto_login=t0ken",
        headers={"Cookie": f'broken="a; sid=1; {DEVICE_COOKIE}={mine}; x=2'},
    )
    assert canned.requests[0]["json"]["client"]["device"] == mine


def test_requests_that_verify_nothing_set_no_device_cookie(fake_portal, canned):
    for response in (
        fake_portal.client.get("/t?a=1"),
        fake_portal.client.head("/t?auto_login=t0ken"),
        fake_portal.client.get("/t?auto_login=t0ken", headers={"Sec-Purpose": "prefetch"}),
    ):
        assert device_cookies(response) == []
    assert canned.requests == []


def test_confirm_mode_sends_the_device_only_with_the_button(confirm_portal, canned):
    page = confirm_portal.client.get("/tickets/1?auto_login=t0ken")
    # The scanner's GET: no verification, no cookie, nothing bound.
    assert device_cookies(page) == [] and canned.requests == []
    form = _form(page)
    response = confirm_portal.client.post(form.pop("action"), data=form)
    (cookie,) = device_cookies(response)
    assert canned.requests[0]["json"]["client"]["device"] == cookie["value"]
    # The same browser, its next link: the same id.
    form = _form(confirm_portal.client.get("/tickets/2?auto_login=t0ken"))
    confirm_portal.client.post(form.pop("action"), data=form)
    assert canned.requests[1]["json"]["client"]["device"] == cookie["value"]


def test_verifier_refuses_a_malformed_device_and_sends_nothing(canned):
    with Verifier(canned.url, PORTAL_KEY) as verifier:
        for device in ("short", "has spaces 0123456789", "x" * 129, 42):
            with pytest.raises(ValueError):
                verifier.verify("t0ken", device=device)
    assert canned.requests == []


def test_bound_to_the_first_browser_through_the_real_service(portal, links):
    links.enable(bind_to_first_device=True)
    path, link_id = issue_with_id(links)
    first = portal.client.get(path)
    assert (first.status_code, first.headers["Location"]) == (303, "/tickets/1234")
    assert ledger_entry(links, link_id)["bound"] is True
    # The same browser again: still signed in.
    again = portal.client.get(path)
    assert (again.status_code, again.headers["Location"]) == (303, "/tickets/1234")
    # Another browser: refused, lands on the page, the portal is told why.
    other = Client(portal.middleware)
    elsewhere = other.get(path)
    assert (elsewhere.status_code, elsewhere.headers["Location"]) == (303, "/tickets/1234")
    assert [user_id for user_id, _ in portal.logins] == ["42", "42"]
    assert portal.failures == ["token_bound_elsewhere"]
    outcomes = links.client.get("/v1/admin/signins", headers=ADMIN).json["signins"]
    assert [(s["outcome"], s["link_id"]) for s in outcomes][0] == (
        "token_bound_elsewhere",
        link_id,
    )


def test_in_confirm_mode_a_scanners_get_binds_nothing(links, service_url):
    links.enable(bind_to_first_device=True)
    path, link_id = issue_with_id(links)
    portal = Portal(service_url, confirm=True)
    try:
        scanner = Client(portal.middleware)
        assert scanner.get(path).status_code == 200  # the button, nothing verified
        assert ledger_entry(links, link_id)["bound"] is False
        form = _form(portal.client.get(path))
        response = portal.client.post(form.pop("action"), data=form)
        assert response.headers["Location"] == "/tickets/1234"
        assert ledger_entry(links, link_id)["bound"] is True
        # The scanner that now presses the button too is another browser.
        form = _form(scanner.get(path))
        scanner.post(form.pop("action"), data=form)
    finally:
        portal.verifier.close()
    assert [user_id for user_id, _ in portal.logins] == ["42"]
    assert portal.failures == ["token_bound_elsewhere"]


def test_a_voided_link_is_token_revoked_and_the_users_other_links_still_work(portal, links):
    voided, voided_id = issue_with_id(links)
    kept, _ = issue_with_id(links)
    void(links, voided_id)
    response = portal.client.get(voided)
    assert (response.status_code, response.headers["Location"]) == (303, "/tickets/1234")
    assert portal.failures == ["token_revoked"]
    assert portal.client.get(kept).headers["Location"] == "/tickets/1234"
    assert [user_id for user_id, _ in portal.logins] == ["42"]


def test_a_verifier_without_a_device_fails_loudly_while_binding_is_on(links, service_url):
    links.enable(bind_to_first_device=True)
    token = links.token(target="/tickets/1234")
    with Verifier(service_url, PORTAL_KEY) as verifier:
        with pytest.raises(VerificationError) as exc_info:
            verifier.verify(token)
    assert (exc_info.value.reason, exc_info.value.detail) == (
        "service_unavailable",
        "HTTP 400 invalid_request",
    )


def test_every_failure_reason_has_words_for_the_person_and_nothing_more():
    assert set(FAILURE_MESSAGES) == set(FAILURE_REASONS)
    for title, text in FAILURE_MESSAGES.values():
        assert title and text and "{" not in title + text
    assert "no longer works" in FAILURE_MESSAGES["token_revoked"][0]
    assert "browser that opened it first" in FAILURE_MESSAGES["token_bound_elsewhere"][0]
    for reason in ("token_revoked", "token_bound_elsewhere"):
        assert "password" in FAILURE_MESSAGES[reason][1]


# --- logs -----------------------------------------------------------------------


def test_no_log_line_holds_a_token(portal, links, caplog):
    caplog.set_level(logging.DEBUG)
    good = links.token(target="/tickets/1")
    revoked = links.token(target="/tickets/2")
    portal.client.get(f"/tickets/1?auto_login={good}")
    portal.client.get("/tickets/1?auto_login=eyJhbGciOiJIUzI1NiJ9.forged.sig")
    links.revoke("42")
    portal.client.get(f"/tickets/2?auto_login={revoked}")
    portal.client.head(f"/tickets/2?auto_login={revoked}")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "signed in user 42" in text
    assert "refused: token_revoked" in text
    for secret in (good, revoked, "eyJ", PORTAL_KEY):
        assert secret not in text


# --- the Flask helper ----------------------------------------------------------


@pytest.fixture
def flask_portal(service_url):
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "test-portal-secret-0123456789abcdef"

    def login(request, user_id, claims):
        session["user_id"] = user_id

    def on_failure(request, reason):
        flash(reason)

    @app.get("/tickets/<ticket_id>")
    def ticket(ticket_id):
        return {"user": session.get("user_id"), "messages": get_flashed_messages()}

    helper = FlaskAutoLogin(
        app, login=login, on_failure=on_failure, service_url=service_url, api_key=PORTAL_KEY
    )
    yield app
    helper.middleware.verifier.close()


def test_flask_helper_signs_in_through_the_session(flask_portal, links):
    client = flask_portal.test_client()
    token = links.token(target="/tickets/1234")
    response = client.get(f"/tickets/1234?auto_login={token}")
    assert (response.status_code, response.headers["Location"]) == (303, "/tickets/1234")
    assert_no_store(response)
    assert "session=" in response.headers["Set-Cookie"]
    assert client.get("/tickets/1234").json == {"user": "42", "messages": []}


def test_flask_helper_failure_flashes_the_reason(flask_portal, links):
    client = flask_portal.test_client()
    token = links.token(target="/tickets/1234")
    links.bump()
    response = client.get(f"/tickets/1234?auto_login={token}&tab=1")
    assert response.headers["Location"] == "/tickets/1234?tab=1"
    assert client.get("/tickets/1234").json == {"user": None, "messages": ["token_revoked"]}
