"""The admin console with tenants in a real browser (Debian's Chromium) against gunicorn.

A platform admin creates, finds, opens, switches on and deletes a tenant; a
tenant admin signs in to its own tenant, sees its id everywhere, is refused
in another's and loses its session when its key is revoked.
With SAVE_SCREENSHOTS=1 the Tenants page is saved under docs/screenshots/.
"""

from __future__ import annotations

import requests

from tests.e2e.test_console_browser_e2e import NARROW, message, sign_in, snapshot
from tests.e2e.test_gunicorn_e2e import ADMIN, ISSUER

ACME = "https://acme.portal.example.com"
GLOBEX = "https://globex.portal.example.com"
LINK = {"user_id": "42", "email": "alice@example.com", "recipients": {"to": ["alice@example.com"]}}


def api(server, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, server.url + path, headers=ADMIN, timeout=5, **kwargs)


def create_tenant(server, tenant_id: str, portal: str) -> None:
    body = {"tenant_id": tenant_id, "portal_base_url": portal, "reason": "e2e"}
    assert api(server, "POST", "/v1/admin/tenants", json=body).status_code == 201


def make_admin_key(server, tenant_id: str, name: str = "helpdesk-admin") -> str:
    body = {"name": name, "roles": ["admin"], "reason": "e2e"}
    response = api(server, "POST", f"/v1/tenants/{tenant_id}/admin/keys", json=body)
    assert response.status_code == 201, response.text
    key = response.json()["key"]
    server.tokens.append(key)
    return key


def link_in(server, tenant_id: str) -> dict:
    response = requests.post(
        f"{server.url}/v1/tenants/{tenant_id}/links", json=LINK, headers=ISSUER, timeout=5
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    if answer["auto_login"]:
        server.tokens.append(answer["url"].split("auto_login=", 1)[1])
    return answer


def tenant_shown(page) -> str:
    return page.locator(".context .tenant-id").inner_text()


def test_platform_admin_creates_finds_opens_switches_on_and_deletes_a_tenant(page, server):
    create_tenant(server, "globex", GLOBEX)
    sign_in(page)
    assert page.url == server.url + "/admin/t/default/settings"
    assert tenant_shown(page) == "default"

    page.click("nav.sidebar >> text=Tenants")
    assert page.url == server.url + "/admin/tenants"
    assert page.locator(".context").inner_text().startswith("Platform")
    page.fill("#tenant_id", "acme")
    page.fill("#portal_base_url", ACME)
    page.fill("#create_reason", "new customer")
    page.click("button:has-text('Create tenant')")
    assert "Tenant acme created." in message(page)

    page.click("text=All tenants")
    assert page.locator("a.tenant-link").all_inner_texts() == ["acme", "default", "globex"]
    snapshot(page, "tenants")
    page.fill("#prefix", "ac")
    page.click("button:has-text('Search')")
    assert page.locator("a.tenant-link").all_inner_texts() == ["acme"]

    page.click("a.tenant-link:has-text('acme')")
    assert page.url == server.url + "/admin/t/acme/settings"
    assert tenant_shown(page) == "acme"
    assert page.locator("code.portal").inner_text() == ACME
    assert not page.is_checked("#auto_login_enabled")
    assert link_in(server, "acme")["reason"] == "disabled"
    page.check("#auto_login_enabled")
    page.click("button:has-text('Save')")
    assert "Auto-login links are on" in message(page)
    assert page.url == server.url + "/admin/t/acme/settings"
    assert link_in(server, "acme")["auto_login"] is True
    assert link_in(server, "globex")["reason"] == "disabled"
    assert link_in(server, "default")["reason"] == "disabled"
    for item in ("Security", "Link preview", "Audit log", "Sign-in log"):
        page.click(f"nav.sidebar >> text={item}")
        assert "/admin/t/acme/" in page.url
        assert tenant_shown(page) == "acme"

    page.click("text=Switch tenant")
    page.fill("#prefix", "acme")
    page.click("button:has-text('Search')")
    page.click("text=Delete…")
    assert page.url == server.url + "/admin/tenants/acme/delete"
    assert "stops working at once" in page.locator(".warning").inner_text()
    # The browser itself refuses an empty reason; the server would too.
    page.click("button:has-text('Delete tenant acme')")
    assert page.url == server.url + "/admin/tenants/acme/delete"
    assert api(server, "GET", "/v1/admin/tenants/acme").status_code == 200
    page.fill("#reason", "contract ended")
    page.click("button:has-text('Delete tenant acme')")
    assert page.url == server.url + "/admin/tenants"
    assert "Tenant acme deleted" in message(page)
    assert page.locator("a.tenant-link").all_inner_texts() == ["default", "globex"]
    assert api(server, "GET", "/v1/admin/tenants/acme").status_code == 404
    events = api(server, "GET", "/v1/admin/platform/audit").json()["events"]
    assert (events[0]["action"], events[0]["detail"]["reason"]) == (
        "tenant.delete",
        "contract ended",
    )

    # default has no Delete link, and its address refuses.
    assert page.locator("tr:has(a.tenant-link:has-text('default')) >> text=Delete…").count() == 0
    page.goto("/admin/tenants/default/delete")
    assert "cannot be deleted" in message(page)


def test_tenant_admin_sees_only_its_tenant_and_is_refused_elsewhere(page, server):
    create_tenant(server, "acme", ACME)
    create_tenant(server, "globex", GLOBEX)
    key = make_admin_key(server, "acme")
    sign_in(page, key)
    assert page.url == server.url + "/admin/t/acme/settings"
    assert page.locator(".who").inner_text().startswith("Signed in as helpdesk-admin")
    for cookie in page.context.cookies():
        assert key.rsplit(".", 1)[1] not in cookie["value"]
    assert page.locator("nav.sidebar >> text=Tenants").count() == 0

    page.check("#auto_login_enabled")
    page.click("button:has-text('Save')")
    assert "Auto-login links are on" in message(page)
    assert link_in(server, "acme")["auto_login"] is True
    for item in (
        "General Setting",
        "Security",
        "Link preview",
        "API keys",
        "Audit log",
        "Sign-in log",
    ):
        page.click(f"nav.sidebar >> text={item}")
        assert page.url.startswith(server.url + "/admin/t/acme/")
        assert tenant_shown(page) == "acme"
        assert "globex" not in page.content() and "default" not in page.content()
    page.click("nav.sidebar >> text=Security")
    page.click("text=Void all auto-login links now")
    assert page.url == server.url + "/admin/t/acme/security/void"
    assert tenant_shown(page) == "acme"

    # Its own keys: one made here is shown once, works, and is revoked here.
    page.click("nav.sidebar >> text=API keys")
    page.fill("#key_name", "acme-mail")
    page.check("input[name=roles][value=issuer]")
    page.fill("#key_reason", "mail system")
    page.click("button:has-text('Make key')")
    mail_key = page.locator(".key-text").inner_text()
    server.tokens.append(mail_key)
    assert mail_key.startswith("tk.acme.")
    issued = requests.post(
        f"{server.url}/v1/links",
        json=LINK,
        headers={"Authorization": f"Bearer {mail_key}"},
        timeout=5,
    )
    assert issued.status_code == 200 and issued.json()["auto_login"] is True
    server.tokens.append(issued.json()["url"].split("auto_login=", 1)[1])
    page.click("nav.sidebar >> text=API keys")
    assert mail_key not in page.content()
    row = page.locator("tr:has(td.key-name:has-text('acme-mail'))")
    row.locator("input[name=reason]").fill("replaced")
    row.locator("button:has-text('Revoke')").click()
    assert "The key acme-mail is revoked" in message(page)
    refused = requests.post(
        f"{server.url}/v1/links",
        json=LINK,
        headers={"Authorization": f"Bearer {mail_key}"},
        timeout=5,
    )
    assert refused.status_code == 401

    # Edit the address to reach another tenant: refused, and nothing about it shown.
    for other in ("globex", "default", "nope"):
        response = page.goto(f"/admin/t/{other}/settings")
        assert response.status == 403
        assert "This API key acts in its own tenant only" in message(page)
        assert other not in page.locator("main").inner_text()
        assert tenant_shown(page) == "acme"
    response = page.goto("/admin/tenants")
    assert response.status == 403
    assert "Only a platform admin manages tenants" in message(page)
    globex = api(server, "GET", "/v1/tenants/globex/admin/settings").json()
    assert globex["auto_login_enabled"] is False

    # The old address of the console goes to its own tenant.
    page.goto("/admin/security")
    assert page.url == server.url + "/admin/t/acme/security"


def test_a_revoked_tenant_key_ends_its_session(page, server):
    create_tenant(server, "acme", ACME)
    sign_in(page, make_admin_key(server, "acme"))
    assert tenant_shown(page) == "acme"
    response = api(
        server, "DELETE", "/v1/tenants/acme/admin/keys/helpdesk-admin", json={"reason": "left"}
    )
    assert response.status_code == 204

    page.click("nav.sidebar >> text=Security")
    assert page.url == server.url + "/admin/"
    assert "no longer an admin key" in message(page)
    page.goto("/admin/t/acme/settings")
    assert page.url == server.url + "/admin/"
    assert page.locator("h1").inner_text() == "Sign in to the Admin Console"


def test_the_tenant_pages_fit_a_narrow_screen(browser, server):
    create_tenant(server, "globex-eu", GLOBEX)
    context = browser.new_context(viewport=NARROW, base_url=server.url)
    try:
        page = context.new_page()
        sign_in(page)
        for path in ("/admin/tenants", "/admin/t/globex-eu/keys", "/admin/t/globex-eu/settings"):
            page.goto(path)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= NARROW["width"], path
    finally:
        context.close()
