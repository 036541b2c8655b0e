"""The console's ledger pages, General Setting's new settings and the preview's role_mailbox.

A user's page (live links, paging, newest sign-ins, void all), a link's page,
voiding one link after a reason and a confirmation, the sign-in log leading to
both, the role mailbox list and first-browser binding on General Setting:
through Flask's test client, each test on SQLite and on Redis.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from service.clock import utcnow
from service.store import DEFAULT_ROLE_MAILBOXES, Signin
from tests.conftest import CONSOLE_SECRET_KEY, SECRETS
from tests.http.test_console_http import HEADERS, Console, api_settings, audit, text
from tests.http.test_console_tenants_http import create, main_of, make_key
from tests.support.tenants import ACME, ADMIN, GLOBEX, ISSUER, get

ABSENT = "Qx3vT0bqW2mZ8kLrAbCd"  # well-formed, in no ledger
_LINK_ROWS = re.compile(r'<tr id="link-([A-Za-z0-9_-]+)">')


@pytest.fixture
def console(client) -> Console:
    console = Console(client.application.test_client())
    assert console.sign_in().status_code == 302
    return console


def issue(links, user_id="42", email="alice@example.com", **body) -> tuple[str, str]:
    """Issue a token link; return (token, link id)."""
    response = links.issue(user_id, email, **body)
    assert response.status_code == 200, response.json
    assert response.json["auto_login"] is True, response.json
    return response.json["url"].split("auto_login=", 1)[1], response.json["link_id"]


def link_ids(response) -> list[str]:
    """The links a user's page lists, in its order."""
    return _LINK_ROWS.findall(text(response))


def ledger_entry(client, link_id: str) -> dict:
    return get(client, f"/v1/admin/links/{link_id}")


# -- finding a user --------------------------------------------------------------------


def test_the_security_page_finds_a_user_by_id(console):
    page = text(console.client.get("/admin/t/default/security"))
    assert '<form method="get" action="/admin/t/default/users"' in page
    response = console.client.get("/admin/t/default/users", query_string={"user_id": " 42 "})
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/t/default/users/42"


def test_a_search_for_a_malformed_user_id_is_a_message_on_the_security_page(console):
    response = console.client.get("/admin/t/default/users", query_string={"user_id": "a b"})
    assert response.status_code == 400
    assert "User id: must be 1 to 128 of" in text(response)
    assert 'value="a b"' in text(response)  # the search keeps what was typed


def test_every_user_id_character_reaches_the_users_page(console, enabled):
    user_id = "a.b_c:d@e+f-G9"
    _, link_id = issue(enabled, user_id)
    found = console.client.get("/admin/t/default/users", query_string={"user_id": user_id})
    page = console.client.get(found.headers["Location"])
    assert page.status_code == 200
    assert link_ids(page) == [link_id]


# -- a user's page -------------------------------------------------------------------------


def test_a_users_page_lists_their_live_links_with_uses(frozen, client, console, enabled):
    _, old = issue(enabled, reference="ticket 1233")
    frozen.tick(timedelta(minutes=5))
    token, used = issue(enabled, reference="ticket 1234, reply 7", target="/tickets/1234")
    _, bob = issue(enabled, "bob")
    frozen.tick(timedelta(minutes=1))
    client_info = {"ip": "203.0.113.7", "user_agent": "Firefox"}
    assert enabled.verify(token, client=client_info).status_code == 200
    _, voided = issue(enabled)
    ledger_void = {"reason": "leaked"}
    response = client.post(f"/v1/admin/links/{voided}/revoke", json=ledger_void, headers=ADMIN)
    assert response.status_code == 200

    response = console.client.get("/admin/t/default/users/42")
    assert response.status_code == 200
    page = text(response)
    assert link_ids(response) == [used, old]  # newest first; not bob's, not the void one
    row = re.search(rf'<tr id="link-{used}">.*?</tr>', page, re.S)[0]
    for shown in (
        "ticket 1234, reply 7",
        "<code>/tickets/1234</code>",
        "2026-11-25 10:05",  # sent
        "2026-11-28 10:05",  # expires: the default lifetime, 3 days
        '<td class="uses">1</td>',
        "2026-11-25 10:06",  # last used
        "203.0.113.7",
        "Void this link…",
    ):
        assert shown in row, shown
    assert f'href="/admin/t/default/links/{used}/void"' in row
    # The newest sign-ins, each leading to its link.
    assert "Newest sign-ins" in page and "Firefox" in page
    assert page.count(f'href="/admin/t/default/links/{used}"') == 2
    assert bob not in page and token not in page

    everything = console.client.get("/admin/t/default/users/42?show=all")
    assert link_ids(everything) == [voided, used, old]
    assert '<span class="badge badge-refused">revoked</span>' in text(everything)


def test_an_unknown_user_has_an_empty_page(console, enabled):
    issue(enabled, "42")
    response = console.client.get("/admin/t/default/users/nobody")
    assert response.status_code == 200
    assert "No live links of user nobody in the ledger." in text(response)
    assert "No sign-ins of user nobody." in text(response)
    assert link_ids(response) == []


@pytest.mark.parametrize("user_id", ("a%20b", "x" * 129, "%C3%A9"))
def test_a_malformed_user_id_in_the_address_is_a_400_page(console, user_id):
    response = console.client.get(f"/admin/t/default/users/{user_id}")
    assert response.status_code == 400
    assert "User id: must be 1 to 128 of" in text(response)
    assert response.headers["Content-Security-Policy"] == HEADERS["Content-Security-Policy"]


def test_a_users_links_are_paged(frozen, console, enabled):
    made = []
    for _ in range(30):
        made.append(issue(enabled)[1])
        frozen.tick(timedelta(seconds=1))
    first = console.client.get("/admin/t/default/users/42")
    assert link_ids(first) == made[::-1][:25]
    following = re.search(r'href="([^"]+)" rel="next"', text(first))[1]
    assert following == f"/admin/t/default/users/42?after={made[5]}"
    second = console.client.get(following)
    assert link_ids(second) == made[::-1][25:]
    assert 'rel="next"' not in text(second)
    assert 'href="/admin/t/default/users/42" rel="first"' in text(second)


def test_a_bad_page_of_a_users_links(console, enabled):
    _, link_id = issue(enabled)
    malformed = console.client.get("/admin/t/default/users/42?after=short")
    assert malformed.status_code == 400
    assert "Link id: must be 16 to 32 characters" in text(malformed)
    gone = console.client.get(f"/admin/t/default/users/42?after={ABSENT}")
    assert gone.status_code == 200
    assert "here is the first" in text(gone)
    assert link_ids(gone) == [link_id]


def test_void_all_of_a_users_links_from_their_page(app, console, enabled):
    alice, bob = issue(enabled)[0], issue(enabled, "bob")[0]
    refused = console.post("/admin/t/default/users/42/revoke", {"reason": " "})
    assert refused.status_code == 400
    assert "Reason: must be 1 to 500 characters" in text(refused)
    assert enabled.verify(alice).status_code == 200

    response = console.post("/admin/t/default/users/42/revoke", {"reason": "lost phone"})
    assert response.headers["Location"] == "/admin/t/default/users/42"
    page = console.client.get("/admin/t/default/users/42")
    assert "Every auto-login link of user 42 sent before now is void." in text(page)
    assert "No live links of user 42 in the ledger." in text(page)
    assert enabled.verify(alice).json["code"] == "token_revoked"
    assert enabled.verify(bob).status_code == 200
    event = audit(app.test_client())[0]
    assert (event["actor"], event["action"]) == ("admin-key", "user.revoke")
    assert (event["detail"]["user_id"], event["detail"]["reason"]) == ("42", "lost phone")


def test_the_security_pages_revoke_lands_on_the_users_page(console, enabled):
    response = console.post("/admin/t/default/security/revoke", {"user_id": "42", "reason": "x"})
    assert response.headers["Location"] == "/admin/t/default/users/42"


# -- a link's page and voiding one link ------------------------------------------------------


def test_a_links_page_shows_its_ledger_entry(console, enabled):
    token, link_id = issue(enabled, reference="ticket 9")
    enabled.verify(token, client={"ip": "198.51.100.4", "user_agent": "Phone"})
    response = console.client.get(f"/admin/t/default/links/{link_id}")
    assert response.status_code == 200
    page = main_of(response)
    entry = ledger_entry(enabled.client, link_id)
    assert entry["status"] == "active" and entry["uses"] == 1
    for shown in (
        link_id,
        '<span class="badge badge-ok">active</span>',
        'href="/admin/t/default/users/42"',
        "ticket 9",
        "issuer-key",
        '<dd class="uses">1</dd>',
        "198.51.100.4",
        "Phone",  # its sign-in
        f'href="/admin/t/default/links/{link_id}/void"',
    ):
        assert shown in page, shown
    assert token not in page


@pytest.mark.parametrize(
    ("link_id", "status", "message"),
    (
        ("short", 400, "Link id: must be 16 to 32 characters of A-Z a-z 0-9 - _"),
        ("x" * 33, 400, "Link id: must be 16 to 32 characters"),
        ("not.a.link.id.at.all", 400, "Link id: must be 16 to 32 characters"),
        (ABSENT, 404, f"This tenant has no link &#39;{ABSENT}&#39;"),
    ),
)
@pytest.mark.parametrize("page", ("", "/void"))
def test_a_malformed_or_unknown_link_is_a_page_with_a_message(
    console, link_id, status, message, page
):
    response = console.client.get(f"/admin/t/default/links/{link_id}{page}")
    assert response.status_code == status
    assert response.mimetype == "text/html"
    assert message in text(response)
    posted = console.post(f"/admin/t/default/links/{link_id}/void", {"reason": "x"})
    assert posted.status_code == status


def test_void_one_link_after_a_reason_and_a_confirmation(app, console, enabled):
    leaked, link_id = issue(enabled, reference="ticket 1234")
    other, _ = issue(enabled)
    confirm = console.client.get(f"/admin/t/default/links/{link_id}/void")
    assert confirm.status_code == 200
    assert "every other link of user 42 keeps" in text(confirm)
    assert "ticket 1234" in text(confirm)
    assert f'action="/admin/t/default/links/{link_id}/void"' in text(confirm)

    refused = console.post(f"/admin/t/default/links/{link_id}/void", {"reason": ""})
    assert refused.status_code == 400
    assert "Reason: must be 1 to 500 characters" in text(refused)
    assert enabled.verify(leaked).status_code == 200

    response = console.post(f"/admin/t/default/links/{link_id}/void", {"reason": "forwarded"})
    assert response.headers["Location"] == "/admin/t/default/users/42"
    page = console.client.get("/admin/t/default/users/42")
    assert f"The link {link_id} is void" in text(page)
    assert link_id not in link_ids(page)
    assert enabled.verify(leaked).json["code"] == "token_revoked"
    assert enabled.verify(other).status_code == 200
    assert ledger_entry(enabled.client, link_id)["status"] == "revoked"
    event = audit(app.test_client())[0]
    assert (event["actor"], event["action"]) == ("admin-key", "link.revoke")
    assert event["detail"]["link_id"] == link_id
    assert event["detail"]["reason"] == "forwarded"
    revoked = text(console.client.get(f"/admin/t/default/links/{link_id}"))
    assert '<span class="badge badge-refused">revoked</span>' in revoked
    assert "Void this link…" not in revoked


def test_voiding_an_expired_link_says_so_and_stores_nothing(app, frozen, console, enabled):
    _, link_id = issue(enabled, ttl_seconds=60)
    frozen.tick(timedelta(seconds=60 + 31))  # past the expiry and the leeway
    confirm = console.client.get(f"/admin/t/default/links/{link_id}/void")
    assert '<span class="badge badge-off">expired</span>' in text(confirm)
    before = audit(app.test_client())
    response = console.post(
        f"/admin/t/default/links/{link_id}/void", {"reason": "late"}, follow=True
    )
    assert f"The link {link_id} had expired already" in text(response)
    assert "nothing was changed" in text(response)
    assert audit(app.test_client()) == before


def test_a_void_without_the_csrf_token_voids_nothing(console, enabled):
    token, link_id = issue(enabled)
    for path, form in (
        (f"/admin/t/default/links/{link_id}/void", {"reason": "x"}),
        ("/admin/t/default/users/42/revoke", {"reason": "x"}),
    ):
        response = console.client.post(path, data=form)
        assert response.status_code == 403
        assert "security token" in text(response)
    assert enabled.verify(token).status_code == 200


def test_without_the_ledger_the_pages_say_so(make_app):
    app = make_app(LINK_LEDGER=False)
    console = Console(app.test_client())
    console.sign_in()
    page = console.client.get("/admin/t/default/users/42")
    assert page.status_code == 200
    assert "The ledger of links is off in this deployment" in text(page)
    link = console.client.get(f"/admin/t/default/links/{ABSENT}")
    assert link.status_code == 404
    assert "LINK_LEDGER = false" in text(link)


# -- the sign-in log leads to the user and the link ------------------------------------------


def test_each_sign_in_row_leads_to_its_user_and_link(app, console, enabled):
    token, link_id = issue(enabled)
    enabled.verify(token)
    app.extensions["signin_log"].flush()
    # An entry written before link ids: no link to lead to.
    tenant_store = app.extensions["store"].tenant("default")
    tenant_store.record_signins([Signin(utcnow(), "old-user", "ok", None, None, None)])
    page = text(console.client.get("/admin/t/default/signins"))
    assert f'<a class="link-id" href="/admin/t/default/links/{link_id}">{link_id}</a>' in page
    assert '<a class="user-link" href="/admin/t/default/users/42">42</a>' in page
    old_row = re.search(r"<tr>(?:(?!</tr>).)*old-user.*?</tr>", page, re.S)[0]
    assert '<span class="hint">none</span>' in old_row and "/links/" not in old_row
    assert console.client.get(f"/admin/t/default/links/{link_id}").status_code == 200


# -- General Setting: role mailboxes and first-browser binding -----------------------------


def settings_form(**fields) -> dict:
    return {"ttl_value": "3", "ttl_unit": "days", **fields}


def test_the_role_mailbox_list_is_shown_one_name_a_line(console):
    page = text(console.client.get("/admin/t/default/settings"))
    listed = re.search(r'<textarea id="role_mailboxes"[^>]*>([^<]*)</textarea>', page)[1]
    assert listed.split("\n") == list(DEFAULT_ROLE_MAILBOXES)
    assert f"Now <strong>{len(DEFAULT_ROLE_MAILBOXES)}</strong>" in page


def test_the_role_mailbox_list_is_saved_as_the_api_would(app, console):
    names = "support\n\n  Helpdesk-Team \nsales\nsupport\n"
    refused = console.post("/admin/t/default/settings", settings_form(role_mailboxes=names))
    assert refused.status_code == 400  # upper case is not a list name
    assert "Role mailboxes, line 3: “Helpdesk-Team” is not a mailbox name" in text(refused)
    assert (
        "Helpdesk-Team"
        in re.search(r"<textarea id=\"role_mailboxes\".*?</textarea>", text(refused), re.S)[0]
    )  # the form keeps what was typed

    saved = console.post(
        "/admin/t/default/settings",
        settings_form(role_mailboxes="support\n\n  helpdesk-team \nsales\nsupport\n"),
        follow=True,
    )
    assert "3 role mailboxes get no token." in text(saved)
    assert api_settings(app.test_client())["role_mailboxes"] == [
        "helpdesk-team",
        "sales",
        "support",
    ]
    event = audit(app.test_client())[0]
    assert (event["actor"], event["action"]) == ("admin-key", "settings.update")
    assert event["detail"] == {"role_mailboxes": ["helpdesk-team", "sales", "support"]}

    # The same names in another order: nothing to save.
    again = console.post(
        "/admin/t/default/settings",
        settings_form(role_mailboxes="sales\nsupport\nhelpdesk-team"),
        follow=True,
    )
    assert "Nothing to save" in text(again)


@pytest.mark.parametrize(
    ("names", "message"),
    (
        ("support\nbilling@example.com", "line 2: “billing@example.com” is not a mailbox name"),
        ("support+eu", "line 1: “support+eu” is not a mailbox name"),
        ("it\n\n\nhelp desk", "line 4: “help desk” is not a mailbox name"),
        ("x" * 65, "line 1: “" + "x" * 60 + "…” is not a mailbox name"),
        (
            "\n".join(f"name{i}" for i in range(201)),
            "Role mailboxes: must be a list of at most 200",
        ),
    ),
    ids=("address", "tag", "space", "too-long", "too-many"),
)
def test_bad_role_mailbox_names_are_refused_in_words_and_nothing_saved(
    app, console, names, message
):
    response = console.post(
        "/admin/t/default/settings",
        settings_form(auto_login_enabled="on", role_mailboxes=names),
    )
    assert response.status_code == 400
    assert message in text(response)
    settings = api_settings(app.test_client())
    assert settings["role_mailboxes"] == list(DEFAULT_ROLE_MAILBOXES)
    assert settings["auto_login_enabled"] is False  # nothing of the form saved
    assert audit(app.test_client())[0]["action"] == "store.create"


def test_an_empty_list_turns_the_check_off_and_a_form_without_it_keeps_it(app, console):
    response = console.post(
        "/admin/t/default/settings", settings_form(role_mailboxes="\n"), follow=True
    )
    assert "No role mailboxes" in text(response)
    assert api_settings(app.test_client())["role_mailboxes"] == []
    console.post("/admin/t/default/settings", settings_form(role_mailboxes="info"))
    console.post("/admin/t/default/settings", settings_form(auto_login_enabled="on"))
    assert api_settings(app.test_client())["role_mailboxes"] == ["info"]


def test_bind_to_first_device_is_switched_with_its_trade_off_explained(app, console, enabled):
    page = text(console.client.get("/admin/t/default/settings"))
    assert 'name="bind_to_first_device"' in page
    assert "a link then works only in the browser that opened it" in page
    assert "asked for a password on the laptop" in page
    assert "Whoever opens a forwarded copy before the" in page
    token, _ = issue(enabled)

    response = console.post(
        "/admin/t/default/settings",
        settings_form(auto_login_enabled="on", bind_to_first_device="on"),
        follow=True,
    )
    assert "Each link now works only in the browser that opens it first." in text(response)
    assert api_settings(app.test_client())["bind_to_first_device"] is True
    event = audit(app.test_client())[0]
    assert event["detail"] == {"bind_to_first_device": True}
    # On: the portal must name the browser.
    assert enabled.verify(token).json["code"] == "invalid_request"
    device = {"device": "d" * 22}
    assert enabled.verify(token, client=device).status_code == 200
    assert enabled.verify(token, client={"device": "e" * 22}).json["code"] == (
        "token_bound_elsewhere"
    )
    entry = get(app.test_client(), "/v1/admin/links", user_id="42")["links"][0]
    assert entry["bound"] is True

    console.post("/admin/t/default/settings", settings_form(auto_login_enabled="on"))
    assert api_settings(app.test_client())["bind_to_first_device"] is False


# -- the preview's role_mailbox --------------------------------------------------------------


def test_the_preview_says_role_mailbox_by_the_tenants_list(console, enabled):
    form = {"user_id": "42", "email": "Support+EU@example.com", "to": "support+eu@example.com"}
    page = " ".join(text(console.post("/admin/t/default/preview", form)).split())
    assert "<code>role_mailbox</code>" in page
    assert "is a role mailbox: <code>support</code> is on the list" in page
    api = enabled.issue(email="Support+EU@example.com", recipients={"to": [form["to"]]}).json
    assert api["reason"] == "role_mailbox"

    console.post(
        "/admin/t/default/settings",
        settings_form(auto_login_enabled="on", role_mailboxes="billing"),
    )
    page = text(console.post("/admin/t/default/preview", form))
    assert "Yes: this email would carry an auto-login link" in page


# -- tenants: the same pages, the acting-tenant check -----------------------------------------


def test_a_tenant_admin_uses_the_ledger_pages_of_its_tenant_only(client):
    create(client, "acme", ACME)
    create(client, "globex", GLOBEX)
    for tenant in ("acme", "globex"):
        body = {"auto_login_enabled": True}
        client.patch(f"/v1/tenants/{tenant}/admin/settings", json=body, headers=ADMIN)
    link = {"user_id": "42", "email": "a@example.com", "recipients": {"to": ["a@example.com"]}}
    ours = client.post("/v1/tenants/acme/links", json=link, headers=ISSUER).json["link_id"]
    theirs = client.post("/v1/tenants/globex/links", json=link, headers=ISSUER).json["link_id"]

    tenant_admin = Console(client.application.test_client())
    tenant_admin.sign_in(make_key(client, "acme"))
    assert link_ids(tenant_admin.client.get("/admin/t/acme/users/42")) == [ours]
    assert tenant_admin.client.get(f"/admin/t/acme/links/{ours}").status_code == 200
    # Another tenant's link under its own tenant: not in this ledger.
    assert tenant_admin.client.get(f"/admin/t/acme/links/{theirs}").status_code == 404

    pages = [
        "users/42",
        f"links/{theirs}",
        f"links/{theirs}/void",
        "users?user_id=42",
    ]
    for other in ("globex", "nope", "default"):
        for path in pages:
            response = tenant_admin.client.get(f"/admin/t/{other}/{path}")
            assert response.status_code == 403, (other, path)
            assert "This API key acts in its own tenant only" in text(response)
            assert theirs not in main_of(response) and other not in main_of(response)
        for path in (f"links/{theirs}/void", "users/42/revoke"):
            response = tenant_admin.post(f"/admin/t/{other}/{path}", {"reason": "sabotage"})
            assert response.status_code == 403
    assert get(client, f"/v1/tenants/globex/admin/links/{theirs}")["status"] == "active"
    assert [e["action"] for e in get(client, "/v1/tenants/globex/admin/audit")["events"]] == [
        "settings.update",
        "tenant.create",
    ]

    platform = Console(client.application.test_client())
    platform.sign_in()
    for path in ("users/42", f"links/{ours}", f"links/{ours}/void"):
        mine = tenant_admin.client.get(f"/admin/t/acme/{path}")
        its = platform.client.get(f"/admin/t/acme/{path}")
        csrf = re.compile(r'name="csrf_token" value="[^"]+"')
        assert csrf.sub("", main_of(mine)) == csrf.sub("", main_of(its)), path
    # A platform admin voids in the tenant it names, and only there.
    assert platform.client.get(f"/admin/t/globex/links/{ours}").status_code == 404
    response = platform.post(f"/admin/t/acme/links/{ours}/void", {"reason": "leaked"})
    assert response.headers["Location"] == "/admin/t/acme/users/42"
    assert get(client, f"/v1/tenants/acme/admin/links/{ours}")["status"] == "revoked"
    assert get(client, f"/v1/tenants/globex/admin/links/{theirs}")["status"] == "active"


# -- headers and secrets -------------------------------------------------------------------


def test_the_new_pages_carry_the_headers_and_no_secret(console, enabled):
    token, link_id = issue(enabled)
    enabled.verify(token, client={"device": "f" * 22})
    for path in (
        "/admin/t/default/users/42",
        f"/admin/t/default/links/{link_id}",
        f"/admin/t/default/links/{link_id}/void",
        "/admin/t/default/settings",
    ):
        response = console.client.get(path)
        assert response.status_code == 200, path
        for name, value in HEADERS.items():
            assert response.headers[name] == value
        for secret in [*SECRETS, CONSOLE_SECRET_KEY, token, "f" * 22]:
            assert secret not in text(response), path


def test_a_users_page_is_filled_past_a_store_read_that_found_none(frozen, client, console, enabled):
    # Redis looks at a bounded number of a user's links per filtered read
    # (5,000) and may answer a short page with ``next`` set; the console reads on.
    _, first = issue(enabled, "42")
    frozen.tick(timedelta(seconds=1))
    _, second = issue(enabled, "42")
    frozen.tick(timedelta(seconds=1))
    link = {"user_id": "42", "email": "alice@example.com", "ttl_seconds": 60}
    item = {**link, "recipients": {"to": ["alice@example.com"]}}
    for _ in range(6):
        response = client.post("/v1/links/batch", json={"items": [item] * 1000}, headers=ISSUER)
        assert response.status_code == 200
    frozen.tick(timedelta(minutes=2))  # those 6,000 newer links have expired
    page = console.client.get("/admin/t/default/users/42")
    assert link_ids(page) == [second, first]
    assert 'rel="next"' not in text(page)
