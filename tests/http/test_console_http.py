"""The admin console under /admin, through Flask's test client.

Sign-in, CSRF, idle timeout, rate limit, security headers, and that every
change made here goes through the admin API's code into the same audit log.
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from datetime import timedelta

import pytest

from service import close_app, create_app
from service.errors import ConfigError, StoreUnavailableError
from tests.conftest import API_KEYS, CONSOLE_SECRET_KEY, SECRETS, auth

ADMIN_KEY = API_KEYS["admin-key"][0]
ISSUER_KEY = API_KEYS["issuer-key"][0]
COOKIE = "autologin_console"
PAGES = (
    "/admin/t/default/settings",
    "/admin/t/default/security",
    "/admin/t/default/security/void",
    "/admin/t/default/audit",
    "/admin/t/default/signins",
    "/admin/t/default/preview",
    "/admin/t/default/users/42",
)
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Console:
    """Use the console as a browser would: forms with this session's CSRF token."""

    def __init__(self, client) -> None:
        self.client = client

    def csrf(self, path: str = "/admin/") -> str:
        response = self.client.get(path)
        match = _CSRF.search(response.get_data(as_text=True))
        assert match, response.get_data(as_text=True)
        return match[1]

    def sign_in(self, key: str = ADMIN_KEY, **environ):
        data = {"csrf_token": self.csrf(), "api_key": key}
        return self.client.post("/admin/", data=data, **environ)

    def post(self, path: str, data: dict, *, follow: bool = False):
        data = {"csrf_token": self.csrf("/admin/t/default/settings"), **data}
        return self.client.post(path, data=data, follow_redirects=follow)

    def cookie(self) -> str | None:
        cookie = self.client.get_cookie(COOKIE, path="/admin")
        return cookie.value if cookie else None


def text(response) -> str:
    return response.get_data(as_text=True)


def session_of(app, console: Console) -> dict:
    """Decode the console's session cookie with the console's own serializer."""
    app_console = app.extensions["console"]
    serializer = app_console.session_interface.get_signing_serializer(app_console)
    return serializer.loads(console.cookie())


def cookie_payload(value: str) -> str:
    """Return the readable part of a Flask session cookie (it is signed, not encrypted)."""
    compressed = value.startswith(".")
    payload = value.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    return (zlib.decompress(raw) if compressed else raw).decode()


def api_settings(client) -> dict:
    return client.get("/v1/admin/settings", headers=auth("admin-key")).json


def audit(client) -> list[dict]:
    return client.get("/v1/admin/audit", headers=auth("admin-key")).json["events"]


@pytest.fixture
def console(client) -> Console:
    return Console(client)


@pytest.fixture
def signed_in(console) -> Console:
    response = console.sign_in()
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/t/default/settings"
    return console


# -- sign-in ------------------------------------------------------------------------


def test_admin_signs_in_with_a_form_and_sees_general_setting(signed_in):
    page = signed_in.client.get("/admin/t/default/settings")
    assert page.status_code == 200
    assert "Signed in as <strong>admin-key</strong>" in text(page)
    for crumb in ("Email", "Settings", "General Setting"):
        assert f">{crumb}</li>" in text(page)
    assert "Auto-login link in emails" in text(page)


def test_sign_in_page_posts_the_key_and_never_takes_it_from_the_url(console):
    page = text(console.client.get("/admin/"))
    assert '<form method="post" action="/admin/"' in page
    assert 'type="password" id="api_key" name="api_key"' in page
    response = console.client.get("/admin/", query_string={"api_key": ADMIN_KEY})
    assert "Sign in to the Admin Console" in text(response)
    assert console.client.get("/admin/t/default/settings").headers["Location"] == "/admin/"


def test_signed_out_pages_redirect_to_sign_in(client):
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"] == "/admin/"


def test_bare_admin_redirects_to_the_console(client):
    response = client.get("/admin", follow_redirects=True)
    assert response.status_code == 200
    assert "Sign in to the Admin Console" in text(response)


@pytest.mark.parametrize(
    ("key", "status", "message"),
    (
        ("not-a-key-0123456789abcdefghijklmnop", 403, "That is not an API key of this service"),
        (ISSUER_KEY, 403, "does not have the admin role"),
        ("   ", 400, "Enter an admin API key"),
    ),
)
def test_a_key_that_is_not_an_admin_key_is_refused_with_a_message(console, key, status, message):
    response = console.sign_in(key)
    assert response.status_code == status
    assert message in text(response)
    assert console.client.get("/admin/t/default/settings").headers["Location"] == "/admin/"


def test_sign_ins_are_rate_limited_per_address(make_app, frozen):
    app = make_app(RATE_LIMIT_CONSOLE_SIGNIN="3 per 5 minutes")
    console = Console(app.test_client())
    for _ in range(3):
        assert console.sign_in("wrong-key-0123456789abcdefghijklmnop").status_code == 403
    response = console.sign_in("wrong-key-0123456789abcdefghijklmnop")
    assert response.status_code == 429
    assert response.mimetype == "text/html"
    assert "Too many sign-in attempts from your address" in text(response)
    assert 1 <= int(response.headers["Retry-After"]) <= 300
    # Over the limit even the right key is refused: guessing faster gains nothing.
    assert console.sign_in().status_code == 429
    # Another address is counted apart.
    other = Console(app.test_client()).sign_in(environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert other.status_code == 302


# -- the session --------------------------------------------------------------------


def test_session_holds_the_key_name_and_times_never_the_key(app, signed_in, frozen):
    session = session_of(app, signed_in)
    assert set(session) == {"key_name", "last_seen", "csrf_token"}
    assert session["key_name"] == "admin-key"
    raw = signed_in.cookie()
    for secret in [*SECRETS, CONSOLE_SECRET_KEY]:
        assert secret not in raw
        assert secret not in cookie_payload(raw)


def test_no_key_or_secret_ever_appears_in_a_page_or_cookie(app, signed_in, links):
    links.enable()
    links.verify(links.token())
    signed_in.post(
        "/admin/t/default/preview", {"user_id": "42", "email": "a@example.com", "to": "a@x.io"}
    )
    for path in (*PAGES, "/admin/", "/admin/t/default/audit?page=2", "/admin/nope"):
        response = signed_in.client.get(path)
        for secret in [*SECRETS, CONSOLE_SECRET_KEY]:
            assert secret not in text(response), path
            assert secret not in cookie_payload(signed_in.cookie())


def test_cookie_is_httponly_strict_and_scoped_to_the_console(signed_in):
    header = signed_in.client.get("/admin/t/default/settings").headers["Set-Cookie"]
    assert header.startswith(f"{COOKIE}=")
    assert "HttpOnly" in header
    assert "SameSite=Strict" in header
    assert "Path=/admin" in header
    assert "Secure" not in header  # plain http: a Secure cookie would never come back


def test_cookie_is_secure_over_https(client):
    response = client.get("/admin/", base_url="https://localhost")
    assert "Secure" in response.headers["Set-Cookie"]


def test_forwarded_proto_counts_only_from_a_trusted_proxy(make_app):
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    untrusted = make_app().test_client().get("/admin/", headers=forwarded)
    assert "Secure" not in untrusted.headers["Set-Cookie"]
    trusted = make_app(CONSOLE_TRUSTED_PROXIES=1).test_client().get("/admin/", headers=forwarded)
    assert "Secure" in trusted.headers["Set-Cookie"]


def test_idle_session_times_out(make_app, frozen):
    app = make_app(CONSOLE_IDLE_TIMEOUT_SECONDS=600)
    console = Console(app.test_client())
    console.sign_in()
    frozen.tick(timedelta(seconds=599))
    assert (
        console.client.get("/admin/t/default/settings").status_code == 200
    )  # and counts as activity
    frozen.tick(timedelta(seconds=599))
    assert console.client.get("/admin/t/default/security").status_code == 200
    frozen.tick(timedelta(seconds=601))
    response = console.client.get("/admin/t/default/settings")
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/"
    page = console.client.get("/admin/")
    assert "You were signed out after 10 minutes without activity" in text(page)
    assert console.client.get("/admin/t/default/settings").headers["Location"] == "/admin/"


def test_default_idle_timeout_is_15_minutes(console, frozen):
    console.sign_in()
    frozen.tick(timedelta(seconds=901))
    assert console.client.get("/admin/t/default/settings").headers["Location"] == "/admin/"


def test_a_post_after_the_timeout_changes_nothing(make_app, frozen):
    app = make_app(CONSOLE_IDLE_TIMEOUT_SECONDS=60)
    console = Console(app.test_client())
    console.sign_in()
    token = console.csrf("/admin/t/default/settings")
    frozen.tick(timedelta(seconds=61))
    data = {"csrf_token": token, "auto_login_enabled": "on", "ttl_value": "3", "ttl_unit": "days"}
    response = console.client.post("/admin/t/default/settings", data=data)
    assert response.headers["Location"] == "/admin/"
    assert api_settings(app.test_client())["auto_login_enabled"] is False


def test_sign_out_ends_the_session(signed_in):
    response = signed_in.post("/admin/signout", {}, follow=True)
    assert "You are signed out." in text(response)
    assert signed_in.client.get("/admin/t/default/settings").headers["Location"] == "/admin/"


def test_a_session_of_a_key_removed_since_ends(config, make_app, signed_in):
    keys = {k: v for k, v in config["API_KEYS"].items() if k != "admin-key"}
    later = make_app(API_KEYS=keys).test_client()
    later.set_cookie(COOKIE, signed_in.cookie(), path="/admin")
    response = later.get("/admin/t/default/settings", follow_redirects=True)
    assert "no longer an admin key" in text(response)


# -- CSRF ----------------------------------------------------------------------------


@pytest.mark.parametrize("token", (None, "", "wrong-token"))
def test_a_post_without_this_sessions_csrf_token_is_refused(app, signed_in, token):
    data = {"auto_login_enabled": "on", "ttl_value": "3", "ttl_unit": "days"}
    if token is not None:
        data["csrf_token"] = token
    response = signed_in.client.post("/admin/t/default/settings", data=data)
    assert response.status_code == 403
    assert response.mimetype == "text/html"
    assert "did not carry this session&#39;s security token" in text(response)
    assert api_settings(app.test_client())["auto_login_enabled"] is False


def test_a_csrf_token_of_another_session_is_refused(app, signed_in):
    other = Console(app.test_client())
    other.sign_in()
    stolen = other.csrf("/admin/t/default/settings")
    data = {"csrf_token": stolen, "reason": "cross-site"}
    assert signed_in.client.post("/admin/t/default/security/void", data=data).status_code == 403
    assert app.test_client().get("/v1/admin/epoch", headers=auth("admin-key")).json["epoch"] == 1


def test_sign_in_and_sign_out_need_the_csrf_token_too(console, signed_in):
    fresh = Console(console.client.application.test_client())
    response = fresh.client.post("/admin/", data={"api_key": ADMIN_KEY})
    assert response.status_code == 403
    assert signed_in.client.post("/admin/signout").status_code == 403
    assert signed_in.client.get("/admin/t/default/settings").status_code == 200


def test_sign_in_gives_a_new_csrf_token(console):
    before = console.csrf()
    console.client.post("/admin/", data={"csrf_token": before, "api_key": ADMIN_KEY})
    assert console.csrf("/admin/t/default/settings") != before


# -- security headers and error pages --------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    (
        ("GET", "/admin/", 302),
        ("GET", "/admin/t/default/settings", 200),
        ("GET", "/admin/static/console.css", 200),
        ("GET", "/admin/no-such-page", 404),
        ("PUT", "/admin/t/default/settings", 405),
        ("POST", "/admin/t/default/settings", 403),
        ("GET", "/admin/t/default/audit?page=0", 400),
        ("GET", "/admin/t/default/audit?page=" + "1" * 5000, 400),
    ),
    ids=lambda v: "/admin/t/default/audit?page=<5000 digits>" if len(str(v)) > 100 else None,
)
def test_every_console_response_carries_the_security_headers(signed_in, method, path, status):
    response = signed_in.client.open(path, method=method)
    response.close()
    assert response.status_code == status
    for name, value in HEADERS.items():
        assert response.headers[name] == value
    if path.endswith(".css"):
        assert response.mimetype == "text/css"
    else:
        assert response.mimetype == "text/html"
        assert "Traceback" not in text(response)


def test_errors_under_admin_are_pages_and_the_api_keeps_problem_json(client, signed_in):
    not_found = client.get("/admin/no-such-page")
    assert "There is no such page in the admin console." in text(not_found)
    not_allowed = client.put("/admin/t/default/settings")
    assert "This page cannot be opened with PUT." in text(not_allowed)
    assert "POST" in not_allowed.headers["Allow"]
    api = client.get("/v1/no-such-call")
    assert api.status_code == 404
    assert api.mimetype == "application/problem+json"
    assert "Content-Security-Policy" not in api.headers


def test_store_down_is_a_message_page(app, signed_in, monkeypatch):
    def unavailable(*args, **kwargs):
        raise StoreUnavailableError("down for the test")

    monkeypatch.setattr(app.extensions["store"], "settings", unavailable)
    response = signed_in.client.get("/admin/t/default/settings")
    assert response.status_code == 503
    assert response.mimetype == "text/html"
    assert response.headers["Retry-After"] == "1"
    assert "cannot be reached" in text(response)
    assert "down for the test" not in text(response)


# -- Email > Settings > General Setting ----------------------------------------------


def test_switch_on_through_the_console_is_the_api_setting(app, signed_in):
    page = text(signed_in.client.get("/admin/t/default/settings"))
    assert 'name="auto_login_enabled"' in page and " checked" not in page  # off on a new install
    data = {"auto_login_enabled": "on", "ttl_value": "3", "ttl_unit": "days"}
    response = signed_in.post("/admin/t/default/settings", data, follow=True)
    assert "Saved. Auto-login links are on; new links live 3 days." in text(response)
    assert api_settings(app.test_client())["auto_login_enabled"] is True
    event = audit(app.test_client())[0]
    assert (event["actor"], event["action"]) == ("admin-key", "settings.update")
    assert event["detail"] == {"auto_login_enabled": True}


def test_lifetime_in_hours_or_days(app, signed_in):
    signed_in.post("/admin/t/default/settings", {"ttl_value": "2", "ttl_unit": "hours"})
    assert api_settings(app.test_client())["token_ttl_seconds"] == 7200
    signed_in.post("/admin/t/default/settings", {"ttl_value": "5", "ttl_unit": "days"})
    assert api_settings(app.test_client())["token_ttl_seconds"] == 5 * 86400
    page = text(signed_in.client.get("/admin/t/default/settings"))
    assert 'value="5"' in page and '<option value="days" selected>' in page
    details = [e["detail"] for e in audit(app.test_client())[:2]]
    assert details == [{"token_ttl_seconds": 432000}, {"token_ttl_seconds": 7200}]


@pytest.mark.parametrize(
    ("value", "unit", "message"),
    (
        ("8", "days", "The lifetime can be at most 7 days"),
        ("169", "hours", "The lifetime can be at most 7 days"),
        ("0", "hours", "Enter the lifetime as a whole number of hours or days."),
        ("two", "hours", "Enter the lifetime as a whole number of hours or days."),
        ("2", "weeks", "Enter the lifetime as a whole number of hours or days."),
        ("9" * 5000, "days", "Enter the lifetime as a whole number of hours or days."),
    ),
    ids=lambda v: f"{len(v)} digits" if v.isdigit() and len(v) > 40 else v,
)
def test_lifetime_outside_the_limits_is_refused_with_a_message(
    app, signed_in, value, unit, message
):
    response = signed_in.post("/admin/t/default/settings", {"ttl_value": value, "ttl_unit": unit})
    assert response.status_code == 400
    assert message in text(response)
    assert api_settings(app.test_client())["token_ttl_seconds"] == 259200


def test_lifetime_above_a_smaller_configured_maximum_is_refused(make_app):
    app = make_app(MAX_TOKEN_TTL_SECONDS=86400)
    console = Console(app.test_client())
    console.sign_in()
    response = console.post("/admin/t/default/settings", {"ttl_value": "2", "ttl_unit": "days"})
    assert response.status_code == 400
    assert "The lifetime can be at most 1 day" in text(response)
    assert "MAX_TOKEN_TTL_SECONDS" in text(response)


def test_a_lifetime_set_in_minutes_through_the_api_is_shown_exactly(signed_in, links):
    links.enable(token_ttl_seconds=5400)
    page = text(signed_in.client.get("/admin/t/default/settings"))
    assert 'value="90"' in page and '<option value="minutes" selected>' in page
    # Saving the switch alone leaves the lifetime as it is.
    signed_in.post("/admin/t/default/settings", {"ttl_value": "90", "ttl_unit": "minutes"})
    assert api_settings(signed_in.client)["token_ttl_seconds"] == 5400


def test_saving_unchanged_settings_writes_no_audit_event(app, signed_in):
    before = len(audit(app.test_client()))
    response = signed_in.post(
        "/admin/t/default/settings", {"ttl_value": "3", "ttl_unit": "days"}, follow=True
    )
    assert "Nothing to save" in text(response)
    assert len(audit(app.test_client())) == before


# -- Security ------------------------------------------------------------------------


def test_void_all_links_asks_for_confirmation_and_a_reason(app, signed_in, links):
    links.enable()
    before = links.token()
    confirm = text(signed_in.client.get("/admin/t/default/security/void"))
    assert "This signs nobody out but makes every link already sent useless" in confirm
    refused = signed_in.post("/admin/t/default/security/void", {"reason": "  "})
    assert refused.status_code == 400
    assert "Reason: must be 1 to 500 characters" in text(refused)
    assert links.verify(before).status_code == 200

    response = signed_in.post(
        "/admin/t/default/security/void", {"reason": "mail server breach"}, follow=True
    )
    assert "Every auto-login link sent before now is void (epoch 2)" in text(response)
    assert links.verify(before).json["code"] == "token_revoked"
    assert links.verify(links.token()).status_code == 200
    event = audit(app.test_client())[0]
    assert (event["actor"], event["action"]) == ("admin-key", "epoch.bump")
    assert event["detail"] == {"epoch": 2, "reason": "mail server breach"}
    page = text(signed_in.client.get("/admin/t/default/security"))
    assert '<dd class="epoch">2</dd>' in page and "mail server breach" in page


def test_revoke_one_users_links(app, signed_in, links):
    links.enable()
    alice, bob = links.token("alice"), links.token("bob")
    response = signed_in.post(
        "/admin/t/default/security/revoke",
        {"user_id": "alice", "reason": "lost phone"},
        follow=True,
    )
    assert "Every auto-login link of user alice sent before now is void." in text(response)
    assert links.verify(alice).json["code"] == "token_revoked"
    assert links.verify(bob).status_code == 200
    event = audit(app.test_client())[0]
    assert (event["actor"], event["action"]) == ("admin-key", "user.revoke")
    assert event["detail"]["user_id"] == "alice"


@pytest.mark.parametrize(
    ("user_id", "reason", "message"),
    (
        ("no spaces allowed", "why", "User id: must be 1 to 128 of"),
        ("alice", "", "Reason: must be 1 to 500 characters"),
        ("alice", "x" * 501, "Reason: must be 1 to 500 characters"),
    ),
)
def test_revoke_refuses_a_bad_user_id_or_reason(app, signed_in, user_id, reason, message):
    response = signed_in.post(
        "/admin/t/default/security/revoke", {"user_id": user_id, "reason": reason}
    )
    assert response.status_code == 400
    assert message in text(response)
    assert audit(app.test_client())[0]["action"] == "store.create"


# -- logs -------------------------------------------------------------------------------


def test_reading_the_audit_page_prunes_old_events_as_the_api_does(frozen, make_app):
    # With SIGNIN_LOG off, reads of the logs are what prunes them (README).
    app = make_app(LOG_RETENTION_DAYS=1, SIGNIN_LOG=False)
    client = app.test_client()
    api = auth("admin-key")
    client.patch("/v1/admin/settings", json={"auto_login_enabled": True}, headers=api)
    frozen.tick(timedelta(days=1, hours=1))
    console = Console(client)
    assert console.sign_in().status_code == 302
    assert app.extensions["store"].audit_events(limit=10) != []  # nothing pruned them yet
    assert client.get("/admin/t/default/audit").status_code == 200
    assert app.extensions["store"].audit_events(limit=10) == []


def test_audit_log_is_paged_newest_first(app, signed_in, links):
    for i in range(30):
        links.bump(f"bump {i}")
    first = text(signed_in.client.get("/admin/t/default/audit"))
    assert first.count("<tr>") == 1 + 25
    assert first.index("bump 29") < first.index("bump 5")
    assert "bump 4" not in first
    assert 'href="/admin/t/default/audit?page=2"' in first
    second = text(signed_in.client.get("/admin/t/default/audit?page=2"))
    assert second.count("<tr>") == 1 + 6  # bumps 4..0 and the store's creation
    assert "store.create" in second
    assert "?page=3" not in second and 'href="/admin/t/default/audit?page=1"' in second


@pytest.mark.parametrize("page", ("0", "21", "x", "-1", "²"))
def test_audit_page_outside_the_newest_500_events_is_a_message(signed_in, page):
    response = signed_in.client.get("/admin/t/default/audit", query_string={"page": page})
    assert response.status_code == 400
    assert "There are pages 1 to 20 of the log." in text(response)


def test_signin_log_lists_and_filters_by_user(signed_in, links):
    links.enable()
    links.verify(links.token("alice"), client={"ip": "203.0.113.7", "user_agent": "Firefox"})
    links.verify(links.token("bob"))
    page = text(signed_in.client.get("/admin/t/default/signins"))
    assert "alice" in page and "bob" in page and "203.0.113.7" in page
    filtered = text(signed_in.client.get("/admin/t/default/signins?user_id=bob"))
    assert ">bob</a></td>" in filtered and ">alice</a></td>" not in filtered
    bad = signed_in.client.get("/admin/t/default/signins", query_string={"user_id": "no spaces"})
    assert bad.status_code == 400
    assert "User id: must be 1 to 128 of" in text(bad)


# -- preview ------------------------------------------------------------------------------


def preview(console: Console, **fields):
    form = {"user_id": "42", "email": "alice@example.com", "to": "", "cc": "", "bcc": ""}
    return console.post("/admin/t/default/preview", {**form, **fields})


@pytest.mark.parametrize(
    ("enabled", "fields", "answer"),
    (
        (False, {"to": "alice@example.com"}, "Auto-login links are switched off"),
        (
            True,
            {"to": "alice@example.com", "cc": "bob@example.com"},
            "The email goes to 2 different addresses",
        ),
        (
            True,
            {"to": "Alice@Example.com,\nalice@example.com", "bcc": "ALICE@example.com"},
            "Yes: this email would carry an auto-login link",
        ),
        (True, {"to": "", "cc": "bob@example.com"}, "is not the user's own address"),
    ),
)
def test_preview_answers_like_post_v1_links(signed_in, links, enabled, fields, answer):
    if enabled:
        links.enable()
    page = preview(signed_in, target="/tickets/1234", **fields)
    assert page.status_code == 200
    assert answer in text(page)
    assert "https://portal.example.com/tickets/1234" in text(page)
    # The same request through the API gives the same answer; the preview issued nothing.
    recipients = {
        name: [a.strip() for a in re.split(r"[,\s]+", fields.get(name, "")) if a.strip()]
        for name in ("to", "cc", "bcc")
    }
    api = links.issue(recipients=recipients, target="/tickets/1234").json
    assert (api["reason"] is None) == ("Yes:" in text(page))
    if api["reason"]:
        assert f"<code>{api['reason']}</code>" in text(page)
    assert "auto_login=" not in text(page)


@pytest.mark.parametrize(
    ("fields", "message"),
    (
        ({"to": "alice@example.com", "user_id": "a b"}, "User id: must be 1 to 128 of"),
        ({"to": "alice@example.com", "email": "nope"}, "User&#39;s email: is not an e-mail"),
        ({"to": "alice@example.com, bob@"}, "To (address 2): is not an e-mail address"),
        ({}, "Recipients: lists no address"),
        ({"to": "alice@example.com", "target": "https://evil.test/"}, "Target: must be a path"),
        ({"to": "alice@example.com", "target": "//evil.test"}, "Target: must be a path"),
    ),
)
def test_preview_shows_validation_errors_as_messages(signed_in, fields, message):
    response = preview(signed_in, **fields)
    assert response.status_code == 400
    assert message in text(response)
    assert "Traceback" not in text(response)


# -- SECRET_KEY ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    (
        (None, "SECRET_KEY is missing"),
        ("short", "SECRET_KEY is 5 bytes; at least 32 are needed"),
        ("test-signing-secret-k1-0123456789abcdefghijklmnop", "SECRET_KEY must differ"),
    ),
)
def test_production_requires_its_own_secret_key(config, value, message):
    with pytest.raises(ConfigError) as exc_info:
        create_app({**config, "SECRET_KEY": value})
    assert message in str(exc_info.value)
    assert "\n" not in str(exc_info.value)
    if value:
        assert value not in str(exc_info.value)


def test_development_adds_a_secret_key_to_old_dev_secrets(tmp_path, capsys):
    config = {"ENV": "development", "STORE_URL": f"sqlite:///{tmp_path / 's.db'}"}
    instance = tmp_path / "instance"
    first = create_app(config, instance_path=str(instance))
    close_app(first)
    capsys.readouterr()
    secrets_file = instance / "dev-secrets.json"
    old = json.loads(secrets_file.read_text())
    del old["SECRET_KEY"]  # as written before the console existed
    secrets_file.write_text(json.dumps(old))

    second = create_app(config, instance_path=str(instance))
    close_app(second)
    upgraded = json.loads(secrets_file.read_text())
    assert len(upgraded["SECRET_KEY"]) >= 32
    assert {k: v for k, v in upgraded.items() if k != "SECRET_KEY"} == old
    assert second.extensions["deployment"].secret_key == upgraded["SECRET_KEY"].encode()
    assert capsys.readouterr().err == ""  # the API keys are not printed again
    third = create_app(config, instance_path=str(instance))
    close_app(third)
    assert third.extensions["deployment"].secret_key == second.extensions["deployment"].secret_key
