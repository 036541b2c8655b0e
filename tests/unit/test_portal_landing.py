"""The example portal's landing for a link that no longer works, against the real service.

The service is the test deployment served over HTTP on a loopback port; the
portal is examples/portal/app.py, driven by Flask's test client (one client is
one browser: its cookies are its own).
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import API_KEYS, PORTAL, LinkActions
from tests.support.example_portal import load_example_portal

ADMIN = {"Authorization": f"Bearer {API_KEYS['admin-key'][0]}"}


@pytest.fixture
def links(service_app) -> LinkActions:
    actions = LinkActions(service_app.test_client())
    actions.enable()
    return actions


@pytest.fixture
def portal(service_url):
    module = load_example_portal("example_portal_app_landing")
    app = module.create_portal(
        {
            "SECRET_KEY": "test-portal-secret-0123456789abcdefghijkl",
            "AUTOLOGIN_SERVICE_URL": service_url,
            "AUTOLOGIN_PORTAL_KEY": API_KEYS["portal-key"][0],
        }
    )
    yield app
    app.extensions["autologin"].middleware.verifier.close()


def issue(links) -> tuple[str, str]:
    """Issue a link of user 42 to ticket 1234; return its path and its link id."""
    answer = links.issue(target="/tickets/1234").json
    assert answer["auto_login"] is True, answer
    return answer["url"][len(PORTAL) :], answer["link_id"]


def landing(page: str) -> str:
    """Return the text of the landing section of a page ("" when it has none)."""
    match = re.search(r'<section class="landing" id="link-ended"[^>]*>(.*?)</section>', page, re.S)
    return re.sub(r"<[^>]+>|\s+", " ", match.group(1)).strip() if match else ""


def open_link(browser, path: str) -> str:
    """Open a link as a browser would: follow every redirect, return the page."""
    response = browser.get(path, follow_redirects=True)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def signed_in(page: str) -> bool:
    return 'id="signed-in"' in page


def assert_says_nothing_more(text: str, link_id: str) -> None:
    # No user, no link id, no word of who voided it or why.
    for leak in (link_id, "42", "Alice", "forwarded", "admin", "revoked by"):
        assert leak not in text


def test_a_voided_link_lands_on_a_page_that_says_it_no_longer_works(portal, links):
    path, link_id = issue(links)
    response = links.client.post(
        f"/v1/admin/links/{link_id}/revoke",
        json={"reason": "forwarded to the whole team"},
        headers=ADMIN,
    )
    assert response.status_code == 200, response.json
    browser = portal.test_client()
    page = open_link(browser, path)
    text = landing(page)
    assert text.startswith("This sign-in link no longer works")
    assert "sign in with your password" in text and "new link" in text
    assert_says_nothing_more(text, link_id)
    assert not signed_in(page)
    # The password form is right there, and it leads back to the ticket.
    assert "Sign in with your password" in page
    assert 'name="next" value="/tickets/1234"' in page
    signed = browser.post(
        "/login",
        data={"user_id": "42", "password": "alice", "next": "/tickets/1234"},
        follow_redirects=True,
    ).get_data(as_text=True)
    assert signed_in(signed) and landing(signed) == ""
    # Shown once: the next page is an ordinary one.
    assert landing(browser.get("/login").get_data(as_text=True)) == ""


def test_a_link_bound_elsewhere_says_where_it_works_and_how_to_sign_in(portal, links):
    links.enable(bind_to_first_device=True)
    path, link_id = issue(links)
    phone, laptop = portal.test_client(), portal.test_client()
    first = open_link(phone, path)
    assert signed_in(first) and landing(first) == ""
    again = open_link(phone, path)
    assert signed_in(again) and landing(again) == ""
    page = open_link(laptop, path)
    text = landing(page)
    assert text.startswith("This sign-in link works only in the browser that opened it first")
    assert "password" in text
    assert_says_nothing_more(text, link_id)
    assert not signed_in(page)
    assert "Sign in with your password" in page


def test_an_invalid_link_keeps_its_message(portal):
    browser = portal.test_client()
    page = open_link(browser, "/tickets/1234?auto_login=not-a-token")
    assert "This sign-in link is not valid" in page
    assert landing(page) == "" and "<h1>Sign in</h1>" in page
