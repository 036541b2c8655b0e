"""Both ends of the link name a tenant: the client, the email helper and the portal middleware.

The service here is the canned fake (tests/support/service_thread.py): these
tests check what each piece sends where, and what it does with each answer.
tests/unit/test_tenant_stack.py runs the same pieces against the real service.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from flask import Flask, session
from werkzeug.test import Client

from service.client import EmailLinkRequest, LinkClient
from service.emails import main, make_portal_link
from service.portal import (
    TENANT_ENVIRON_KEY,
    AutoLoginMiddleware,
    FlaskAutoLogin,
    LoginRefusedError,
    VerificationError,
    Verifier,
    request_host,
    subdomain_tenant,
    tenant_from_host,
)
from service.transport import check_tenant_id, is_tenant_id, tenant_path
from tests.conftest import API_KEYS, PORTAL
from tests.support.gunicorn_server import free_port

ROOT = Path(__file__).resolve().parents[2]
ISSUER_KEY = API_KEYS["issuer-key"][0]
PORTAL_KEY = API_KEYS["portal-key"][0]
ACME = "https://acme.portal.example.com"
GLOBEX = "https://globex.portal.example.com"
HOSTS = {"acme.portal.example.com": "acme", "globex.portal.example.com": "globex"}
GOOD = {"user_id": "42", "target": "/tickets/1234", "issued_at": "x", "expires_at": "y"}
ALICE = {"user_id": "42", "email": "alice@example.com", "to": ["alice@example.com"]}


def logged(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records)


def paths(canned) -> list[str]:
    return [r["path"] for r in canned.requests]


def token_link(portal: str, target: str = "/t") -> dict:
    return {
        "url": f"{portal}{target}?auto_login=x",
        "auto_login": True,
        "reason": None,
        "expires_at": "2026-11-26T10:00:00Z",
    }


# --- tenant ids --------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["a", "0", "acme", "globex-eu", "a-b-c", "9lives", "default", "a" * 63]
)
def test_a_well_formed_tenant_id(value):
    assert is_tenant_id(value)
    assert check_tenant_id(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "a" * 64,
        "-acme",
        "acme-",
        "-",
        "Acme",
        "ac_me",
        "ac.me",
        "ac me",
        " acme",
        "acme\n",
        "äcme",
        "../admin",
        "acme/links",
        "acme%2F..",
        None,
        42,
        b"acme",
        ["acme"],
    ],
)
def test_a_malformed_tenant_id(value):
    assert not is_tenant_id(value)
    with pytest.raises(ValueError):
        check_tenant_id(value)


def test_the_tenant_path_of_each_call():
    assert tenant_path(None, "/v1/links") == "/v1/links"
    assert tenant_path("acme", "/v1/links") == "/v1/tenants/acme/links"
    assert tenant_path("acme", "/v1/links/batch") == "/v1/tenants/acme/links/batch"
    assert tenant_path("globex-eu", "/v1/tokens/verify") == "/v1/tenants/globex-eu/tokens/verify"
    with pytest.raises(ValueError):
        tenant_path("../admin", "/v1/links")
    with pytest.raises(ValueError):
        tenant_path("acme", "/healthz")


# --- the email side: LinkClient ----------------------------------------------


def test_a_tenant_client_calls_the_tenant_paths_with_the_same_bodies(canned):
    canned.answer(200, token_link(ACME))
    with LinkClient(canned.url, ISSUER_KEY, tenant="acme", portal_base_url=ACME) as client:
        link = client.link("42", "alice@example.com", to=["alice@example.com"], target="/t")
        canned.answer(200, {"items": [token_link(ACME)]})
        (batch,) = client.links([EmailLinkRequest(**ALICE, target="/t")])
    assert (link.url, link.auto_login) == (f"{ACME}/t?auto_login=x", True)
    assert (batch.url, batch.auto_login) == (f"{ACME}/t?auto_login=x", True)
    assert paths(canned) == ["/v1/tenants/acme/links", "/v1/tenants/acme/links/batch"]
    one, many = canned.requests
    assert one["json"] == EmailLinkRequest(**ALICE, target="/t").to_json()
    assert many["json"] == {"items": [one["json"]]}
    assert one["authorization"] == f"Bearer {ISSUER_KEY}"
    assert "tenant='acme'" in repr(client) and ISSUER_KEY not in repr(client)


def test_without_a_tenant_the_paths_are_unprefixed(canned):
    canned.answer(200, token_link(PORTAL))
    with LinkClient(canned.url, ISSUER_KEY, portal_base_url=PORTAL) as client:
        assert client.tenant is None
        client.link("42", "alice@example.com", to=["alice@example.com"])
        canned.answer(200, {"items": [token_link(PORTAL)]})
        client.links([EmailLinkRequest(**ALICE)])
    assert paths(canned) == ["/v1/links", "/v1/links/batch"]


@pytest.mark.parametrize("tenant", ["", "Acme", "-acme", "acme/x", "a" * 64, 7])
def test_a_malformed_tenant_is_refused_when_the_client_is_made(tenant):
    with pytest.raises(ValueError, match="not a tenant id"):
        LinkClient("http://127.0.0.1:9", ISSUER_KEY, tenant=tenant, portal_base_url=ACME)


def test_the_plain_link_of_a_tenant_is_on_its_own_portal(caplog):
    url = f"http://127.0.0.1:{free_port()}"
    with LinkClient(url, ISSUER_KEY, tenant="acme", portal_base_url=ACME + "/") as client:
        link = client.link("42", "alice@example.com", to=["alice@example.com"], target="/t/1")
        links = client.links([EmailLinkRequest(**ALICE, target="/t/2")])
    assert (link.url, link.reason) == (f"{ACME}/t/1", "service_unavailable")
    assert [(x.url, x.reason) for x in links] == [(f"{ACME}/t/2", "service_unavailable")]
    messages = [r.getMessage() for r in caplog.records if r.name == "service.client"]
    assert messages == [
        "auto-login link for user 42 of tenant acme: cannot connect; the email gets the plain link",
        "auto-login links for 1 emails of tenant acme: cannot connect; they get plain links",
    ]


def test_an_answer_on_another_tenants_portal_is_not_put_into_the_email(canned):
    canned.answer(200, token_link(GLOBEX))
    with LinkClient(canned.url, ISSUER_KEY, tenant="acme", portal_base_url=ACME) as client:
        link = client.link("42", "alice@example.com", to=["alice@example.com"], target="/t")
    assert (link.url, link.auto_login, link.reason) == (f"{ACME}/t", False, "service_error")


@pytest.mark.parametrize(
    ("status", "code"), [(404, "tenant_not_found"), (403, "forbidden"), (400, "invalid_request")]
)
def test_a_tenant_the_service_refuses_gets_the_plain_link(canned, caplog, status, code):
    canned.answer(status, {"status": status, "code": code})
    with LinkClient(canned.url, ISSUER_KEY, tenant="acme", portal_base_url=ACME) as client:
        link = client.link("42", "alice@example.com", to=["alice@example.com"], target="/t")
    assert (link.url, link.reason) == (f"{ACME}/t", "service_error")
    assert f"HTTP {status} {code}" in logged(caplog)
    assert ISSUER_KEY not in logged(caplog)


def test_for_tenant_shares_the_key_and_the_connections(canned, monkeypatch):
    base = LinkClient(canned.url, ISSUER_KEY, portal_base_url=PORTAL)
    closed = []
    monkeypatch.setattr(base.session, "close", lambda: closed.append(True))
    acme = base.for_tenant("acme", portal_base_url=ACME + "/")
    assert (acme.tenant, acme.portal_base_url, acme.session) == ("acme", ACME, base.session)
    assert (base.tenant, base.portal_base_url) == (None, PORTAL)
    canned.answer(200, token_link(ACME))
    assert acme.link(**ALICE, target="/t").auto_login is True
    canned.answer(200, token_link(PORTAL))
    assert base.link(**ALICE, target="/t").auto_login is True
    assert paths(canned) == ["/v1/tenants/acme/links", "/v1/links"]
    assert {r["authorization"] for r in canned.requests} == {f"Bearer {ISSUER_KEY}"}
    acme.close()
    assert closed == []  # the base client owns the session
    base.close()
    assert closed == [True]
    with pytest.raises(ValueError):
        base.for_tenant("Acme", portal_base_url=ACME)


# --- the email side: PortalLinks and the command -------------------------------


def test_portal_links_of_a_tenant_go_through_the_client_to_the_tenant(canned):
    canned.answer(200, token_link(ACME, "/tickets/1"))
    with LinkClient(canned.url, ISSUER_KEY, portal_base_url=PORTAL) as client:
        portal_link = make_portal_link(client, **ALICE, tenant="acme", portal_base_url=ACME)
        assert portal_link("/tickets/1") == f"{ACME}/tickets/1?auto_login=x"
        assert portal_link("/tickets/1") == f"{ACME}/tickets/1?auto_login=x"
    assert paths(canned) == ["/v1/tenants/acme/links"]  # once per target, as before
    assert portal_link.client.tenant == "acme"
    assert client.tenant is None  # the caller's client is not changed


def test_portal_links_of_a_tenant_fall_back_to_its_own_portal():
    url = f"http://127.0.0.1:{free_port()}"
    with LinkClient(url, ISSUER_KEY, portal_base_url=PORTAL, connect_timeout=0.5) as client:
        portal_link = make_portal_link(client, **ALICE, tenant="globex", portal_base_url=GLOBEX)
        assert portal_link("/t/5") == f"{GLOBEX}/t/5"


def test_portal_links_check_the_tenant_and_its_portal_when_made():
    client = LinkClient("http://127.0.0.1:9", ISSUER_KEY, tenant="acme", portal_base_url=ACME)
    # The client's own tenant needs no address: the client has it.
    assert make_portal_link(client, **ALICE, tenant="acme").client is client
    with pytest.raises(ValueError, match="not a tenant id"):
        make_portal_link(client, **ALICE, tenant="Globex", portal_base_url=GLOBEX)
    with pytest.raises(ValueError, match="portal_base_url"):
        make_portal_link(client, **ALICE, tenant="globex")  # its links would go to acme's portal
    with pytest.raises(ValueError, match="not a tenant id"):
        make_portal_link(client, **ALICE, tenant="ACME")
    with pytest.raises(ValueError, match="goes with a tenant"):
        make_portal_link(client, **ALICE, portal_base_url=GLOBEX)


def test_the_command_issues_for_a_tenant(canned, capsys, monkeypatch):
    monkeypatch.setenv("AUTOLOGIN_ISSUER_KEY", ISSUER_KEY)
    canned.answer(200, token_link(ACME, "/tickets/1234"))
    argv = ["--user", "42", "--email", "alice@example.com", "--to", "alice@example.com"]
    argv += ["--target", "/tickets/1234", "--tenant", "acme", "--portal-url", ACME]
    assert main([*argv, "--service-url", canned.url]) == 0
    out, err = capsys.readouterr()
    assert paths(canned) == ["/v1/tenants/acme/links"]
    assert err.startswith("# auto-login link, valid until ")
    assert f"{ACME}/tickets/1234?auto_login=x" in out
    assert ISSUER_KEY not in out + err


@pytest.mark.parametrize("tenant", ["Acme", "", "acme-", "a/b"])
def test_the_command_refuses_a_malformed_tenant(canned, capsys, monkeypatch, tenant):
    monkeypatch.setenv("AUTOLOGIN_ISSUER_KEY", ISSUER_KEY)
    argv = ["--user", "42", "--email", "a@example.com", "--to", "a@example.com"]
    with pytest.raises(SystemExit) as exc_info:
        main([*argv, "--tenant", tenant, "--service-url", canned.url])
    assert exc_info.value.code == 2
    assert "not a tenant id" in capsys.readouterr().err
    assert canned.requests == []


# --- the portal side: Verifier -------------------------------------------------


def test_a_verifier_of_a_tenant_verifies_there(canned):
    canned.answer(200, GOOD)
    with Verifier(canned.url, PORTAL_KEY, tenant="acme") as verifier:
        own = verifier.verify("t0ken")
        other = verifier.verify("t0ken", tenant="globex")
        with pytest.raises(VerificationError) as exc_info:
            verifier.verify("t0ken", tenant="Globex")
    assert (own.user_id, own.tenant, other.tenant) == ("42", "acme", "globex")
    assert exc_info.value.reason == "token_invalid"
    assert paths(canned) == ["/v1/tenants/acme/tokens/verify", "/v1/tenants/globex/tokens/verify"]
    assert set(own.claims) == set(GOOD)  # the service's answer, as it came
    assert "tenant='acme'" in repr(verifier) and PORTAL_KEY not in repr(verifier)
    with pytest.raises(ValueError):
        Verifier(canned.url, PORTAL_KEY, tenant="acme.example")


def test_tenant_not_found_is_an_invalid_link_and_a_warning(canned, caplog):
    canned.answer(404, {"status": 404, "code": "tenant_not_found"})
    with Verifier(canned.url, PORTAL_KEY) as verifier:
        with pytest.raises(VerificationError) as exc_info:
            verifier.verify("t0ken", tenant="gone")
    assert exc_info.value.reason == "token_invalid"
    (record,) = [r for r in caplog.records if r.name == "service.portal"]
    assert record.levelno == logging.WARNING
    assert "no tenant 'gone'" in record.getMessage()


# --- the portal side: the middleware --------------------------------------------


class Portal:
    """A WSGI portal behind the middleware, recording each callback with its tenant."""

    def __init__(self, service_url: str, **options) -> None:
        self.seen: list[tuple] = []
        self.verifier = Verifier(service_url, PORTAL_KEY, connect_timeout=0.5, read_timeout=0.5)
        self.middleware = AutoLoginMiddleware(
            self.app,
            login=self.login,
            on_failure=self.on_failure,
            verifier=self.verifier,
            **options,
        )
        self.client = Client(self.middleware)

    def app(self, environ, start_response):
        self.seen.append(("app", environ.get(TENANT_ENVIRON_KEY, "unset")))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"the page"]

    def login(self, environ, user_id, claims):
        self.seen.append(("login", environ.get(TENANT_ENVIRON_KEY, "unset"), user_id))
        return [("Set-Cookie", f"sid={environ.get(TENANT_ENVIRON_KEY)}-{user_id}; Path=/")]

    def on_failure(self, environ, reason):
        self.seen.append(("failure", environ.get(TENANT_ENVIRON_KEY, "unset"), reason))

    def get(self, url: str, **kwargs):
        return self.client.get(*_on_host(url), **kwargs)

    def post(self, url: str, **kwargs):
        return self.client.post(*_on_host(url), **kwargs)


def _on_host(url: str) -> tuple[str, str]:
    """Split ``https://host/path?query`` into werkzeug's path and ``base_url`` (its Host)."""
    if not url.startswith("https://"):
        return url, "http://localhost/"
    host, _, path = url.removeprefix("https://").partition("/")
    return "/" + path, f"https://{host}/"


@pytest.fixture
def hosts_portal(canned):
    canned.answer(200, GOOD)
    portal = Portal(canned.url, tenant=tenant_from_host(HOSTS))
    yield portal
    portal.verifier.close()


def test_each_host_verifies_in_its_own_tenant(hosts_portal, canned):
    acme = hosts_portal.get(f"{ACME}/tickets/1?auto_login=t0ken&tab=2")
    globex = hosts_portal.get(f"{GLOBEX}/tickets/1?auto_login=t0ken")
    assert [(r.status_code, r.headers["Location"]) for r in (acme, globex)] == [
        (303, "/tickets/1234"),
        (303, "/tickets/1234"),
    ]
    assert paths(canned) == ["/v1/tenants/acme/tokens/verify", "/v1/tenants/globex/tokens/verify"]
    assert canned.requests[0]["json"]["token"] == "t0ken"
    assert canned.requests[0]["authorization"] == f"Bearer {PORTAL_KEY}"
    # login is told whose user 42 this is: acme's and globex's are two people.
    assert hosts_portal.seen == [("login", "acme", "42"), ("login", "globex", "42")]
    assert acme.headers["Set-Cookie"] == "sid=acme-42; Path=/"


def test_a_link_of_acme_opened_on_globexs_host_is_sent_to_globex_and_refused(hosts_portal, canned):
    # The token names acme; the portal sends it where it arrived, to globex,
    # which refuses it (test_tenant_stack.py, with the real service).
    canned.answer(401, {"status": 401, "code": "token_invalid"})
    response = hosts_portal.get(f"{GLOBEX}/tickets/1234?auto_login=acmes-t0ken&tab=notes")
    assert (response.status_code, response.headers["Location"]) == (303, "/tickets/1234?tab=notes")
    assert paths(canned) == ["/v1/tenants/globex/tokens/verify"]
    assert hosts_portal.seen == [("failure", "globex", "token_invalid")]


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.test/t?auto_login=t0ken&a=1",
        "https://portal.example.com/t?auto_login=t0ken&a=1",
        "https://acme.portal.example.com.evil.test/t?auto_login=t0ken&a=1",
        "https://127.0.0.1/t?auto_login=t0ken&a=1",
    ],
)
def test_a_host_of_no_tenant_verifies_nothing(hosts_portal, canned, url, caplog):
    caplog.set_level(logging.DEBUG)
    response = hosts_portal.get(url)
    assert (response.status_code, response.headers["Location"]) == (303, "/t?a=1")
    assert canned.requests == []  # never another tenant, never the key's own
    assert hosts_portal.seen == [("failure", None, "token_invalid")]
    assert "t0ken" not in logged(caplog)


def test_a_request_without_a_host_header_has_no_tenant(hosts_portal, canned):
    response = hosts_portal.get(
        "/t?auto_login=t0ken",
        environ_overrides={"HTTP_HOST": None, "SERVER_NAME": "acme.portal.example.com"},
    )
    assert response.headers["Location"] == "/t"
    assert canned.requests == []
    assert hosts_portal.seen == [("failure", None, "token_invalid")]


@pytest.mark.parametrize("returned", [None, "", "Acme", "../admin", "acme\n", "a" * 64, 42, ["a"]])
def test_a_tenant_function_that_names_no_tenant_id_verifies_nothing(canned, returned):
    portal = Portal(canned.url, tenant=lambda environ: returned)
    try:
        response = portal.get("/t?auto_login=t0ken")
    finally:
        portal.verifier.close()
    assert (response.status_code, response.headers["Location"]) == (303, "/t")
    assert canned.requests == []
    assert portal.seen == [("failure", None, "token_invalid")]


def test_the_tenant_function_sees_the_request_without_the_token(canned):
    canned.answer(200, GOOD)
    environs = []
    portal = Portal(canned.url, tenant=lambda environ: environs.append(dict(environ)) or "acme")
    try:
        portal.get(f"{ACME}/t?a=1&auto_login=t0ken", headers={"X-Tenant-Hint": "h"})
    finally:
        portal.verifier.close()
    (environ,) = environs
    assert (environ["QUERY_STRING"], environ["HTTP_HOST"]) == ("a=1", "acme.portal.example.com")
    assert environ["HTTP_X_TENANT_HINT"] == "h"


def test_a_portal_of_one_tenant_names_it_as_a_string(canned):
    canned.answer(200, GOOD)
    portal = Portal(canned.url, tenant="acme")
    try:
        portal.get("https://anything.test/t?auto_login=t0ken")
    finally:
        portal.verifier.close()
    assert paths(canned) == ["/v1/tenants/acme/tokens/verify"]
    assert portal.seen == [("login", "acme", "42")]


@pytest.mark.parametrize("tenant", ["", "Acme", "acme-", "a.b", 5])
def test_a_malformed_tenant_id_stops_the_portal_at_start(canned, tenant):
    with pytest.raises(ValueError, match="not a tenant id"):
        AutoLoginMiddleware(
            lambda environ, start_response: [],
            login=lambda *a: None,
            service_url=canned.url,
            api_key=PORTAL_KEY,
            tenant=tenant,
        )


def test_without_a_tenant_nothing_changes(canned):
    canned.answer(200, GOOD)
    portal = Portal(canned.url)
    try:
        portal.get(f"{ACME}/t?auto_login=t0ken")
        portal.get(f"{ACME}/t")
    finally:
        portal.verifier.close()
    assert paths(canned) == ["/v1/tokens/verify"]
    # No tenant key in the environ of a portal that names no tenant.
    assert portal.seen == [("login", "unset", "42"), ("app", "unset")]


def test_the_service_not_knowing_the_hosts_tenant_is_an_invalid_link(canned, caplog):
    canned.answer(404, {"status": 404, "code": "tenant_not_found"})
    portal = Portal(canned.url, tenant=subdomain_tenant("portal.example.com"))
    try:
        response = portal.get("https://initech.portal.example.com/t?auto_login=t0ken")
    finally:
        portal.verifier.close()
    assert response.headers["Location"] == "/t"
    assert paths(canned) == ["/v1/tenants/initech/tokens/verify"]
    assert portal.seen == [("failure", "initech", "token_invalid")]
    assert "no tenant 'initech'" in logged(caplog)


def test_a_refused_login_names_the_tenant_in_the_log(canned, caplog):
    canned.answer(200, GOOD)
    caplog.set_level(logging.INFO)
    portal = Portal(canned.url, tenant="acme")

    def refuse(environ, user_id, claims):
        raise LoginRefusedError(user_id)

    portal.middleware.login = refuse
    try:
        response = portal.get("/t?auto_login=t0ken")
    finally:
        portal.verifier.close()
    assert response.headers["Location"] == "/t"
    assert "auto-login refused by the portal for user 42 of tenant acme" in logged(caplog)


def test_confirm_mode_verifies_in_the_tenant_of_the_post(hosts_portal, canned):
    hosts_portal.middleware.confirm = True
    page = hosts_portal.get(f"{ACME}/t?auto_login=t0ken")
    assert page.status_code == 200 and canned.requests == []
    form = {"auto_login": "t0ken", "page": "/t"}
    ok = hosts_portal.post(f"{ACME}/auto-login/confirm", data=form)
    nowhere = hosts_portal.post("https://evil.test/auto-login/confirm", data=form)
    assert (ok.headers["Location"], nowhere.headers["Location"]) == ("/tickets/1234", "/t")
    assert paths(canned) == ["/v1/tenants/acme/tokens/verify"]
    assert hosts_portal.seen == [("login", "acme", "42"), ("failure", None, "token_invalid")]


def test_the_flask_helper_takes_a_tenant_and_tells_the_callbacks(canned):
    canned.answer(200, GOOD)
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "test-portal-secret-0123456789abcdef"

    def login(request, user_id, claims):
        session["user"] = [request.environ[TENANT_ENVIRON_KEY], user_id]

    @app.get("/t")
    def page():
        return {"user": session.get("user")}

    helper = FlaskAutoLogin(
        app,
        login=login,
        service_url=canned.url,
        api_key=PORTAL_KEY,
        tenant=subdomain_tenant("portal.example.com"),
    )
    try:
        client = app.test_client()
        response = client.get("/t?auto_login=t0ken", base_url=GLOBEX)
        assert response.status_code == 303
        assert client.get("/t", base_url=GLOBEX).json == {"user": ["globex", "42"]}
    finally:
        helper.middleware.verifier.close()
    assert paths(canned) == ["/v1/tenants/globex/tokens/verify"]


# --- choosing the tenant from the host ------------------------------------------


@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("acme.portal.example.com", "acme.portal.example.com"),
        ("ACME.Portal.Example.com:8443", "acme.portal.example.com"),
        ("acme.localhost.:8080", "acme.localhost"),
        ("127.0.0.1:8080", "127.0.0.1"),
        ("[::1]:8080", "[::1]"),
        ("[::1]", "[::1]"),
        ("[::1", None),
        ("", None),
        (None, None),
    ],
)
def test_request_host(host, name):
    environ = {"SERVER_NAME": "server.internal"}
    if host is not None:
        environ["HTTP_HOST"] = host
    assert request_host(environ) == name


def test_tenant_from_host_reads_the_table():
    tenant = tenant_from_host({"Acme.Localhost:8080": "acme", "help.globex.com.": "globex"})
    assert [
        tenant({"HTTP_HOST": host})
        for host in ("acme.localhost", "acme.localhost:9999", "HELP.globex.com", "globex.com", "")
    ] == ["acme", "acme", "globex", None, None]
    assert tenant({}) is None


@pytest.mark.parametrize(
    "hosts", [{"acme.localhost": "Acme"}, {"acme.localhost": ""}, {"": "acme"}, {":80": "acme"}]
)
def test_tenant_from_host_refuses_a_bad_table(hosts):
    with pytest.raises(ValueError):
        tenant_from_host(hosts)


@pytest.mark.parametrize(
    ("host", "tenant"),
    [
        ("acme.portal.example.com", "acme"),
        ("globex-eu.portal.example.com:443", "globex-eu"),
        ("ACME.PORTAL.EXAMPLE.COM", "acme"),
        ("portal.example.com", None),
        ("a.b.portal.example.com", None),
        ("-x.portal.example.com", None),
        ("acme.portal.example.com.evil.test", None),
        ("acmeportal.example.com", None),
        ("evil.test", None),
    ],
)
def test_subdomain_tenant(host, tenant):
    assert subdomain_tenant("Portal.Example.com.")({"HTTP_HOST": host}) == tenant


def test_subdomain_tenant_needs_a_domain():
    with pytest.raises(ValueError):
        subdomain_tenant(".")


# --- the kit runs in other people's systems ---------------------------------------


def test_the_kit_imports_without_the_server():
    """The client, the email helper and the middleware need no Flask, store or config.

    ``service/__init__.py`` is the server's factory (it imports Flask); a
    portal that copies the kit has no such package. Stand in for it with an
    empty one, block the server's libraries, and import the four modules.
    """
    code = """
import importlib.abc, json, sys, types

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {"flask", "werkzeug", "jwt", "redis", "itsdangerous"}:
            raise ImportError("the kit must not import " + name)

sys.meta_path.insert(0, Block())
package = types.ModuleType("service")
package.__path__ = [sys.argv[1]]
sys.modules["service"] = package
import service.client, service.emails, service.portal, service.transport
print(json.dumps(sorted(name for name in sys.modules if name.startswith("service."))))
"""
    result = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "service")],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        "service.client",
        "service.emails",
        "service.portal",
        "service.transport",
    ]
