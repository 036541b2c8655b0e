"""The console's ledger pages and new settings in a real browser (Debian's Chromium) on gunicorn.

An admin finds a user from the Security page, sees their live links, voids
the one that leaked (a reason, a confirmation) and only that one stops
working; follows a sign-in log row to its link; edits the role mailbox list
and sees the preview say role_mailbox; switches first-browser binding on. A
tenant admin does the same in its own tenant and is refused in another's.
With SAVE_SCREENSHOTS=1 the user's page and the confirmation are saved under
docs/screenshots/.
"""

from __future__ import annotations

import re

import requests

from tests.conftest import API_KEYS
from tests.e2e.test_console_browser_e2e import NARROW, message, snapshot
from tests.e2e.test_gunicorn_e2e import ADMIN, ISSUER, PORTAL_KEY

#: How often a page is reloaded for a sign-in another worker is still writing (50 ms behind).
RELOADS = 100


def api(server, method: str, path: str, headers=ADMIN, **kwargs) -> requests.Response:
    return requests.request(method, server.url + path, headers=headers, timeout=5, **kwargs)


def settings(server, tenant: str = "default", **changes) -> dict:
    path = f"/v1/tenants/{tenant}/admin/settings"
    if changes:
        response = api(server, "PATCH", path, json=changes)
    else:
        response = api(server, "GET", path)
    assert response.status_code == 200, response.text
    return response.json()


def issue(server, user_id="42", email="alice@example.com", tenant="default", **body) -> dict:
    """Issue a link; keep its token for the log check; return the answer with ``token``."""
    link = {"user_id": user_id, "email": email, "recipients": {"to": [email]}, **body}
    response = api(server, "POST", f"/v1/tenants/{tenant}/links", headers=ISSUER, json=link)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["auto_login"] is True, answer
    answer["token"] = answer["url"].split("auto_login=", 1)[1]
    server.tokens.append(answer["token"])
    return answer


def verify(server, token: str, tenant="default", **client) -> tuple[int, str | None]:
    body = {"token": token, "client": client} if client else {"token": token}
    path = f"/v1/tenants/{tenant}/tokens/verify"
    response = api(server, "POST", path, headers=PORTAL_KEY, json=body)
    return response.status_code, response.json().get("code")


def reload_until(page, locator: str, count: int = 1) -> None:
    """Reload until ``locator`` matches ``count`` elements.

    A sign-in (and a link's uses) is written behind the click, within 50 ms,
    by the worker that verified it; the page may come from the other one.
    """
    for _ in range(RELOADS):
        if page.locator(locator).count() == count:
            return
        page.wait_for_timeout(50)
        page.reload()
    assert page.locator(locator).count() == count


def navigate(page, target) -> None:
    """Click ``target`` (a selector or a locator) and wait for the page it leads to.

    A click does not wait for the next page: read at once, the page could
    still be the one before.
    """
    locator = page.locator(target) if isinstance(target, str) else target
    with page.expect_navigation():
        locator.click()


def sign_in(page, key: str = API_KEYS["admin-key"][0]) -> None:
    page.goto("/admin")
    page.fill("#api_key", key)
    navigate(page, "button:has-text('Sign in')")


def rows(page) -> list[str]:
    """The links a user's page lists, by their row ids."""
    return [
        row.get_attribute("id").removeprefix("link-")
        for row in page.locator("table.links tbody tr").all()
    ]


def test_find_a_user_and_void_the_one_link_that_leaked(page, server):
    settings(server, auto_login_enabled=True)
    kept = issue(server, reference="ticket 1233", target="/tickets/1233")
    leaked = issue(server, reference="ticket 1234, reply 7", target="/tickets/1234")
    other = issue(server, "bob", "bob@example.com")
    sign_in(page)

    navigate(page, "nav.sidebar >> text=Security")
    page.fill("#find_user_id", "42")
    navigate(page, "button:has-text('Show links')")
    assert page.url == server.url + "/admin/t/default/users/42"
    assert page.locator("h1").inner_text() == "User 42"
    assert rows(page) == [leaked["link_id"], kept["link_id"]]
    row = page.locator(f"#link-{leaked['link_id']}")
    assert "ticket 1234, reply 7" in row.inner_text()
    assert "/tickets/1234" in row.inner_text()
    snapshot(page, "user")

    navigate(page, row.locator("text=Void this link…"))
    assert page.url == server.url + f"/admin/t/default/links/{leaked['link_id']}/void"
    assert "every other link of user 42 keeps" in page.locator(".warning").inner_text()
    # The browser itself refuses an empty reason; the server would too.
    page.click("button:has-text('Void this link')")
    assert page.url.endswith("/void")
    assert verify(server, leaked["token"]) == (200, None)
    page.fill("#reason", "forwarded to a supplier")
    snapshot(page, "void-link-confirm")
    navigate(page, "button:has-text('Void this link')")

    assert page.url == server.url + "/admin/t/default/users/42"
    assert f"The link {leaked['link_id']} is void" in message(page)
    assert rows(page) == [kept["link_id"]]
    # Only that link stops working, on every worker.
    for _ in range(4):
        assert verify(server, leaked["token"]) == (401, "token_revoked")
    assert verify(server, kept["token"]) == (200, None)
    assert verify(server, other["token"]) == (200, None)
    events = api(server, "GET", "/v1/admin/audit").json()["events"]
    assert (events[0]["actor"], events[0]["action"]) == ("admin-key", "link.revoke")
    assert events[0]["detail"]["reason"] == "forwarded to a supplier"

    # Voided links are still in the ledger, shown on request.
    navigate(page, "text=Show voided and expired links too")
    assert rows(page) == [leaked["link_id"], kept["link_id"]]
    assert "revoked" in page.locator(f"#link-{leaked['link_id']}").inner_text()

    # And every link of the user, from the same page.
    page.goto("/admin/t/default/users/42")
    page.fill("#revoke_reason", "mailbox taken over")
    navigate(page, 'button:has-text("Void all of this user\'s links")')
    assert page.url == server.url + "/admin/t/default/users/42"
    assert "Every auto-login link of user 42 sent before now is void." in message(page)
    assert rows(page) == []
    assert verify(server, kept["token"]) == (401, "token_revoked")
    assert verify(server, other["token"]) == (200, None)


def test_follow_a_sign_in_log_row_to_its_link(page, server):
    settings(server, auto_login_enabled=True)
    link = issue(server, reference="ticket 77")
    assert verify(server, link["token"], ip="203.0.113.7", user_agent="Mail client") == (200, None)
    sign_in(page)
    navigate(page, "nav.sidebar >> text=Sign-in log")
    reload_until(page, "tbody a.link-id")
    assert page.locator("tbody a.link-id").inner_text() == link["link_id"]
    navigate(page, "tbody a.link-id")

    assert page.url == server.url + f"/admin/t/default/links/{link['link_id']}"
    reload_until(page, "dd.uses:text-is('1')")
    assert page.locator("dd.status").inner_text() == "active"
    facts = page.locator("dl.facts").inner_text()
    assert "ticket 77" in facts and "203.0.113.7" in facts and "issuer-key" in facts
    assert "Mail client" in page.locator("table.signins").inner_text()

    navigate(page, "dl.facts a.user-link")
    assert page.url == server.url + "/admin/t/default/users/42"
    assert rows(page) == [link["link_id"]]
    # The user's page leads back to the sign-in log of that user.
    navigate(page, "text=All of this user's sign-ins")
    assert page.url == server.url + "/admin/t/default/signins?user_id=42"


def test_edit_the_role_mailbox_list_and_the_preview_says_role_mailbox(page, server):
    sign_in(page)
    page.check("#auto_login_enabled")
    navigate(page, "button:has-text('Save')")

    def preview(address: str) -> str:
        navigate(page, "nav.sidebar >> text=Link preview")
        page.fill("#user_id", "42")
        page.fill("#email", address)
        page.fill("#to", address)
        navigate(page, "button:has-text('Preview')")
        return page.locator(".result").inner_text()

    assert "Yes: this email would carry" in preview("tickets@example.com")
    assert "role_mailbox" in preview("Support+EU@example.com")  # on the default list

    navigate(page, "nav.sidebar >> text=General Setting")
    listed = page.input_value("#role_mailboxes").split("\n")
    assert "support" in listed and "tickets" not in listed
    page.fill("#role_mailboxes", "\n".join([*listed, "Tickets Desk"]))
    navigate(page, "button:has-text('Save')")
    assert "Role mailboxes, line" in message(page)
    assert "“Tickets Desk” is not a mailbox name" in message(page)
    assert "tickets" not in settings(server)["role_mailboxes"]

    page.fill("#role_mailboxes", "\n".join([*listed, "tickets"]))
    navigate(page, "button:has-text('Save')")
    assert f"{len(listed) + 1} role mailboxes get no token." in message(page)
    assert "tickets" in settings(server)["role_mailboxes"]

    answer = preview("tickets@example.com")
    assert "No auto-login link" in answer and "role_mailbox" in answer
    assert "is a role mailbox" in answer
    refused = api(
        server,
        "POST",
        "/v1/links",
        headers=ISSUER,
        json={
            "user_id": "42",
            "email": "tickets@example.com",
            "recipients": {"to": ["tickets@example.com"]},
        },
    )
    assert refused.json()["reason"] == "role_mailbox"


def test_switch_bind_to_first_device_on(page, server):
    settings(server, auto_login_enabled=True)
    link = issue(server)
    sign_in(page)
    help_text = page.locator("#bind-help").inner_text()
    assert "asked for a password on the laptop" in help_text
    assert "before the user does keeps the link" in help_text
    assert not page.is_checked("#bind_to_first_device")
    page.check("#bind_to_first_device")
    navigate(page, "button:has-text('Save')")
    assert "Each link now works only in the browser that opens it first." in message(page)
    assert page.is_checked("#bind_to_first_device")
    assert settings(server)["bind_to_first_device"] is True

    phone, laptop = "phone-device-0123456789", "laptop-device-0123456789"
    assert verify(server, link["token"]) == (400, "invalid_request")  # the portal must say
    assert verify(server, link["token"], device=phone) == (200, None)
    assert verify(server, link["token"], device=phone) == (200, None)
    assert verify(server, link["token"], device=laptop) == (401, "token_bound_elsewhere")
    page.goto("/admin/t/default/users/42")
    reload_until(page, f"#link-{link['link_id']} td:text-is('yes')")
    for device in (phone, laptop):
        assert device not in page.content()


def test_a_tenant_admin_voids_a_link_of_its_own_tenant_only(page, server):
    for tenant, portal in (
        ("acme", "https://acme.portal.example.com"),
        ("globex", "https://globex.portal.example.com"),
    ):
        body = {"tenant_id": tenant, "portal_base_url": portal, "reason": "e2e"}
        assert api(server, "POST", "/v1/admin/tenants", json=body).status_code == 201
        settings(server, tenant, auto_login_enabled=True)
    key_body = {"name": "helpdesk-admin", "roles": ["admin"], "reason": "e2e"}
    key = api(server, "POST", "/v1/tenants/acme/admin/keys", json=key_body).json()["key"]
    server.tokens.append(key)
    ours = issue(server, tenant="acme")
    theirs = issue(server, tenant="globex")

    sign_in(page, key)
    navigate(page, "nav.sidebar >> text=Security")
    page.fill("#find_user_id", "42")
    navigate(page, "button:has-text('Show links')")
    assert page.url == server.url + "/admin/t/acme/users/42"
    assert rows(page) == [ours["link_id"]]
    navigate(page, "text=Void this link…")
    page.fill("#reason", "leaked")
    navigate(page, "button:has-text('Void this link')")
    assert f"The link {ours['link_id']} is void" in message(page)
    assert verify(server, ours["token"], "acme") == (401, "token_revoked")
    assert verify(server, theirs["token"], "globex") == (200, None)

    for path in ("/admin/t/globex/users/42", f"/admin/t/globex/links/{theirs['link_id']}/void"):
        response = page.goto(path)
        assert response.status == 403
        assert "This API key acts in its own tenant only" in message(page)
        assert theirs["link_id"] not in page.content()


def test_the_ledger_pages_fit_a_narrow_screen(browser, server):
    settings(server, auto_login_enabled=True)
    link = issue(server, reference="a rather long reference: ticket 123456, reply 12")
    context = browser.new_context(viewport=NARROW, base_url=server.url)
    try:
        page = context.new_page()
        sign_in(page)
        for path in (
            "/admin/t/default/users/42",
            f"/admin/t/default/links/{link['link_id']}",
            f"/admin/t/default/links/{link['link_id']}/void",
            "/admin/t/default/settings",
        ):
            page.goto(path)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= NARROW["width"], path
    finally:
        context.close()


def test_no_token_or_key_reaches_the_ledger_pages(page, server):
    settings(server, auto_login_enabled=True)
    link = issue(server)
    verify(server, link["token"], ip="192.0.2.1")
    sign_in(page)
    for path in ("/admin/t/default/users/42", f"/admin/t/default/links/{link['link_id']}"):
        page.goto(path)
        html = page.content()
        assert link["token"] not in html
        assert not re.search(r"eyJhbGciOi", html)
