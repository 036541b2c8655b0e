"""``/v1/admin/tenants`` and ``/v1/admin/platform/audit``: the platform manages its tenants.

Creating, listing, reading, moving and deleting tenants; what a deletion does
at once (tokens refused, keys unknown, the id free again) and what the
reaper does later (the old rows go, a tenant made again keeps its own).
"""

from __future__ import annotations

import sqlite3
import time

import jwt
import pytest

from service.tokens import LEGACY_PURPOSE, tenant_claim
from tests.conftest import PORTAL, auth
from tests.support.tenants import (
    ACME,
    ADMIN,
    GLOBEX,
    ISSUER,
    LINK,
    LINK_SETTINGS,
    PORTAL_KEY,
    assert_problem,
    bearer,
    enable,
    get,
    token,
    verify,
)

T0_ISO = "2026-11-25T10:00:00Z"
DEFAULTS = {"auto_login_enabled": False, "token_ttl_seconds": 259200}
#: Longest wait for the background reaper (a bound on a poll, never a measure of speed).
REAPER_DEADLINE_SECONDS = 10.0


def create(client, tenant_id, portal=ACME, *, reason="onboarding", headers=ADMIN):
    body = {"tenant_id": tenant_id, "portal_base_url": portal, "reason": reason}
    return client.post("/v1/admin/tenants", json=body, headers=headers)


def made(client, tenant_id, portal=ACME) -> dict:
    response = create(client, tenant_id, portal)
    assert response.status_code == 201, response.json
    return response.json


def delete(client, tenant_id, reason="offboarding", headers=ADMIN):
    return client.delete(f"/v1/admin/tenants/{tenant_id}", json={"reason": reason}, headers=headers)


def new_key(client, tenant_id, name="all", roles=("issuer", "portal", "admin")) -> dict:
    body = {"name": name, "roles": list(roles), "reason": "key for tests"}
    response = client.post(f"/v1/tenants/{tenant_id}/admin/keys", json=body, headers=ADMIN)
    assert response.status_code == 201, response.json
    return bearer(response.json["key"])


def actions(events: list[dict]) -> list[str]:
    return [e["action"] for e in events]


def ids(client, **query) -> list[str]:
    return [t["tenant_id"] for t in get(client, "/v1/admin/tenants", **query)["tenants"]]


# -- creating ------------------------------------------------------------------


def test_create_answers_201_with_auto_login_off_and_the_default_lifetime(frozen, client):
    response = create(client, "acme")

    expected = {
        "tenant_id": "acme",
        "portal_base_url": ACME,
        "created_at": T0_ISO,
        **DEFAULTS,
    }
    assert response.status_code == 201
    assert response.json == expected
    assert get(client, "/v1/admin/tenants/acme") == expected
    assert get(client, "/v1/tenants/acme/admin/settings") == {
        **DEFAULTS,
        "max_token_ttl_seconds": 604800,
        "portal_base_url": ACME,
        **LINK_SETTINGS,
    }


def test_a_new_tenant_starts_at_epoch_1_with_empty_logs_but_its_creation(client):
    made(client, "acme")

    assert get(client, "/v1/tenants/acme/admin/epoch")["epoch"] == 1
    assert get(client, "/v1/tenants/acme/admin/signins") == {"signins": []}
    assert get(client, "/v1/tenants/acme/admin/keys") == {"keys": []}
    events = get(client, "/v1/tenants/acme/admin/audit")["events"]
    assert actions(events) == ["tenant.create"]
    assert events[0]["actor"] == "admin-key"
    assert events[0]["detail"]["tenant_id"] == "acme"
    assert events[0]["detail"]["reason"] == "onboarding"
    # Nothing of it in default's log.
    assert actions(get(client, "/v1/admin/audit")["events"]) == ["store.create"]


@pytest.mark.parametrize(
    ("portal", "stored"),
    (
        ("https://acme.portal.example.com/", ACME),
        ("https://helpdesk.example.com/acme", "https://helpdesk.example.com/acme"),
        ("https://helpdesk.example.com/acme/", "https://helpdesk.example.com/acme"),
        ("https://helpdesk.example.com:8443", "https://helpdesk.example.com:8443"),
    ),
)
def test_a_portal_address_is_an_origin_and_optional_path(client, portal, stored):
    assert made(client, "acme", portal)["portal_base_url"] == stored


@pytest.mark.parametrize("tenant_id", ("a", "0", "acme", "globex-eu", "a-b-c", "9lives", "a" * 63))
def test_good_tenant_ids_are_taken(client, tenant_id):
    assert made(client, tenant_id)["tenant_id"] == tenant_id
    assert tenant_id in ids(client)


BAD_IDS = (
    "Acme",
    "ACME",
    "-a",
    "a-",
    "-",
    "a_b",
    "_platform",
    "a.b",
    "a b",
    " acme",
    "acme ",
    "acmé",
    "a" * 64,
    "",
)


@pytest.mark.parametrize("tenant_id", (*BAD_IDS, 42, None, True, ["acme"], {"id": "acme"}))
def test_a_bad_tenant_id_is_invalid_request_and_makes_nothing(client, tenant_id):
    response = create(client, tenant_id)

    assert_problem(response, 400, "invalid_request")
    assert "tenant_id" in response.json["detail"]
    assert ids(client) == ["default"]
    assert get(client, "/v1/admin/platform/audit") == {"events": []}


def test_a_missing_tenant_id_is_invalid_request(client):
    response = client.post(
        "/v1/admin/tenants", json={"portal_base_url": ACME, "reason": "x"}, headers=ADMIN
    )

    assert_problem(response, 400, "invalid_request")
    assert "tenant_id" in response.json["detail"]


BAD_PORTALS = (
    "",
    "acme.portal.example.com",
    "//acme.portal.example.com",
    "ftp://acme.portal.example.com",
    "javascript:alert(1)",
    "https://",
    "https:///path",
    "https://acme.portal.example.com/?tab=1",
    "https://acme.portal.example.com/#top",
    "https://user:secret@acme.portal.example.com",
    None,
    42,
    ["https://acme.portal.example.com"],
)


@pytest.mark.parametrize("portal", BAD_PORTALS)
def test_a_bad_portal_address_is_invalid_request_and_makes_nothing(client, portal):
    response = create(client, "acme", portal)

    assert_problem(response, 400, "invalid_request")
    assert "portal_base_url" in response.json["detail"]
    assert_problem(client.get("/v1/admin/tenants/acme", headers=ADMIN), 404, "tenant_not_found")


#: Not URLs a link could start with (the service once took them, or answered 500).
NO_URL_PORTALS = (
    pytest.param("https://[::1", id="unclosed-ipv6"),
    pytest.param("https://[", id="lone-bracket"),
    pytest.param("https://acme.portal.example.com:99999", id="port-out-of-range"),
    pytest.param("https://acme.portal.example.com:0", id="port-0"),
    pytest.param(" https://acme.portal.example.com", id="leading-space"),
    pytest.param("https://acme.portal.example.com\n", id="trailing-newline"),
    pytest.param("https://acme.portal.example.com/a\r\nSet-Cookie:x", id="crlf-in-path"),
    pytest.param("https://acme portal.example.com", id="space-in-host"),
    pytest.param("https://acme.portal.example.com/a b", id="space-in-path"),
    pytest.param("https://acme.portal.example.com/<x>", id="angle-brackets"),
)


@pytest.mark.parametrize("portal", NO_URL_PORTALS)
def test_a_portal_address_that_is_no_url_is_invalid_request(client, portal):
    response = create(client, "acme", portal)

    assert_problem(response, 400, "invalid_request")
    assert "portal_base_url" in response.json["detail"]
    made(client, "acme")
    assert_problem(
        patch(client, "acme", {"portal_base_url": portal, "reason": "move"}), 400, "invalid_request"
    )
    assert get(client, "/v1/admin/tenants/acme")["portal_base_url"] == ACME


def test_an_http_portal_is_refused_in_production(client):
    response = create(client, "acme", "http://acme.portal.example.com")

    assert_problem(response, 400, "invalid_request")
    assert "https" in response.json["detail"]


def test_an_http_portal_is_taken_in_development(make_app):
    client = make_app(ENV="development").test_client()

    assert made(client, "acme", "http://localhost:8080")["portal_base_url"] == (
        "http://localhost:8080"
    )


@pytest.mark.parametrize("body", ({}, {"reason": ""}, {"reason": "  "}, {"reason": 7}))
def test_create_without_a_reason_is_invalid_request(client, body):
    body = {"tenant_id": "acme", "portal_base_url": ACME, **body}

    response = client.post("/v1/admin/tenants", json=body, headers=ADMIN)

    assert_problem(response, 400, "invalid_request")
    assert "reason" in response.json["detail"]
    assert ids(client) == ["default"]


@pytest.mark.parametrize("body", (b"{", b"[]", b'"acme"', b"null"))
def test_create_with_a_body_that_is_not_an_object_is_invalid_json(client, body):
    response = client.post(
        "/v1/admin/tenants", data=body, content_type="application/json", headers=ADMIN
    )

    assert_problem(response, 400, "invalid_json")


@pytest.mark.parametrize("tenant_id", ("acme", "default"))
def test_an_id_taken_is_tenant_exists_and_changes_nothing(client, tenant_id):
    if tenant_id != "default":
        made(client, tenant_id)
    before = get(client, f"/v1/admin/tenants/{tenant_id}")

    response = create(client, tenant_id, GLOBEX)

    assert_problem(response, 409, "tenant_exists")
    assert get(client, f"/v1/admin/tenants/{tenant_id}") == before
    assert actions(get(client, "/v1/admin/platform/audit")["events"]).count("tenant.create") == (
        0 if tenant_id == "default" else 1
    )


def test_a_new_tenant_reaches_another_worker_at_once(client, make_app):
    other = make_app().test_client()

    made(client, "acme")

    assert get(other, "/v1/admin/tenants/acme")["portal_base_url"] == ACME
    enable(other, "acme")
    assert verify(other, "acme", token(client, "acme")).status_code == 200


# -- who may manage tenants ----------------------------------------------------------

PLATFORM_CALLS = (
    (
        "POST",
        "/v1/admin/tenants",
        {"tenant_id": "globex", "portal_base_url": GLOBEX, "reason": "r"},
    ),
    ("GET", "/v1/admin/tenants", None),
    ("GET", "/v1/admin/tenants/acme", None),
    ("PATCH", "/v1/admin/tenants/acme", {"portal_base_url": GLOBEX, "reason": "r"}),
    ("DELETE", "/v1/admin/tenants/acme", {"reason": "r"}),
    ("GET", "/v1/admin/platform/audit", None),
)


@pytest.mark.parametrize(("method", "path", "body"), PLATFORM_CALLS)
@pytest.mark.parametrize("tenant", ("acme", "default"))
def test_a_tenant_admin_key_never_reaches_the_platform_calls(client, method, path, body, tenant):
    made(client, "acme")
    key = new_key(client, tenant, "boss", ["issuer", "portal", "admin"])
    before = get(client, "/v1/admin/tenants")

    response = client.open(path, method=method, json=body, headers=key)

    assert_problem(response, 403, "forbidden")
    assert get(client, "/v1/admin/tenants") == before
    assert get(client, "/v1/admin/tenants/acme")["portal_base_url"] == ACME


@pytest.mark.parametrize(("method", "path", "body"), PLATFORM_CALLS)
@pytest.mark.parametrize("key", ("issuer-key", "portal-key"))
def test_a_platform_key_without_admin_is_forbidden(client, method, path, body, key):
    made(client, "acme")

    assert_problem(client.open(path, method=method, json=body, headers=auth(key)), 403, "forbidden")
    assert ids(client) == ["acme", "default"]


@pytest.mark.parametrize(("method", "path", "body"), PLATFORM_CALLS)
@pytest.mark.parametrize("headers", ({}, bearer("tk.acme.not-a-key"), bearer("nope")))
def test_no_or_an_unknown_key_is_401_on_the_platform_calls(client, method, path, body, headers):
    made(client, "acme")

    response = client.open(path, method=method, json=body, headers=headers)

    assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


# -- listing -----------------------------------------------------------------------

MANY = ("globex", "acme-eu", "0day", "b", "acme", "initech")


def test_the_list_has_default_and_every_tenant_ordered_by_id(client):
    for tenant_id in MANY:
        made(client, tenant_id)

    answer = get(client, "/v1/admin/tenants")

    assert [t["tenant_id"] for t in answer["tenants"]] == sorted([*MANY, "default"])
    assert answer["next"] is None
    default = next(t for t in answer["tenants"] if t["tenant_id"] == "default")
    assert default["portal_base_url"] == PORTAL
    assert set(default) == {"tenant_id", "portal_base_url", "created_at", *DEFAULTS}


@pytest.mark.parametrize("limit", (1, 2, 3, 7, 500))
def test_pages_follow_next_through_every_tenant_once(client, limit):
    for tenant_id in MANY:
        made(client, tenant_id)

    seen, after, pages = [], None, 0
    while True:
        query = {"limit": limit} if after is None else {"limit": limit, "after": after}
        page = get(client, "/v1/admin/tenants", **query)
        pages += 1
        assert len(page["tenants"]) <= limit
        seen += [t["tenant_id"] for t in page["tenants"]]
        if page["next"] is None:
            break
        assert page["next"] == page["tenants"][-1]["tenant_id"]
        after = page["next"]
        assert pages < 20

    assert seen == sorted([*MANY, "default"])


def test_the_default_page_is_100(client):
    for n in range(101):
        made(client, f"t{n:03d}")

    first = get(client, "/v1/admin/tenants")
    second = get(client, "/v1/admin/tenants", after=first["next"])

    assert len(first["tenants"]) == 100
    assert first["next"] == "t098"
    assert [t["tenant_id"] for t in second["tenants"]] == ["t099", "t100"]
    assert second["next"] is None


def test_after_need_not_be_a_tenant(client):
    for tenant_id in MANY:
        made(client, tenant_id)

    assert ids(client, after="acme-a") == ["acme-eu", "b", "default", "globex", "initech"]
    assert ids(client, after="zzz") == []


@pytest.mark.parametrize(
    ("prefix", "expected"),
    (
        ("acme", ["acme", "acme-eu"]),
        ("acme-", ["acme-eu"]),
        ("d", ["default"]),
        ("0", ["0day"]),
        ("globex", ["globex"]),
        ("globexx", []),
        ("z", []),
        ("", sorted([*MANY, "default"])),
    ),
)
def test_prefix_lists_the_ids_that_start_with_it(client, prefix, expected):
    for tenant_id in MANY:
        made(client, tenant_id)

    assert ids(client, prefix=prefix) == expected


def test_prefix_pages_with_limit_and_after(client):
    for tenant_id in ("acme", "acme-eu", "acme-us", "acmf", "ac"):
        made(client, tenant_id)

    first = get(client, "/v1/admin/tenants", prefix="acme", limit=2)
    second = get(client, "/v1/admin/tenants", prefix="acme", limit=2, after=first["next"])

    assert [t["tenant_id"] for t in first["tenants"]] == ["acme", "acme-eu"]
    assert first["next"] == "acme-eu"
    assert [t["tenant_id"] for t in second["tenants"]] == ["acme-us"]
    assert second["next"] is None


@pytest.mark.parametrize(
    "query",
    (
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "-1"},
        {"limit": "ten"},
        {"limit": "1.5"},
        {"limit": ""},
        {"after": "Acme"},
        {"after": "a_b"},
        {"after": ""},
        {"prefix": "Acme"},
        {"prefix": "a_"},
        {"prefix": "a" * 64},
    ),
)
def test_bad_list_parameters_are_invalid_request(client, query):
    response = client.get("/v1/admin/tenants", query_string=query, headers=ADMIN)

    assert_problem(response, 400, "invalid_request")


def test_a_deleted_tenant_is_not_listed(client):
    made(client, "acme")
    made(client, "globex")

    assert delete(client, "acme").status_code == 204

    assert ids(client) == ["default", "globex"]
    assert ids(client, prefix="acme") == []


# -- reading one ----------------------------------------------------------------------


def test_get_default_shows_the_deployment_s_portal(frozen, client):
    answer = get(client, "/v1/admin/tenants/default")

    assert answer["tenant_id"] == "default"
    assert answer["portal_base_url"] == PORTAL
    assert answer["created_at"] == T0_ISO
    assert {k: answer[k] for k in DEFAULTS} == DEFAULTS


def test_get_shows_the_tenant_s_current_settings(client):
    made(client, "acme")
    enable(client, "acme", token_ttl_seconds=3600)

    answer = get(client, "/v1/admin/tenants/acme")

    assert answer["auto_login_enabled"] is True
    assert answer["token_ttl_seconds"] == 3600
    assert get(client, "/v1/admin/tenants/default")["auto_login_enabled"] is False


@pytest.mark.parametrize("tenant_id", ("nope", "acme"))
def test_get_of_no_such_tenant_is_tenant_not_found(client, tenant_id):
    if tenant_id == "acme":
        made(client, "acme")
        assert delete(client, "acme").status_code == 204

    assert_problem(
        client.get(f"/v1/admin/tenants/{tenant_id}", headers=ADMIN), 404, "tenant_not_found"
    )


@pytest.mark.parametrize("tenant_id", ("Acme", "a_b", "-a", "a" * 64))
def test_get_of_a_malformed_id_is_invalid_request(client, tenant_id):
    assert_problem(
        client.get(f"/v1/admin/tenants/{tenant_id}", headers=ADMIN), 400, "invalid_request"
    )


# -- moving the portal ---------------------------------------------------------------------


def patch(client, tenant_id, body, headers=ADMIN):
    return client.patch(f"/v1/admin/tenants/{tenant_id}", json=body, headers=headers)


def test_patch_moves_the_portal_for_every_worker_at_once(frozen, client, make_app):
    made(client, "acme")
    enable(client, "acme")
    other = make_app().test_client()

    response = patch(client, "acme", {"portal_base_url": GLOBEX + "/", "reason": "rebrand"})

    assert response.status_code == 200
    assert response.json == {
        "tenant_id": "acme",
        "portal_base_url": GLOBEX,
        "created_at": T0_ISO,
        "auto_login_enabled": True,
        "token_ttl_seconds": 259200,
    }
    link = other.post("/v1/tenants/acme/links", json=LINK, headers=ISSUER).json
    assert link["url"].startswith(GLOBEX + "/?auto_login=")
    assert get(other, "/v1/tenants/acme/admin/settings")["portal_base_url"] == GLOBEX


def test_patch_is_audited_in_the_tenant_and_the_platform(client):
    made(client, "acme")

    patch(client, "acme", {"portal_base_url": GLOBEX, "reason": "rebrand"})

    tenant_events = get(client, "/v1/tenants/acme/admin/audit")["events"]
    assert actions(tenant_events) == ["tenant.update", "tenant.create"]
    assert tenant_events[0]["detail"] == {
        "tenant_id": "acme",
        "portal_base_url": GLOBEX,
        "reason": "rebrand",
    }


def test_patch_of_default_is_invalid_request(client):
    response = patch(client, "default", {"portal_base_url": GLOBEX, "reason": "move"})

    assert_problem(response, 400, "invalid_request")
    assert get(client, "/v1/admin/tenants/default")["portal_base_url"] == PORTAL
    assert get(client, "/v1/admin/platform/audit") == {"events": []}


@pytest.mark.parametrize("own", (True, False))
def test_patch_with_a_tenant_admin_key_is_forbidden(client, own):
    made(client, "acme")
    key = new_key(client, "acme" if own else "default", "boss", ["admin"])

    response = patch(client, "acme", {"portal_base_url": GLOBEX, "reason": "mine"}, key)

    assert_problem(response, 403, "forbidden")
    assert get(client, "/v1/admin/tenants/acme")["portal_base_url"] == ACME


@pytest.mark.parametrize(
    "body",
    (
        {"portal_base_url": "http://acme.portal.example.com", "reason": "r"},
        {"portal_base_url": "acme.portal.example.com", "reason": "r"},
        {"portal_base_url": None, "reason": "r"},
        {"reason": "r"},
        {"portal_base_url": GLOBEX},
        {"portal_base_url": GLOBEX, "reason": ""},
        {"portal_base_url": GLOBEX, "reason": "r", "auto_login_enabled": True},
        {"portal_base_url": GLOBEX, "reason": "r", "tenant_id": "globex"},
    ),
)
def test_a_bad_patch_is_invalid_request_and_changes_nothing(client, body):
    made(client, "acme")

    assert_problem(patch(client, "acme", body), 400, "invalid_request")
    assert get(client, "/v1/admin/tenants/acme")["portal_base_url"] == ACME
    assert get(client, "/v1/admin/tenants/acme")["auto_login_enabled"] is False
    assert actions(get(client, "/v1/admin/platform/audit")["events"]) == ["tenant.create"]


def test_patch_of_no_such_tenant_is_tenant_not_found(client):
    assert_problem(
        patch(client, "nope", {"portal_base_url": GLOBEX, "reason": "r"}), 404, "tenant_not_found"
    )
    assert get(client, "/v1/admin/platform/audit") == {"events": []}


# -- deleting ------------------------------------------------------------------------------


def test_delete_answers_204_and_frees_the_id(client):
    made(client, "acme")

    response = delete(client, "acme")

    assert response.status_code == 204
    assert response.data == b""
    assert_problem(client.get("/v1/admin/tenants/acme", headers=ADMIN), 404, "tenant_not_found")
    assert_problem(delete(client, "acme"), 404, "tenant_not_found")


def test_delete_takes_its_reason_from_the_query_too(client):
    made(client, "acme")

    response = client.delete("/v1/admin/tenants/acme?reason=contract+ended", headers=ADMIN)

    assert response.status_code == 204
    event = get(client, "/v1/admin/platform/audit")["events"][0]
    assert event["action"] == "tenant.delete"
    assert event["detail"] == {"tenant_id": "acme", "reason": "contract ended"}


@pytest.mark.parametrize("body", (None, {}, {"reason": ""}, {"reason": "x" * 501}))
def test_delete_without_a_reason_is_invalid_request_and_keeps_the_tenant(client, body):
    made(client, "acme")

    response = client.delete("/v1/admin/tenants/acme", json=body, headers=ADMIN)

    assert_problem(response, 400, "invalid_request")
    assert get(client, "/v1/admin/tenants/acme")["tenant_id"] == "acme"


def test_default_cannot_be_deleted(client, links):
    links.enable()
    before = links.token()

    assert_problem(delete(client, "default"), 400, "invalid_request")
    assert ids(client) == ["default"]
    assert links.verify(before).status_code == 200


def test_delete_of_no_such_tenant_is_tenant_not_found(client):
    assert_problem(delete(client, "nope"), 404, "tenant_not_found")
    assert get(client, "/v1/admin/platform/audit") == {"events": []}


def test_after_delete_every_token_of_the_tenant_is_refused_on_every_worker(client, make_app):
    made(client, "acme")
    enable(client, "acme")
    own_portal = new_key(client, "acme", "portal", ["portal"])
    tokens = [token(client, "acme", user) for user in ("1", "2", "42")]
    other = make_app().test_client()
    assert all(verify(other, "acme", t).status_code == 200 for t in tokens)

    assert delete(client, "acme").status_code == 204

    for worker in (client, other):
        for t in tokens:
            assert_problem(verify(worker, "acme", t), 404, "tenant_not_found")
            unprefixed = worker.post("/v1/tokens/verify", json={"token": t}, headers=own_portal)
            assert_problem(unprefixed, 401, "unauthorized")
            # Nor is it default's (or anybody else's) token.
            in_default = worker.post("/v1/tokens/verify", json={"token": t}, headers=PORTAL_KEY)
            assert_problem(in_default, 401, "token_invalid")


def test_after_delete_its_keys_are_unknown_on_every_worker(client, make_app):
    made(client, "acme")
    key = new_key(client, "acme")
    other = make_app().test_client()
    assert other.get("/v1/admin/settings", headers=key).status_code == 200

    assert delete(client, "acme").status_code == 204

    for worker in (client, other):
        for path in ("/v1/admin/settings", "/v1/admin/keys", "/v1/tenants/acme/admin/epoch"):
            response = worker.get(path, headers=key)
            assert_problem(response, 401, "unauthorized")
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert_problem(worker.post("/v1/links", json=LINK, headers=key), 401, "unauthorized")


def test_a_tenant_made_again_at_once_shares_nothing_with_the_old(frozen, client, make_app):
    made(client, "acme")
    enable(client, "acme", token_ttl_seconds=3600)
    old_key = new_key(client, "acme")
    old_tokens = [token(client, "acme", user) for user in ("42", "43")]
    assert verify(client, "acme", old_tokens[0]).status_code == 200
    revoked = client.post(
        "/v1/tenants/acme/admin/users/43/revoke", json={"reason": "gone"}, headers=ADMIN
    )
    assert revoked.status_code == 200
    bumped = client.post("/v1/tenants/acme/admin/epoch/bump", json={"reason": "r"}, headers=ADMIN)
    assert bumped.json["epoch"] == 2
    other = make_app().test_client()
    # Written before the deletion (see test_a_click_just_before_a_deletion_... for why).
    assert len(get(client, "/v1/tenants/acme/admin/signins")["signins"]) == 1

    assert delete(client, "acme").status_code == 204
    again = made(client, "acme", GLOBEX)

    assert again == {
        "tenant_id": "acme",
        "portal_base_url": GLOBEX,
        "created_at": T0_ISO,
        **DEFAULTS,
    }
    for worker in (client, other):
        assert_problem(worker.get("/v1/admin/settings", headers=old_key), 401, "unauthorized")
        assert get(worker, "/v1/tenants/acme/admin/keys") == {"keys": []}
        assert get(worker, "/v1/tenants/acme/admin/settings") == {
            **DEFAULTS,
            "max_token_ttl_seconds": 604800,
            "portal_base_url": GLOBEX,
            **LINK_SETTINGS,
        }
        assert get(worker, "/v1/tenants/acme/admin/epoch")["epoch"] == 1
        assert get(worker, "/v1/tenants/acme/admin/signins") == {"signins": []}
        assert actions(get(worker, "/v1/tenants/acme/admin/audit")["events"]) == ["tenant.create"]
    for worker in (client, other):
        # The old tokens belong to acme, but to an acme that is gone.
        for t in old_tokens:
            assert_problem(verify(worker, "acme", t), 401, "token_revoked")
    # A new token of the new acme: its own, for user 43 too (no revocation carried over).
    enable(client, "acme")
    fresh = token(client, "acme", "43")
    assert verify(other, "acme", fresh).status_code == 200
    get(other, "/v1/tenants/acme/admin/signins")  # each worker writes its own buffer on a read
    entries = get(client, "/v1/tenants/acme/admin/signins")["signins"]
    assert [(s["user_id"], s["outcome"]) for s in entries if s["outcome"] == "ok"] == [("43", "ok")]


def test_a_click_just_before_a_deletion_never_reaches_the_tenant_made_again(client, monkeypatch):
    # The write-behind buffer holds the entry while the tenant is deleted and made again
    # (in production: for up to FLUSH_SECONDS; here until the next read of a log).
    monkeypatch.setattr("service.signins.FLUSH_SECONDS", 3600.0)
    made(client, "acme")
    enable(client, "acme")
    assert verify(client, "acme", token(client, "acme")).status_code == 200

    assert delete(client, "acme").status_code == 204
    made(client, "acme")

    assert get(client, "/v1/tenants/acme/admin/signins") == {"signins": []}


def test_a_token_of_the_old_tenant_is_revoked_and_logged_in_no_log_of_the_new(client):
    # The new tenant's logs share nothing with the old one's: not even the
    # user ids of the old one's links, clicked after the id was reused.
    made(client, "acme")
    enable(client, "acme")
    old = token(client, "acme")
    assert delete(client, "acme").status_code == 204
    made(client, "acme")

    response = verify(client, "acme", old)

    assert response.status_code == 401 and response.json["code"] == "token_revoked"
    assert get(client, "/v1/tenants/acme/admin/signins") == {"signins": []}


# -- the platform's audit log ------------------------------------------------------------------


def test_the_platform_audit_has_every_tenant_and_key_change_newest_first(frozen, client):
    made(client, "acme")
    patch(client, "acme", {"portal_base_url": GLOBEX, "reason": "rebrand"})
    new_key(client, "acme", "mail", ["issuer"])
    revoke = client.delete(
        "/v1/tenants/acme/admin/keys/mail", json={"reason": "rotated"}, headers=ADMIN
    )
    assert revoke.status_code == 204
    new_key(client, "default", "crm", ["portal"])
    assert delete(client, "acme", "ended").status_code == 204

    events = get(client, "/v1/admin/platform/audit")["events"]

    assert actions(events) == [
        "tenant.delete",
        "key.create",
        "key.revoke",
        "key.create",
        "tenant.update",
        "tenant.create",
    ]
    assert [e["detail"]["tenant_id"] for e in events] == [
        "acme",
        "default",
        "acme",
        "acme",
        "acme",
        "acme",
    ]
    assert all(e["actor"] == "admin-key" and e["at"] == T0_ISO for e in events)
    assert events[0]["detail"]["reason"] == "ended"
    assert events[1]["detail"]["name"] == "crm"
    assert events[1]["detail"]["roles"] == ["portal"]
    assert events[2]["detail"]["name"] == "mail"
    assert events[2]["detail"]["reason"] == "rotated"
    assert events[4]["detail"]["portal_base_url"] == GLOBEX
    assert events[5]["detail"]["portal_base_url"] == ACME
    # No key, digest or other secret in the log.
    assert "tk." not in str(events)


def test_the_platform_audit_holds_no_tenant_s_own_changes(client, links):
    made(client, "acme")
    enable(client, "acme")
    links.enable()
    links.bump()
    client.post("/v1/tenants/acme/admin/epoch/bump", json={"reason": "r"}, headers=ADMIN)
    client.post("/v1/tenants/acme/admin/users/42/revoke", json={"reason": "r"}, headers=ADMIN)

    assert actions(get(client, "/v1/admin/platform/audit")["events"]) == ["tenant.create"]


def test_the_platform_audit_limit(client):
    for tenant_id in ("a", "b", "c"):
        made(client, tenant_id)

    events = get(client, "/v1/admin/platform/audit", limit=2)["events"]

    assert [e["detail"]["tenant_id"] for e in events] == ["c", "b"]
    for bad in ("0", "501", "x", ""):
        response = client.get(
            "/v1/admin/platform/audit", query_string={"limit": bad}, headers=ADMIN
        )
        assert_problem(response, 400, "invalid_request")


def test_a_tenant_s_own_audit_records_its_creation_and_its_keys(client):
    made(client, "acme")
    key = new_key(client, "acme", "boss", ["admin"])
    made_by_tenant = client.post(
        "/v1/admin/keys", json={"name": "mail", "roles": ["issuer"], "reason": "mails"}, headers=key
    )
    assert made_by_tenant.status_code == 201
    revoked = client.delete("/v1/admin/keys/mail?reason=leaked", headers=key)
    assert revoked.status_code == 204

    events = get(client, "/v1/admin/audit", headers=key)["events"]

    assert actions(events) == ["key.revoke", "key.create", "key.create", "tenant.create"]
    assert [e["actor"] for e in events] == ["boss", "boss", "admin-key", "admin-key"]
    assert events[0]["detail"] == {"tenant_id": "acme", "name": "mail", "reason": "leaked"}
    assert events == get(client, "/v1/tenants/acme/admin/audit")["events"]
    # The platform's log names the tenant key that acted.
    platform = get(client, "/v1/admin/platform/audit")["events"]
    assert [(e["action"], e["actor"]) for e in platform[:2]] == [
        ("key.revoke", "boss"),
        ("key.create", "boss"),
    ]


# -- the reaper: the old data goes later ------------------------------------------------------


def fill(client, tenant_id: str) -> None:
    """Give a tenant rows of every kind: keys, revocations, audit events, sign-ins."""
    enable(client, tenant_id)
    for name in ("k1", "k2", "k3"):
        new_key(client, tenant_id, name)
    for user in ("1", "2", "3", "4"):
        t = token(client, tenant_id, user)
        assert verify(client, tenant_id, t).status_code == 200
        body = {"reason": "r"}
        client.post(f"/v1/tenants/{tenant_id}/admin/users/{user}/revoke", json=body, headers=ADMIN)
        assert verify(client, tenant_id, t).status_code == 401
    # Written now, not behind the requests: the sign-in log reads flush it.
    assert len(get(client, f"/v1/tenants/{tenant_id}/admin/signins")["signins"]) == 8


def incarnation(app, tenant_id: str) -> str:
    return app.extensions["store"].tenant(tenant_id).token_state("nobody").incarnation


#: What the SQLite store keeps of a tenant incarnation, one count each.
SQLITE_LEFTOVERS = (
    "SELECT COUNT(*) FROM user_epochs WHERE tenant = ?",
    "SELECT COUNT(*) FROM signins WHERE tenant = ?",
    "SELECT COUNT(*) FROM audit WHERE tenant = ?",
    "SELECT COUNT(*) FROM tenant_keys WHERE tenant = ?",
    "SELECT COUNT(*) FROM trash WHERE incarnation = ?",
)


def leftovers(app, config, inc: str) -> int:
    """Count what the store still holds of the tenant incarnation ``inc``."""
    store = app.extensions["store"]
    if config["STORE_URL"].startswith("sqlite:"):
        conn = sqlite3.connect(store.path)
        try:
            return sum(conn.execute(query, (inc,)).fetchone()[0] for query in SQLITE_LEFTOVERS)
        finally:
            conn.close()
    raw = store.redis
    prefix = config["STORE_KEY_PREFIX"]
    keys = [k for k in raw.scan_iter(match=f"{prefix}*") if f":{inc}:" in k]
    trash = [m for m in raw.smembers(f"{prefix}{{_platform}}:trash") if m.endswith(f" {inc}")]
    return len(keys) + len(trash)


def reap(app, budget: int, max_steps: int = 10_000) -> int:
    """Call ``reap`` until it says nothing is left, at most ``max_steps`` times; return the steps.

    :raises AssertionError: when it never said so.
    """
    store = app.extensions["store"]
    for steps in range(1, max_steps + 1):
        if not store.reap(budget=budget):
            return steps
    raise AssertionError(f"reap still had work after {max_steps} steps")


def reap_some(app, budget: int, max_steps: int = 200) -> None:
    """Call ``reap`` until it says nothing is left or ``max_steps`` times."""
    store = app.extensions["store"]
    for _ in range(max_steps):
        if not store.reap(budget=budget):
            return


def test_reap_removes_a_deleted_tenant_s_data_in_bounded_steps(app, client, config):
    app.extensions["reaper"].close()  # only this test's calls reap
    made(client, "acme")
    fill(client, "acme")
    inc = incarnation(app, "acme")
    assert leftovers(app, config, inc) > 0

    assert delete(client, "acme").status_code == 204
    assert leftovers(app, config, inc) > 0  # the rows go later, not in the request
    steps = reap(app, budget=1)

    assert leftovers(app, config, inc) == 0
    assert steps > 2  # many small steps, not one big one
    assert app.extensions["store"].reap(budget=1) is False


def test_reap_never_touches_a_tenant_made_again_under_the_same_id(app, client, config):
    app.extensions["reaper"].close()
    made(client, "acme")
    fill(client, "acme")
    assert delete(client, "acme").status_code == 204
    assert app.extensions["store"].reap(budget=1) is True  # part-way through
    made(client, "acme")
    fill(client, "acme")
    keys = get(client, "/v1/tenants/acme/admin/keys")
    audit = get(client, "/v1/tenants/acme/admin/audit")
    signins = get(client, "/v1/tenants/acme/admin/signins")
    revoked_token = token(client, "acme", "9")
    client.post("/v1/tenants/acme/admin/users/9/revoke", json={"reason": "r"}, headers=ADMIN)
    acme = app.extensions["store"].tenant("acme")
    user_epochs = {user: acme.token_state(user).user_epoch for user in ("1", "2", "3", "4")}

    reap_some(app, budget=1)

    assert get(client, "/v1/tenants/acme/admin/keys") == keys
    assert get(client, "/v1/tenants/acme/admin/signins") == signins
    assert get(client, "/v1/tenants/acme/admin/audit")["events"][1:] == audit["events"]
    assert_problem(verify(client, "acme", revoked_token), 401, "token_revoked")
    assert verify(client, "acme", token(client, "acme", "9")).status_code == 200
    assert {user: acme.token_state(user).user_epoch for user in user_epochs} == user_epochs
    assert 0 not in user_epochs.values()  # revoked by fill(), and kept


def test_reap_leaves_other_tenants_and_default_alone(app, client, links):
    app.extensions["reaper"].close()
    links.enable()
    default_token = links.token("42")
    links.revoke("7")
    made(client, "acme")
    made(client, "globex")
    fill(client, "acme")
    fill(client, "globex")
    before = {
        path: get(client, path)
        for path in (
            "/v1/admin/audit",
            "/v1/tenants/globex/admin/audit",
            "/v1/tenants/globex/admin/signins",
            "/v1/tenants/globex/admin/keys",
        )
    }

    revoked = app.extensions["store"].token_state("7").user_epoch
    assert revoked != 0
    assert delete(client, "acme").status_code == 204
    reap_some(app, budget=2)

    assert {path: get(client, path) for path in before} == before
    assert links.verify(default_token).status_code == 200
    assert app.extensions["store"].token_state("7").user_epoch == revoked


def test_the_background_reaper_removes_a_deleted_tenant_s_data(app, client, config, monkeypatch):
    # Small steps, so that the thread takes many.
    monkeypatch.setattr("service.reaper.REAP_BUDGET", 1)
    made(client, "acme")
    fill(client, "acme")
    inc = incarnation(app, "acme")

    assert delete(client, "acme").status_code == 204  # kicks the reaper

    # A bounded poll: how fast the thread is is not the point, that it finishes is.
    deadline = time.monotonic() + REAPER_DEADLINE_SECONDS
    while leftovers(app, config, inc) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert leftovers(app, config, inc) == 0


def test_a_new_token_carries_its_tenant_s_purpose(client):
    made(client, "acme")
    enable(client, "acme")

    claims = jwt.decode(token(client, "acme"), options={"verify_signature": False})

    assert claims["pur"] == tenant_claim("acme")
    assert claims["pur"] not in (tenant_claim("default"), LEGACY_PURPOSE)
