"""The admin console with tenants, through Flask's test client, on both stores.

A platform admin (a key of API_KEYS) gets the Tenants page and acts in one
tenant at a time under /admin/t/<tenant_id>/; a tenant admin (a tenant key
with the admin role) signs in to its own tenant, sees only it, and is
refused everywhere else with a page that names nothing of the others.
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import CONSOLE_SECRET_KEY, SECRETS
from tests.http.test_console_http import HEADERS, Console, cookie_payload, session_of, text
from tests.support.tenants import ACME, ADMIN, GLOBEX, assert_problem, bearer, get

TENANT_PAGES = (
    "settings",
    "security",
    "security/void",
    "audit",
    "signins",
    "preview",
    "keys",
    "users/42",
)
_MAIN = re.compile(r"<main>.*</main>", re.S)


def create(client, tenant_id: str, portal: str = ACME) -> None:
    body = {"tenant_id": tenant_id, "portal_base_url": portal, "reason": "test"}
    response = client.post("/v1/admin/tenants", json=body, headers=ADMIN)
    assert response.status_code == 201, response.json


def make_key(client, tenant_id: str, name: str = "helpdesk-admin", roles=("admin",)) -> str:
    body = {"name": name, "roles": list(roles), "reason": "test"}
    response = client.post(f"/v1/tenants/{tenant_id}/admin/keys", json=body, headers=ADMIN)
    assert response.status_code == 201, response.json
    return response.json["key"]


def revoke_key(client, tenant_id: str, name: str = "helpdesk-admin") -> None:
    response = client.delete(
        f"/v1/tenants/{tenant_id}/admin/keys/{name}", json={"reason": "test"}, headers=ADMIN
    )
    assert response.status_code == 204


def settings_of(client, tenant_id: str) -> dict:
    return get(client, f"/v1/tenants/{tenant_id}/admin/settings")


def audit_of(client, tenant_id: str) -> list[dict]:
    return get(client, f"/v1/tenants/{tenant_id}/admin/audit")["events"]


def platform_audit(client) -> list[dict]:
    return get(client, "/v1/admin/platform/audit")["events"]


def main_of(response) -> str:
    return _MAIN.search(text(response))[0]


@pytest.fixture
def acme(client) -> str:
    """Two tenants, acme and globex; return the text of acme's admin key."""
    create(client, "acme", ACME)
    create(client, "globex", GLOBEX)
    return make_key(client, "acme")


@pytest.fixture
def platform(client) -> Console:
    console = Console(client.application.test_client())
    assert console.sign_in().headers["Location"] == "/admin/t/default/settings"
    return console


@pytest.fixture
def tenant_admin(client, acme) -> Console:
    console = Console(client.application.test_client())
    response = console.sign_in(acme)
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/t/acme/settings"
    return console


# -- the platform admin: one tenant at a time, and the Tenants page --------------------


def test_a_platform_admin_lands_in_default_and_sees_it_named(platform):
    page = text(platform.client.get("/admin/t/default/settings"))
    assert 'Tenant <strong class="tenant-id">default</strong>' in page
    assert 'href="/admin/tenants"' in page
    assert "https://portal.example.com" in page  # default's portal: PORTAL_BASE_URL


def test_a_platform_admin_creates_a_tenant(client, platform):
    response = platform.post(
        "/admin/tenants",
        {"tenant_id": "acme", "portal_base_url": ACME, "reason": "new customer"},
        follow=True,
    )
    assert response.status_code == 200
    assert "Tenant acme created." in text(response)
    tenant = get(client, "/v1/admin/tenants/acme")
    assert tenant["portal_base_url"] == ACME
    assert tenant["auto_login_enabled"] is False
    event = platform_audit(client)[0]
    assert (event["actor"], event["action"]) == ("admin-key", "tenant.create")
    assert event["detail"]["tenant_id"] == "acme"
    assert event["detail"]["reason"] == "new customer"
    assert audit_of(client, "acme")[0]["action"] == "tenant.create"


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    (
        ({"tenant_id": "Acme"}, 400, "Tenant id: must be 1 to 63 of a-z 0-9 -"),
        ({"tenant_id": "-acme"}, 400, "Tenant id: must be 1 to 63 of a-z 0-9 -"),
        ({"tenant_id": "a" * 64}, 400, "Tenant id: must be 1 to 63 of a-z 0-9 -"),
        (
            {"portal_base_url": "ftp://acme.example.com"},
            400,
            "Portal address &#39;ftp://acme.example.com&#39; must be an http(s) origin",
        ),
        (
            {"portal_base_url": "http://acme.example.com"},
            400,
            "Portal address must use https outside development",
        ),
        ({"reason": " "}, 400, "Reason: must be 1 to 500 characters"),
        ({"tenant_id": "globex"}, 409, "globex"),
        ({"tenant_id": "default"}, 409, "default"),
    ),
)
def test_a_tenant_the_api_would_refuse_is_refused_with_a_message(
    client, acme, platform, fields, status, message
):
    before = get(client, "/v1/admin/tenants")["tenants"]
    form = {"tenant_id": "initech", "portal_base_url": ACME, "reason": "new customer", **fields}
    response = platform.post("/admin/tenants", form)
    assert response.status_code == status
    assert message in text(response)
    assert 'value="{}"'.format(form["tenant_id"]) in text(response)  # the form keeps it
    assert get(client, "/v1/admin/tenants")["tenants"] == before


def test_the_tenants_list_is_paged_and_searched_by_prefix(client, acme, platform):
    for i in range(30):
        create(client, f"t{i:02d}")
    first = text(platform.client.get("/admin/tenants"))
    ids = re.findall(r'class="tenant-link">([^<]+)<', first)
    assert ids == ["acme", "default", "globex", *(f"t{i:02d}" for i in range(22))]
    assert 'href="/admin/tenants?after=t21"' in first
    second = text(platform.client.get("/admin/tenants?after=t21"))
    assert re.findall(r'class="tenant-link">([^<]+)<', second) == [
        f"t{i:02d}" for i in range(22, 30)
    ]
    assert "?after=" not in second and 'rel="first"' in second

    found = text(platform.client.get("/admin/tenants?prefix=t1"))
    assert re.findall(r'class="tenant-link">([^<]+)<', found) == [f"t{i}" for i in range(10, 20)]
    assert re.findall(
        r'class="tenant-link">([^<]+)<', text(platform.client.get("/admin/tenants?prefix=ac"))
    ) == ["acme"]
    none = platform.client.get("/admin/tenants?prefix=zz")
    assert "No tenants whose id starts with <code>zz</code>." in text(none)


@pytest.mark.parametrize(
    ("query", "message"),
    (
        ("prefix=ACME", "Search: must be a-z 0-9 - only"),
        ("prefix=" + "a" * 64, "Search: at most 63 characters"),
        ("after=Not_an_id", "Page: must be 1 to 63 of a-z 0-9 -"),
    ),
)
def test_a_search_the_api_would_refuse_is_a_message(platform, query, message):
    response = platform.client.get(f"/admin/tenants?{query}")
    assert response.status_code == 400
    assert message in text(response)


def test_a_platform_admin_opens_a_tenant_and_acts_there_only(client, acme, platform):
    for page in TENANT_PAGES:
        response = platform.client.get(f"/admin/t/acme/{page}")
        assert response.status_code == 200, page
        assert 'Tenant <strong class="tenant-id">acme</strong>' in text(response), page
    settings = text(platform.client.get("/admin/t/acme/settings"))
    assert ACME in settings and 'action="/admin/t/acme/settings"' in settings
    response = platform.post(
        "/admin/t/acme/settings", {"auto_login_enabled": "on", "ttl_value": "2", "ttl_unit": "days"}
    )
    assert response.headers["Location"] == "/admin/t/acme/settings"
    assert settings_of(client, "acme")["auto_login_enabled"] is True
    assert settings_of(client, "acme")["token_ttl_seconds"] == 2 * 86400
    assert settings_of(client, "default")["auto_login_enabled"] is False
    assert settings_of(client, "globex")["auto_login_enabled"] is False
    event = audit_of(client, "acme")[0]
    assert (event["actor"], event["action"]) == ("admin-key", "settings.update")
    assert audit_of(client, "default")[0]["action"] == "store.create"

    platform.post("/admin/t/acme/security/void", {"reason": "acme breach"})
    assert get(client, "/v1/tenants/acme/admin/epoch")["epoch"] == 2
    assert get(client, "/v1/admin/epoch")["epoch"] == 1
    assert get(client, "/v1/tenants/globex/admin/epoch")["epoch"] == 1


def test_the_preview_of_a_tenant_uses_its_portal(platform, acme):
    response = platform.post(
        "/admin/t/acme/preview",
        {"user_id": "42", "email": "a@example.com", "to": "a@example.com", "target": "/t/1"},
    )
    assert f"{ACME}/t/1" in text(response)


@pytest.mark.parametrize(
    ("path", "status", "message"),
    (
        ("/admin/t/nope/settings", 404, "No tenant &#39;nope&#39;"),
        ("/admin/t/No_Such/settings", 400, "Tenant id: must be 1 to 63"),
        ("/admin/tenants/nope/delete", 404, "No tenant &#39;nope&#39;"),
    ),
)
def test_a_platform_admin_naming_no_tenant_gets_a_message(platform, path, status, message):
    response = platform.client.get(path)
    assert response.status_code == status
    assert message in text(response)


def test_a_platform_admin_deletes_a_tenant_after_a_confirmation_and_a_reason(
    client, acme, platform
):
    listed = text(platform.client.get("/admin/tenants"))
    assert 'href="/admin/tenants/acme/delete"' in listed
    assert 'href="/admin/tenants/default/delete"' not in listed
    confirm = platform.client.get("/admin/tenants/acme/delete")
    assert confirm.status_code == 200
    assert "Every auto-login link of this helpdesk stops working at once" in text(confirm)
    assert 'Tenant <strong class="tenant-id">acme</strong>' in text(confirm)

    refused = platform.post("/admin/tenants/acme/delete", {"reason": "  "})
    assert refused.status_code == 400
    assert "Reason: must be 1 to 500 characters" in text(refused)
    assert get(client, "/v1/admin/tenants/acme")["tenant_id"] == "acme"

    response = platform.post(
        "/admin/tenants/acme/delete", {"reason": "contract ended"}, follow=True
    )
    assert "Tenant acme deleted" in text(response)
    assert_problem(client.get("/v1/admin/tenants/acme", headers=ADMIN), 404, "tenant_not_found")
    event = platform_audit(client)[0]
    assert (event["actor"], event["action"]) == ("admin-key", "tenant.delete")
    assert event["detail"] == {"tenant_id": "acme", "reason": "contract ended"}
    assert get(client, "/v1/admin/tenants/globex")["tenant_id"] == "globex"
    assert client.get("/v1/admin/keys", headers=bearer(acme)).status_code == 401


@pytest.mark.parametrize("method", ("GET", "POST"))
def test_default_cannot_be_deleted(client, platform, method):
    if method == "GET":
        response = platform.client.get("/admin/tenants/default/delete")
    else:
        response = platform.post("/admin/tenants/default/delete", {"reason": "try"})
    assert response.status_code == 400
    assert "Tenant id: the tenant &#39;default&#39; cannot be deleted" in text(response)
    assert get(client, "/v1/admin/settings")["auto_login_enabled"] is False
    assert [e["action"] for e in platform_audit(client)] == []


def test_a_delete_without_the_csrf_token_deletes_nothing(client, acme, platform):
    response = platform.client.post("/admin/tenants/acme/delete", data={"reason": "x"})
    assert response.status_code == 403
    assert get(client, "/v1/admin/tenants/acme")["tenant_id"] == "acme"


# -- the tenant admin: its own tenant only ------------------------------------------------


def test_a_tenant_admin_sees_its_tenant_id_on_every_page(client, tenant_admin):
    for page in TENANT_PAGES:
        response = tenant_admin.client.get(f"/admin/t/acme/{page}")
        assert response.status_code == 200, page
        html = text(response)
        assert 'Tenant <strong class="tenant-id">acme</strong>' in html, page
        assert "Signed in as <strong>helpdesk-admin</strong>" in html
        for other in ("globex", "default", 'href="/admin/tenants', "Switch tenant"):
            assert other not in html, (page, other)
    assert ACME in text(tenant_admin.client.get("/admin/t/acme/settings"))


def test_a_tenant_admin_acts_in_its_tenant_with_its_key_name(client, tenant_admin):
    tenant_admin.post(
        "/admin/t/acme/settings", {"auto_login_enabled": "on", "ttl_value": "3", "ttl_unit": "days"}
    )
    tenant_admin.post("/admin/t/acme/security/revoke", {"user_id": "42", "reason": "lost phone"})
    assert settings_of(client, "acme")["auto_login_enabled"] is True
    assert settings_of(client, "default")["auto_login_enabled"] is False
    actions = [(e["actor"], e["action"]) for e in audit_of(client, "acme")[:2]]
    assert actions == [("helpdesk-admin", "user.revoke"), ("helpdesk-admin", "settings.update")]
    assert [e["action"] for e in audit_of(client, "default")] == ["store.create"]
    page = text(tenant_admin.client.get("/admin/t/acme/audit"))
    assert "helpdesk-admin" in page and "Tenant created" in page


def test_the_same_page_for_both_kinds_of_admin(platform, tenant_admin):
    for page in TENANT_PAGES:
        ours = tenant_admin.client.get(f"/admin/t/acme/{page}")
        theirs = platform.client.get(f"/admin/t/acme/{page}")
        # One handler, one template: the page itself is the same; only who is
        # signed in (top bar, menu) differs. Each page carries its session's CSRF token.
        csrf = re.compile(r'name="csrf_token" value="[^"]+"')
        assert csrf.sub("", main_of(ours)) == csrf.sub("", main_of(theirs)), page


@pytest.mark.parametrize("other", ("globex", "nope", "default", "No_Such", "a" * 64))
def test_a_tenant_admin_who_edits_the_url_is_refused_and_learns_nothing(
    client, tenant_admin, other
):
    pages = [tenant_admin.client.get(f"/admin/t/{other}/{page}") for page in TENANT_PAGES]
    for response in pages:
        assert response.status_code == 403
        assert "This API key acts in its own tenant only" in text(response)
        assert other not in text(response)
        for name, value in HEADERS.items():
            assert response.headers[name] == value
    # Existing, missing or malformed: one answer, word for word.
    assert len({main_of(response) for response in pages}) == 1
    for path, form in (
        ("settings", {"auto_login_enabled": "on", "ttl_value": "1", "ttl_unit": "days"}),
        ("security/void", {"reason": "sabotage"}),
        ("security/revoke", {"user_id": "42", "reason": "sabotage"}),
        ("keys", {"name": "planted", "roles": "admin", "reason": "sabotage"}),
        ("keys/revoke", {"name": "helpdesk-admin", "reason": "sabotage"}),
    ):
        response = tenant_admin.post(f"/admin/t/{other}/{path}", form)
        assert response.status_code == 403
        assert other not in text(response)
    assert settings_of(client, "globex")["auto_login_enabled"] is False
    assert [e["action"] for e in audit_of(client, "globex")] == ["tenant.create"]
    assert [e["action"] for e in audit_of(client, "default")] == ["store.create"]


def test_a_tenant_admin_never_sees_the_tenants_page(client, tenant_admin):
    for path in ("/admin/tenants", "/admin/tenants?prefix=g", "/admin/tenants/globex/delete"):
        response = tenant_admin.client.get(path)
        assert response.status_code == 403
        assert "Only a platform admin manages tenants" in text(response)
        assert "globex" not in text(response)
    response = tenant_admin.post(
        "/admin/tenants", {"tenant_id": "initech", "portal_base_url": ACME, "reason": "x"}
    )
    assert response.status_code == 403
    assert tenant_admin.post("/admin/tenants/globex/delete", {"reason": "x"}).status_code == 403
    tenants = [t["tenant_id"] for t in get(client, "/v1/admin/tenants")["tenants"]]
    assert tenants == ["acme", "default", "globex"]


def test_a_tenant_key_without_the_admin_role_is_refused(client, acme):
    issuer = make_key(client, "acme", "acme-mail", roles=("issuer",))
    console = Console(client.application.test_client())
    response = console.sign_in(issuer)
    assert response.status_code == 403
    assert "does not have the admin role" in text(response)
    assert console.client.get("/admin/t/acme/settings").headers["Location"] == "/admin/"


@pytest.mark.parametrize(
    "key",
    (
        "tk.acme.not-the-secret-0123456789abcdefghijklmnop",
        "tk.nope.not-the-secret-0123456789abcdefghijklmnop",
        "tk.NOT_AN_ID.not-the-secret-0123456789abcdefghijklm",
    ),
)
def test_an_unknown_tenant_key_is_refused_like_any_unknown_key(client, acme, key):
    response = Console(client.application.test_client()).sign_in(key)
    assert response.status_code == 403
    assert "That is not an API key of this service" in text(response)


def test_the_session_holds_the_key_name_and_tenant_never_the_key(app, client, acme, tenant_admin):
    session = session_of(app, tenant_admin)
    assert set(session) == {"key_name", "key_tenant", "key_made", "last_seen", "csrf_token"}
    assert (session["key_name"], session["key_tenant"]) == ("helpdesk-admin", "acme")
    raw = tenant_admin.cookie()
    secret = acme.rsplit(".", 1)[1]
    for value in (raw, cookie_payload(raw)):
        assert secret not in value
        for other in [*SECRETS, CONSOLE_SECRET_KEY]:
            assert other not in value
    for page in TENANT_PAGES:
        assert secret not in text(tenant_admin.client.get(f"/admin/t/acme/{page}"))


def test_a_revoked_tenant_key_ends_its_session(client, tenant_admin):
    assert tenant_admin.client.get("/admin/t/acme/settings").status_code == 200
    revoke_key(client, "acme")
    response = tenant_admin.client.get("/admin/t/acme/settings")
    assert response.headers["Location"] == "/admin/"
    page = tenant_admin.client.get("/admin/")
    assert "Your API key is no longer an admin key of this service." in text(page)
    assert tenant_admin.client.get("/admin/t/acme/settings").headers["Location"] == "/admin/"


def test_a_key_made_again_under_the_revoked_ones_name_does_not_revive_its_session(
    client, tenant_admin
):
    revoke_key(client, "acme")
    make_key(client, "acme")  # the same name, another key
    assert tenant_admin.client.get("/admin/t/acme/settings").headers["Location"] == "/admin/"


def test_a_post_of_a_revoked_keys_session_changes_nothing(client, tenant_admin):
    token = tenant_admin.csrf("/admin/t/acme/settings")
    revoke_key(client, "acme")
    data = {"csrf_token": token, "auto_login_enabled": "on", "ttl_value": "3", "ttl_unit": "days"}
    response = tenant_admin.client.post("/admin/t/acme/settings", data=data)
    assert response.headers["Location"] == "/admin/"
    assert settings_of(client, "acme")["auto_login_enabled"] is False


def test_a_deleted_tenant_ends_its_admins_sessions(client, tenant_admin):
    response = client.delete("/v1/admin/tenants/acme", json={"reason": "gone"}, headers=ADMIN)
    assert response.status_code == 204
    response = tenant_admin.client.get("/admin/t/acme/settings", follow_redirects=True)
    assert "Your API key is no longer an admin key of this service." in text(response)
    create(client, "acme")  # the same id again: a new tenant, without the old keys
    assert tenant_admin.client.get("/admin/t/acme/settings").headers["Location"] == "/admin/"


def test_a_tenant_key_that_lost_the_admin_role_ends_its_session(client, acme):
    # Keys are not changed in place: the admin key is revoked and made again as an issuer.
    console = Console(client.application.test_client())
    console.sign_in(acme)
    revoke_key(client, "acme")
    make_key(client, "acme", roles=("issuer",))
    assert console.client.get("/admin/t/acme/security").headers["Location"] == "/admin/"


# -- a tenant's API keys ---------------------------------------------------------------------


def new_key_of(response) -> str:
    match = re.search(r'<code class="key-text">([^<]+)</code>', text(response))
    assert match, text(response)
    return match[1]


def test_a_tenant_admin_makes_a_key_seen_once_and_revokes_it(client, tenant_admin):
    form = {"name": "acme-mail", "roles": "issuer", "reason": "mail system"}
    response = tenant_admin.post("/admin/t/acme/keys", form)
    assert response.status_code == 200
    key = new_key_of(response)
    assert key.startswith("tk.acme.")
    assert "this is the only time it is shown" in text(response)
    link = {"user_id": "42", "email": "a@example.com", "recipients": {"to": ["a@example.com"]}}
    assert client.post("/v1/links", json=link, headers=bearer(key)).status_code == 200
    # Shown once: not in the list, the next page, the cookie or the session.
    listed = text(tenant_admin.client.get("/admin/t/acme/keys"))
    assert "acme-mail" in listed and key not in listed
    assert key.rsplit(".", 1)[1] not in cookie_payload(tenant_admin.cookie())
    event = audit_of(client, "acme")[0]
    assert (event["actor"], event["action"]) == ("helpdesk-admin", "key.create")
    assert event["detail"]["roles"] == ["issuer"]

    response = tenant_admin.post("/admin/t/acme/keys/revoke", {"name": "acme-mail", "reason": "x"})
    assert response.headers["Location"] == "/admin/t/acme/keys"
    page = text(tenant_admin.client.get("/admin/t/acme/keys"))
    assert "The key acme-mail is revoked" in page
    assert client.post("/v1/links", json=link, headers=bearer(key)).status_code == 401
    event = audit_of(client, "acme")[0]
    assert (event["actor"], event["action"]) == ("helpdesk-admin", "key.revoke")


@pytest.mark.parametrize(
    ("form", "status", "message"),
    (
        ({"name": "no spaces"}, 400, "Name: must be 1 to 64 of"),
        ({"roles": None}, 400, "Roles: must be a non-empty list of admin, issuer, portal"),
        ({"roles": "root"}, 400, "Roles: must be a non-empty list"),
        ({"reason": ""}, 400, "Reason: must be 1 to 500 characters"),
        ({"name": "helpdesk-admin"}, 409, "This tenant has a key named &#39;helpdesk-admin&#39;"),
    ),
)
def test_a_key_the_api_would_refuse_is_refused_with_a_message(
    client, tenant_admin, form, status, message
):
    data = {"name": "acme-mail", "roles": "issuer", "reason": "mail", **form}
    data = {name: value for name, value in data.items() if value is not None}
    response = tenant_admin.post("/admin/t/acme/keys", data)
    assert response.status_code == status
    assert message in text(response)
    assert 'class="key-text"' not in text(response)
    names = [k["name"] for k in get(client, "/v1/tenants/acme/admin/keys")["keys"]]
    assert names == ["helpdesk-admin"]


def test_revoking_an_unknown_key_is_a_message(tenant_admin):
    response = tenant_admin.post("/admin/t/acme/keys/revoke", {"name": "nope", "reason": "x"})
    assert response.status_code == 404
    assert "This tenant has no key named &#39;nope&#39;" in text(response)


def test_a_tenant_admin_who_revokes_its_own_key_is_signed_out(client, tenant_admin):
    form = {"name": "helpdesk-admin", "reason": "leaving"}
    response = tenant_admin.post("/admin/t/acme/keys/revoke", form, follow=True)
    assert "Your API key is no longer an admin key of this service." in text(response)
    assert get(client, "/v1/tenants/acme/admin/keys")["keys"] == []


def test_a_platform_admin_makes_a_tenants_first_admin_key(client, platform):
    create(client, "initech")
    form = {"name": "initech-admin", "roles": ["admin", "issuer"], "reason": "onboarding"}
    response = platform.post("/admin/t/initech/keys", form)
    key = new_key_of(response)
    assert key.startswith("tk.initech.")
    assert "Roles: admin, issuer" in text(response)
    event = platform_audit(client)[0]
    assert (event["actor"], event["action"]) == ("admin-key", "key.create")
    assert event["detail"]["tenant_id"] == "initech"
    console = Console(client.application.test_client())
    assert console.sign_in(key).headers["Location"] == "/admin/t/initech/settings"


# -- the single-tenant console's addresses ----------------------------------------------


@pytest.mark.parametrize(
    ("path", "target"),
    (
        ("/admin/settings", "/t/{}/settings"),
        ("/admin/security", "/t/{}/security"),
        ("/admin/security/void", "/t/{}/security/void"),
        ("/admin/audit?page=2", "/t/{}/audit?page=2"),
        ("/admin/signins?user_id=42", "/t/{}/signins?user_id=42"),
        ("/admin/preview", "/t/{}/preview"),
    ),
)
def test_old_addresses_redirect_to_the_admins_own_tenant(platform, tenant_admin, path, target):
    for console, tenant_id in ((platform, "default"), (tenant_admin, "acme")):
        response = console.client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"] == "/admin" + target.format(tenant_id)


def test_an_old_address_still_takes_a_form_post(client, platform, tenant_admin):
    data = {"auto_login_enabled": "on", "ttl_value": "3", "ttl_unit": "days"}
    response = tenant_admin.post("/admin/settings", data)
    assert response.status_code == 307
    assert response.headers["Location"] == "/admin/t/acme/settings"
    assert settings_of(client, "acme")["auto_login_enabled"] is False  # not yet posted there
    # 307: the browser posts the same form, token and all, there (the test client drops
    # the body on a redirect, so the test posts it again itself).
    again = tenant_admin.post(response.headers["Location"], data)
    assert again.headers["Location"] == "/admin/t/acme/settings"
    assert settings_of(client, "acme")["auto_login_enabled"] is True
    assert settings_of(client, "default")["auto_login_enabled"] is False
    response = platform.post("/admin/security/void", {"reason": "old bookmark"})
    assert (response.status_code, response.headers["Location"]) == (
        307,
        "/admin/t/default/security/void",
    )
    assert get(client, "/v1/admin/epoch")["epoch"] == 1


def test_old_addresses_need_sign_in_and_the_csrf_token(client, acme):
    anonymous = client.application.test_client()
    assert anonymous.get("/admin/settings").headers["Location"] == "/admin/"
    console = Console(client.application.test_client())
    console.sign_in(acme)
    response = console.client.post("/admin/settings", data={"auto_login_enabled": "on"})
    assert response.status_code == 403
