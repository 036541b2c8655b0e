"""Chromium clicks the link of a rendered email: signed in, token gone; voided, sent to sign in.

The real service runs under gunicorn; the example portal (examples/portal)
runs on its own loopback port with its query-free access log, and the
service's PORTAL_BASE_URL points at it. Two browser contexts are two browsers
(each its own cookies): with bind_to_first_device on, the first keeps the
link and the second is asked to sign in. SAVE_SCREENSHOTS=1 also writes
docs/screenshots/portal-signed-in.png, portal-link-revoked.png and
portal-link-bound-elsewhere.png.
"""

from __future__ import annotations

import logging
import os

import pytest
import requests

from service.client import LinkClient
from service.emails import render_ticket_update
from tests.conftest import API_KEYS, SECRETS, production_config, sqlite_url
from tests.e2e.test_gunicorn_e2e import ADMIN, ISSUER, bump, enable
from tests.support.browser import chromium
from tests.support.example_portal import load_example_portal
from tests.support.gunicorn_server import ROOT, GunicornServer, free_port
from tests.support.service_thread import serving

SCREENSHOTS = ROOT / "docs" / "screenshots"


def _portal_module():
    return load_example_portal("example_portal_app")


@pytest.fixture
def stack(tmp_path, request):
    """The service under gunicorn and the example portal, wired to each other."""
    confirm = getattr(request, "param", False)
    portal_port = free_port()
    portal_url = f"http://127.0.0.1:{portal_port}"
    # development: the portal is plain http on loopback.
    config = production_config(sqlite_url(tmp_path), ENV="development", PORTAL_BASE_URL=portal_url)
    with GunicornServer(config, tmp_path) as service:
        portal_module = _portal_module()
        app = portal_module.create_portal(
            {
                "SECRET_KEY": "test-portal-secret-0123456789abcdefghijkl",
                "AUTOLOGIN_SERVICE_URL": service.url,
                "AUTOLOGIN_PORTAL_KEY": API_KEYS["portal-key"][0],
                "AUTOLOGIN_CONFIRM": confirm,
                # Plain http on loopback: the device cookie cannot be Secure.
                "PORTAL_ENV": "development",
            }
        )
        try:
            with serving(app, portal_port, request_handler=portal_module.QuietRequestHandler):
                yield service, portal_url
        finally:
            app.extensions["autologin"].middleware.verifier.close()


def render_for_alice(service, portal_url):
    issuer_key = API_KEYS["issuer-key"][0]
    with LinkClient(service.url, issuer_key, portal_base_url=portal_url) as client:
        return render_ticket_update(
            client,
            user_id="42",
            email="alice@example.com",
            to=["alice@example.com"],
            target="/tickets/1234",
        )


def test_a_link_from_an_email_signs_in_and_a_voided_one_asks_to_sign_in(stack, caplog):
    caplog.set_level(logging.DEBUG)
    service, portal_url = stack
    save = os.environ.get("SAVE_SCREENSHOTS") == "1"
    enable(service)

    rendered = render_for_alice(service, portal_url)
    link = rendered.link.url
    assert rendered.link.auto_login is True
    assert link.startswith(f"{portal_url}/tickets/1234?auto_login=")
    assert f'href="{link}"' in rendered.html
    token = link.split("auto_login=", 1)[1]

    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1000, "height": 640})
        page = context.new_page()
        page.goto(link)
        assert page.url == f"{portal_url}/tickets/1234"
        assert "auto_login" not in page.url
        assert "Alice Example" in page.locator("#signed-in").inner_text()
        assert "Ticket #1234" in page.locator("#ticket-title").inner_text()
        if save:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "portal-signed-in.png"))
        context.close()

        bump(service, "e2e: void every link")

        fresh = browser.new_context(viewport={"width": 1000, "height": 640})
        page = fresh.new_page()
        page.goto(link)
        assert page.url.startswith(f"{portal_url}/login")
        assert "auto_login" not in page.url
        assert "no longer works" in page.locator("#link-ended").inner_text()
        assert page.locator("#signed-in").count() == 0
        if save:
            page.screenshot(path=str(SCREENSHOTS / "portal-link-revoked.png"))
        fresh.close()

    # Neither the portal (middleware, app, access log) nor the service logged the token.
    portal_logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "signed in user 42" in portal_logged
    assert '"GET /tickets/1234 HTTP/1.1" 303' in portal_logged
    for text in (portal_logged, service.log()):
        for secret in (token, *SECRETS):
            assert secret not in text
        assert "eyJhbGciOi" not in text


@pytest.mark.parametrize("stack", [True], indirect=True)
def test_in_confirm_mode_only_the_button_signs_in(stack, caplog):
    caplog.set_level(logging.DEBUG)
    service, portal_url = stack
    enable(service)
    link = render_for_alice(service, portal_url).link.url
    token = link.split("auto_login=", 1)[1]
    # A scanner's HEAD and GET sign no one in: the GET only shows the button.
    # (The scanner is this test: its own client's debug log would quote the URL.)
    with caplog.at_level(logging.INFO, logger="urllib3"):
        assert requests.head(link, timeout=5, allow_redirects=False).status_code == 302
        scanned = requests.get(link, timeout=5, allow_redirects=False)
    assert scanned.status_code == 200
    assert "Set-Cookie" not in scanned.headers
    with chromium() as browser:
        context = browser.new_context()
        page = context.new_page()
        page.goto(link)
        assert page.locator("#signed-in").count() == 0
        page.get_by_role("button", name="Continue to the portal").click()
        page.wait_for_url(f"{portal_url}/tickets/1234")
        assert "Alice Example" in page.locator("#signed-in").inner_text()
        context.close()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert logged.count("signed in user 42") == 1
    assert token not in logged and token not in service.log()


def bind_to_first_device(service) -> None:
    response = requests.patch(
        service.url + "/v1/admin/settings",
        json={"auto_login_enabled": True, "bind_to_first_device": True},
        headers=ADMIN,
        timeout=5,
    )
    assert response.status_code == 200, response.text
    assert response.json()["bind_to_first_device"] is True


def issue_link(service) -> tuple[str, str]:
    """Issue Alice's link to ticket 1234; return its URL and its link id."""
    response = requests.post(
        service.url + "/v1/links",
        json={
            "user_id": "42",
            "email": "alice@example.com",
            "recipients": {"to": ["alice@example.com"]},
            "target": "/tickets/1234",
        },
        headers=ISSUER,
        timeout=5,
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["auto_login"] is True, answer
    return answer["url"], answer["link_id"]


def bound(service, link_id: str) -> bool:
    response = requests.get(f"{service.url}/v1/admin/links/{link_id}", headers=ADMIN, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()["bound"]


def void(service, link_id: str) -> None:
    response = requests.post(
        f"{service.url}/v1/admin/links/{link_id}/revoke",
        json={"reason": "e2e: forwarded"},
        headers=ADMIN,
        timeout=5,
    )
    assert response.status_code == 200, response.text


def open_signed_in(browser_context, link: str, portal_url: str) -> None:
    page = browser_context.new_page()
    page.goto(link)
    assert page.url == f"{portal_url}/tickets/1234"
    assert "Alice Example" in page.locator("#signed-in").inner_text()
    assert page.locator("#link-ended").count() == 0
    page.close()


def open_refused(browser_context, link: str, portal_url: str, heading: str, screenshot=None):
    page = browser_context.new_page()
    page.goto(link)
    assert page.url.startswith(f"{portal_url}/login")
    assert "auto_login" not in page.url
    landing = page.locator("#link-ended")
    assert landing.locator("h1").inner_text() == heading
    assert "password" in landing.inner_text()
    assert page.locator("#signed-in").count() == 0
    assert page.get_by_role("button", name="Sign in").count() == 1
    if screenshot:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / screenshot))
    page.close()


BOUND = "This sign-in link works only in the browser that opened it first"
VOIDED = "This sign-in link no longer works"


def test_a_bound_link_works_in_its_first_browser_only_and_a_voided_one_in_none(stack, caplog):
    caplog.set_level(logging.DEBUG)
    service, portal_url = stack
    save = os.environ.get("SAVE_SCREENSHOTS") == "1"
    bind_to_first_device(service)
    link, link_id = issue_link(service)
    token = link.split("auto_login=", 1)[1]

    with chromium() as browser:
        first = browser.new_context(viewport={"width": 1000, "height": 640})
        open_signed_in(first, link, portal_url)
        assert bound(service, link_id) is True
        (cookie,) = [c for c in first.cookies() if c["name"] == "autologin_device"]
        assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Lax", "/")
        # The same browser opens the link again: it still signs in.
        open_signed_in(first, link, portal_url)

        second = browser.new_context(viewport={"width": 1000, "height": 640})
        open_refused(
            second,
            link,
            portal_url,
            BOUND,
            "portal-link-bound-elsewhere.png" if save else None,
        )
        # Its own device id: not the first browser's.
        (other,) = [c for c in second.cookies() if c["name"] == "autologin_device"]
        assert other["value"] != cookie["value"]
        second.close()

        # Voided: no browser signs in with it, not even the first.
        void(service, link_id)
        voided = browser.new_context()
        open_refused(voided, link, portal_url, VOIDED)
        voided.close()
        first.clear_cookies(name="session")
        open_refused(first, link, portal_url, VOIDED)
        first.close()

    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert logged.count("signed in user 42") == 2
    assert "auto-login refused: token_bound_elsewhere" in logged
    assert logged.count("auto-login refused: token_revoked") == 2
    for text in (logged, service.log()):
        for secret in (token, cookie["value"], other["value"], *SECRETS):
            assert secret not in text


@pytest.mark.parametrize("stack", [True], indirect=True)
def test_in_confirm_mode_a_scanner_binds_nothing_and_the_first_button_wins(stack, caplog):
    caplog.set_level(logging.DEBUG)
    service, portal_url = stack
    bind_to_first_device(service)
    link, link_id = issue_link(service)
    with caplog.at_level(logging.INFO, logger="urllib3"):
        scanned = requests.get(link, timeout=5, allow_redirects=False)
    assert scanned.status_code == 200 and "Set-Cookie" not in scanned.headers
    assert bound(service, link_id) is False

    with chromium() as browser:
        for context, signs_in in ((browser.new_context(), True), (browser.new_context(), False)):
            page = context.new_page()
            page.goto(link)
            page.get_by_role("button", name="Continue to the portal").click()
            if signs_in:
                page.wait_for_url(f"{portal_url}/tickets/1234")
                assert "Alice Example" in page.locator("#signed-in").inner_text()
                assert bound(service, link_id) is True
            else:
                page.wait_for_url(lambda url: url.startswith(f"{portal_url}/login?"))
                assert page.locator("#link-ended h1").inner_text() == BOUND
                assert page.locator("#signed-in").count() == 0
            context.close()
