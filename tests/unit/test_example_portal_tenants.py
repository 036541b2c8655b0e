"""The example portal (examples/portal/app.py) serving two tenants by host name.

The service is the canned fake: what is checked is the portal's part, which
tenant each host asks and whose user a link or a password signs in.
"""

from __future__ import annotations

import pytest

from tests.conftest import API_KEYS
from tests.support.example_portal import load_example_portal

GOOD = {"user_id": "42", "target": "/tickets/1234", "issued_at": "x", "expires_at": "y"}
ACME = "http://acme.localhost:8080/"
GLOBEX = "http://globex.localhost:8080/"


def _portal_module():
    return load_example_portal("example_portal_app_tenants")


@pytest.fixture
def portal(canned):
    canned.answer(200, GOOD)
    module = _portal_module()
    app = module.create_portal(
        {
            "SECRET_KEY": "test-portal-secret-0123456789abcdefghijkl",
            "AUTOLOGIN_SERVICE_URL": canned.url,
            "AUTOLOGIN_PORTAL_KEY": API_KEYS["portal-key"][0],
            "AUTOLOGIN_TENANT_HOSTS": module._host_table(
                "acme.localhost=acme, globex.localhost=globex"
            ),
        }
    )
    yield app
    app.extensions["autologin"].middleware.verifier.close()


def test_each_host_signs_in_its_own_tenants_user_42(portal, canned):
    acme, globex = portal.test_client(), portal.test_client()
    first = acme.get("/tickets/1234?auto_login=t0ken", base_url=ACME)
    assert (first.status_code, first.headers["Location"]) == (303, "/tickets/1234")
    page = acme.get("/tickets/1234", base_url=ACME).get_data(as_text=True)
    assert "Alice Acme" in page and "Acme helpdesk" in page
    globex.get("/tickets/1234?auto_login=t0ken", base_url=GLOBEX)
    page = globex.get("/tickets/1234", base_url=GLOBEX).get_data(as_text=True)
    assert "Gloria Globex" in page and "Globex helpdesk" in page
    assert [r["path"] for r in canned.requests] == [
        "/v1/tenants/acme/tokens/verify",
        "/v1/tenants/globex/tokens/verify",
    ]


def test_a_session_of_one_tenant_is_nobody_on_another(portal):
    browser = portal.test_client()
    browser.post("/login", data={"user_id": "42", "password": "alice"}, base_url=ACME)
    assert "Alice Acme" in browser.get("/", base_url=ACME).get_data(as_text=True)
    # The same cookie presented to globex's host (a browser would not even send it).
    browser.set_cookie(
        "session",
        browser.get_cookie("session", domain="acme.localhost").value,
        domain="globex.localhost",
    )
    response = browser.get("/", base_url=GLOBEX)
    assert (response.status_code, response.headers["Location"]) == (302, "/login")


def test_a_refused_link_says_so_on_the_login_page(portal, canned):
    canned.answer(401, {"code": "token_invalid"})
    browser = portal.test_client()
    browser.get("/tickets/1234?auto_login=acmes-t0ken", base_url=GLOBEX)
    page = browser.get("/tickets/1234", base_url=GLOBEX, follow_redirects=True)
    assert "This sign-in link is not valid" in page.get_data(as_text=True)
    assert "42 / gloria" in page.get_data(as_text=True)


def test_a_host_of_no_tenant_is_no_helpdesk(portal, canned):
    browser = portal.test_client()
    response = browser.get("/tickets/1234?auto_login=t0ken", base_url="http://evil.test/")
    assert response.status_code == 303  # the middleware: token_invalid, not sent
    assert canned.requests == []
    assert browser.get("/tickets/1234", base_url="http://evil.test/").status_code == 404


def test_the_host_table_of_the_environment():
    module = _portal_module()
    assert module._host_table("") == {}
    assert module._host_table("a.localhost=a, b.localhost = b,") == {
        "a.localhost": "a",
        "b.localhost": "b",
    }
    with pytest.raises(RuntimeError):
        module._host_table("a.localhost")
