"""The admin console in a real browser (Debian's Chromium) against the real server (gunicorn).

With SAVE_SCREENSHOTS=1 each page is also saved under docs/screenshots/.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import requests

from tests.conftest import API_KEYS, CONSOLE_SECRET_KEY, SECRETS
from tests.e2e.test_gunicorn_e2e import (
    PORTAL_KEY,
    issue,
    link_answer,
    verify,
)
from tests.support.browser import NARROW
from tests.support.gunicorn_server import ROOT

SCREENSHOTS = ROOT / "docs" / "screenshots"
ADMIN_KEY = API_KEYS["admin-key"][0]


def snapshot(page, name: str) -> None:
    """Save a screenshot of the page for the docs when SAVE_SCREENSHOTS=1."""
    if os.environ.get("SAVE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"console-{name}.png"), full_page=True)


def sign_in(page, key: str = ADMIN_KEY) -> None:
    page.goto("/admin")
    page.fill("#api_key", key)
    page.click("button:has-text('Sign in')")


def message(page) -> str:
    return page.locator(".message").first.inner_text()


def test_sign_in_switch_on_and_set_the_lifetime(page, server):
    page.goto("/admin")
    assert page.title() == "Sign in · Admin Console"
    # The stylesheet loaded under the strict policy: the top bar has its colour.
    assert page.locator(".topbar").evaluate("e => getComputedStyle(e).backgroundColor") == (
        "rgb(16, 42, 67)"
    )
    snapshot(page, "signin")

    sign_in(page, "not-a-key-0123456789abcdefghijklmnop")
    assert "That is not an API key of this service" in message(page)
    assert ADMIN_KEY not in page.content()

    sign_in(page)
    assert page.url == server.url + "/admin/t/default/settings"
    crumbs = page.locator(".breadcrumb li").all_inner_texts()
    assert crumbs == ["Email", "Settings", "General Setting"]
    assert page.locator(".who").inner_text().startswith("Signed in as admin-key")
    for cookie in page.context.cookies():
        assert ADMIN_KEY not in cookie["value"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]

    # Off on a new install: links come without a token.
    assert not page.is_checked("#auto_login_enabled")
    assert link_answer(server)["reason"] == "disabled"

    page.check("#auto_login_enabled")
    page.click("button:has-text('Save')")
    assert "Auto-login links are on" in message(page)
    assert link_answer(server)["auto_login"] is True

    page.fill("#ttl_value", "2")
    page.select_option("#ttl_unit", "hours")
    page.click("button:has-text('Save')")
    assert "new links live 2 hours" in message(page)
    answer = link_answer(server)
    expires = datetime.fromisoformat(answer["expires_at"].replace("Z", "+00:00"))
    assert abs((expires - datetime.now(UTC)).total_seconds() - 7200) < 60

    page.fill("#ttl_value", "8")
    page.select_option("#ttl_unit", "days")
    page.click("button:has-text('Save')")
    assert "The lifetime can be at most 7 days" in message(page)
    page.goto("/admin/settings")
    snapshot(page, "settings")


def test_void_all_links_with_confirmation(page, server):
    sign_in(page)
    page.check("#auto_login_enabled")
    page.click("button:has-text('Save')")
    before = issue(server, "alice")
    assert verify(server, before) == (200, None)

    page.click("nav.sidebar >> text=Security")
    assert page.locator("dd.epoch").inner_text() == "1"
    snapshot(page, "security")

    page.click("text=Void all auto-login links now")
    assert page.url == server.url + "/admin/t/default/security/void"
    assert "This signs nobody out but makes every link already sent useless" in (
        page.locator(".warning").inner_text()
    )
    page.fill("#reason", "mail server breach")
    snapshot(page, "void-confirm")
    page.click("button:has-text('Void all links')")

    assert page.url == server.url + "/admin/t/default/security"
    assert "void (epoch 2)" in message(page)
    assert page.locator("dd.epoch").inner_text() == "2"
    assert verify(server, before) == (401, "token_revoked")
    assert verify(server, issue(server, "alice")) == (200, None)

    # One user's links: a second form on the same page.
    bob = issue(server, "bob")
    page.fill("#user_id", "bob")
    page.fill("#revoke_reason", "lost phone")
    page.click('button:has-text("Void this user\'s links")')
    assert "user bob" in message(page)
    assert verify(server, bob) == (401, "token_revoked")

    page.click("nav.sidebar >> text=Audit log")
    rows = page.locator("tbody tr")
    assert rows.count() == 4
    first = rows.first.locator("td")
    assert first.nth(1).inner_text() == "admin-key"
    assert "user.revoke" in first.nth(2).inner_text()
    assert "epoch.bump" in rows.nth(1).inner_text()
    assert "settings.update" in rows.nth(2).inner_text()
    snapshot(page, "audit")


def test_preview_and_sign_in_log(page, server):
    sign_in(page)
    page.check("#auto_login_enabled")
    page.click("button:has-text('Save')")
    token = issue(server, "42")
    requests.post(
        server.url + "/v1/tokens/verify",
        json={"token": token, "client": {"ip": "203.0.113.7", "user_agent": "Mail client"}},
        headers=PORTAL_KEY,
        timeout=5,
    ).raise_for_status()

    page.click("nav.sidebar >> text=Link preview")
    page.fill("#user_id", "42")
    page.fill("#email", "alice@example.com")
    page.fill("#to", "alice@example.com")
    page.fill("#cc", "bob@example.com")
    page.fill("#target", "/tickets/1234")
    page.click("button:has-text('Preview')")
    assert "No auto-login link" in page.locator(".result h2").inner_text()
    assert "multiple_recipients" in page.locator(".result").inner_text()
    snapshot(page, "preview")

    page.fill("#cc", "")
    page.click("button:has-text('Preview')")
    assert "Yes: this email would carry an auto-login link" in page.locator(".result").inner_text()
    page.fill("#to", "alice@")
    page.click("button:has-text('Preview')")
    assert "To (address 1): is not an e-mail address" in message(page)

    page.click("nav.sidebar >> text=Sign-in log")
    assert "203.0.113.7" in page.locator("tbody").inner_text()
    page.fill("#filter_user_id", "someone-else")
    page.click("button:has-text('Filter')")
    assert "No sign-ins of user someone-else." in page.content()


def test_post_without_csrf_token_is_refused_and_sign_out(page, server):
    sign_in(page)
    # The browser's own cookies, but no token from a form of the console.
    refused = page.request.post(
        "/admin/settings",
        form={"auto_login_enabled": "on", "ttl_value": "3", "ttl_unit": "days"},
        max_redirects=0,
    )
    assert refused.status == 403
    assert "security token" in refused.text()
    refused.dispose()
    page.goto("/admin/settings")
    assert not page.is_checked("#auto_login_enabled")

    page.click("button:has-text('Sign out')")
    assert "You are signed out." in message(page)
    page.goto("/admin/settings")
    assert page.url == server.url + "/admin/"
    assert page.locator("h1").inner_text() == "Sign in to the Admin Console"


def test_console_fits_a_narrow_screen(browser, server):
    context = browser.new_context(viewport=NARROW, base_url=server.url)
    try:
        page = context.new_page()
        sign_in(page)
        for path in ("/admin/settings", "/admin/security", "/admin/preview", "/admin/audit"):
            page.goto(path)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= NARROW["width"], path
        page.goto("/admin/settings")
        snapshot(page, "settings-narrow")
    finally:
        context.close()


def test_no_secret_reaches_the_browser(page, server):
    sign_in(page)
    for path in ("/admin/settings", "/admin/security", "/admin/audit", "/admin/signins"):
        page.goto(path)
        html = page.content()
        for secret in [*SECRETS, CONSOLE_SECRET_KEY]:
            assert secret not in html
    for cookie in page.context.cookies():
        for secret in [*SECRETS, CONSOLE_SECRET_KEY]:
            assert secret not in cookie["value"]
