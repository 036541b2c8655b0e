"""``/v1/admin/keys``: a tenant's own API keys, made, listed and revoked through the API."""

from __future__ import annotations

import base64
import hashlib
import re
import uuid

import pytest

from tests.support.tenants import ACME, ADMIN, LINK, assert_problem, bearer, enable

T0_ISO = "2026-11-25T10:00:00Z"
#: "tk." + tenant + "." + 43 url-safe characters (32 random bytes).
KEY_TEXT = r"tk\.{tenant}\.[A-Za-z0-9_-]{{43}}"


def make_tenant(client, tenant_id="acme") -> None:
    body = {"tenant_id": tenant_id, "portal_base_url": ACME, "reason": "keys test"}
    response = client.post("/v1/admin/tenants", json=body, headers=ADMIN)
    assert response.status_code == 201, response.json


def keys_path(tenant: str | None) -> str:
    return "/v1/admin/keys" if tenant is None else f"/v1/tenants/{tenant}/admin/keys"


def create_key(client, name="mail", roles=("issuer",), *, tenant=None, headers=ADMIN, **extra):
    body = {"name": name, "roles": list(roles), "reason": "keys test", **extra}
    return client.post(keys_path(tenant), json=body, headers=headers)


def key_of(client, name="mail", roles=("issuer",), *, tenant=None, headers=ADMIN) -> dict:
    response = create_key(client, name, roles, tenant=tenant, headers=headers)
    assert response.status_code == 201, response.json
    return bearer(response.json["key"])


def listed(client, tenant=None, headers=ADMIN) -> list[dict]:
    response = client.get(keys_path(tenant), headers=headers)
    assert response.status_code == 200, response.json
    return response.json["keys"]


def revoke(client, name, *, tenant=None, headers=ADMIN, reason="keys test"):
    return client.delete(f"{keys_path(tenant)}/{name}", json={"reason": reason}, headers=headers)


# -- making a key -----------------------------------------------------------------


@pytest.mark.parametrize("tenant", ("acme", "default"))
def test_a_platform_admin_makes_a_key_of_a_named_tenant(frozen, client, tenant):
    if tenant != "default":
        make_tenant(client, tenant)

    response = create_key(client, "mail", ["portal", "issuer"], tenant=tenant)

    assert response.status_code == 201
    assert set(response.json) == {"name", "roles", "key", "created_at"}
    assert response.json["name"] == "mail"
    assert sorted(response.json["roles"]) == ["issuer", "portal"]
    assert response.json["created_at"] == T0_ISO
    assert re.fullmatch(KEY_TEXT.format(tenant=tenant), response.json["key"])


def test_unprefixed_a_platform_key_makes_keys_of_default(client):
    key = key_of(client, "crm", ["admin"])

    assert [k["name"] for k in listed(client, "default")] == ["crm"]
    # It acts in default: its settings, not another tenant's.
    assert (
        client.get("/v1/admin/settings", headers=key).json["portal_base_url"]
        == (client.get("/v1/admin/settings", headers=ADMIN).json["portal_base_url"])
    )


def test_each_key_is_new_and_random(client):
    make_tenant(client)
    texts = {create_key(client, f"k{n}", tenant="acme").json["key"] for n in range(5)}

    assert len(texts) == 5


def test_a_key_made_works_at_once_in_its_tenant_only(client, make_app):
    make_tenant(client)
    enable(client)
    other = make_app().test_client()

    issuer = key_of(client, "mail", ["issuer"], tenant="acme")

    for worker in (client, other):
        response = worker.post("/v1/links", json=LINK, headers=issuer)
        assert response.status_code == 200, response.json
        assert response.json["url"].startswith(ACME + "/?auto_login=")
        prefixed = worker.post("/v1/tenants/acme/links", json=LINK, headers=issuer)
        assert prefixed.status_code == 200
        assert_problem(
            worker.post("/v1/tenants/default/links", json=LINK, headers=issuer), 403, "forbidden"
        )


def test_the_key_is_shown_once_and_never_listed(client):
    make_tenant(client)
    shown = create_key(client, "mail", ["issuer"], tenant="acme").json["key"]
    digest = hashlib.sha256(shown.encode()).digest()
    secrets = [
        shown,
        shown.rsplit(".", 1)[1],
        digest.hex(),
        base64.b64encode(digest).decode(),
        base64.urlsafe_b64encode(digest).decode().rstrip("="),
    ]

    for tenant, headers in (
        ("acme", ADMIN),
        (None, key_of(client, "boss", ["admin"], tenant="acme")),
    ):
        response = client.get(keys_path(tenant), headers=headers)
        assert response.status_code == 200
        assert not any(s in response.get_data(as_text=True) for s in secrets)
        for entry in response.json["keys"]:
            assert set(entry) == {"name", "roles", "created_at", "last_used_at"}
    for path in ("/v1/tenants/acme/admin/audit", "/v1/admin/platform/audit"):
        text = client.get(path, headers=ADMIN).get_data(as_text=True)
        assert not any(s in text for s in secrets)


def test_the_list_is_by_name_with_roles_and_times(frozen, client):
    make_tenant(client)
    for name, roles in (
        ("zeta", ["admin"]),
        ("alpha", ["portal", "issuer"]),
        ("Mid.1_x", ["portal"]),
    ):
        create_key(client, name, roles, tenant="acme")

    assert listed(client, "acme") == [
        {"name": "Mid.1_x", "roles": ["portal"], "created_at": T0_ISO, "last_used_at": None},
        {
            "name": "alpha",
            "roles": ["issuer", "portal"],
            "created_at": T0_ISO,
            "last_used_at": None,
        },
        {"name": "zeta", "roles": ["admin"], "created_at": T0_ISO, "last_used_at": None},
    ]
    assert listed(client, "default") == []


def test_last_used_at_is_null_until_the_key_is_used(frozen, client):
    make_tenant(client)
    # A name of this test alone: a process writes last_used_at once a minute per key.
    name = f"portal-{uuid.uuid4().hex[:8]}"
    key = key_of(client, name, ["portal"], tenant="acme")
    assert listed(client, "acme")[0]["last_used_at"] is None

    response = client.post("/v1/tokens/verify", json={"token": "x.y.z"}, headers=key)

    assert response.status_code == 401  # used all the same
    assert listed(client, "acme")[0]["last_used_at"] == T0_ISO


def test_last_used_at_of_a_key_made_again_under_its_name_is_set_on_first_use(client):
    make_tenant(client)
    name = f"portal-{uuid.uuid4().hex[:8]}"
    first = key_of(client, name, ["portal"], tenant="acme")
    used = client.post("/v1/tokens/verify", json={"token": "x.y.z"}, headers=first)
    assert used.status_code == 401  # a known key: its use is recorded
    assert listed(client, "acme")[0]["last_used_at"] is not None
    assert revoke(client, name, tenant="acme").status_code == 204

    again = key_of(client, name, ["portal"], tenant="acme")
    client.post("/v1/tokens/verify", json={"token": "x.y.z"}, headers=again)

    assert listed(client, "acme")[0]["last_used_at"] is not None


def test_a_name_taken_in_the_tenant_is_key_exists(client):
    make_tenant(client)
    original = key_of(client, "mail", ["issuer"], tenant="acme")

    response = create_key(client, "mail", ["admin"], tenant="acme")

    assert_problem(response, 409, "key_exists")
    assert listed(client, "acme")[0]["roles"] == ["issuer"]
    # The first key still works, and has its own roles.
    assert client.get("/v1/admin/settings", headers=original).status_code == 403


def test_the_same_name_in_two_tenants_is_two_keys(client):
    make_tenant(client, "acme")
    make_tenant(client, "globex")

    acme = key_of(client, "mail", ["admin"], tenant="acme")
    globex = key_of(client, "mail", ["admin"], tenant="globex")
    default = key_of(client, "mail", ["admin"])

    assert acme != globex != default
    for key, tenant in ((acme, "acme"), (globex, "globex"), (default, "default")):
        # Each key names its own tenant's keys.
        assert client.get(f"/v1/tenants/{tenant}/admin/keys", headers=key).status_code == 200


@pytest.mark.parametrize("name", ("a", "A-Z.a_z-0.9", "x" * 64, "mail.v2", "---", "..."))
def test_good_key_names(client, name):
    assert create_key(client, name).status_code == 201
    assert [k["name"] for k in listed(client)] == [name]


@pytest.mark.parametrize(
    "name", ("", "a b", "a/b", "a:b", "a@b", "é", "x" * 65, " mail", None, 42, ["mail"], True)
)
def test_a_bad_key_name_is_invalid_request_and_makes_nothing(client, name):
    response = create_key(client, name)

    assert_problem(response, 400, "invalid_request")
    assert "name" in response.json["detail"]
    assert listed(client) == []


@pytest.mark.parametrize(
    "roles",
    ([], "issuer", ["root"], ["issuer", "root"], [1], [None], None, {"issuer": True}, ["Admin"]),
)
def test_bad_roles_are_invalid_request_and_make_nothing(client, roles):
    response = client.post(
        "/v1/admin/keys", json={"name": "mail", "roles": roles, "reason": "r"}, headers=ADMIN
    )

    assert_problem(response, 400, "invalid_request")
    assert "roles" in response.json["detail"]
    assert listed(client) == []


@pytest.mark.parametrize("body", ({"name": "mail"}, {"roles": ["issuer"]}))
def test_a_missing_field_is_invalid_request(client, body):
    response = client.post("/v1/admin/keys", json={**body, "reason": "r"}, headers=ADMIN)

    assert_problem(response, 400, "invalid_request")
    assert listed(client) == []


@pytest.mark.parametrize("reason", (None, "", "   ", "x" * 501, 5))
def test_a_key_without_a_proper_reason_is_invalid_request(client, reason):
    body = {"name": "mail", "roles": ["issuer"]}
    if reason is not None:
        body["reason"] = reason

    assert_problem(client.post("/v1/admin/keys", json=body, headers=ADMIN), 400, "invalid_request")
    assert listed(client) == []


# -- revoking a key ----------------------------------------------------------------


def test_revoke_answers_204_and_the_key_is_unknown_on_every_worker(client, make_app):
    make_tenant(client)
    key = key_of(client, "boss", ["admin", "issuer"], tenant="acme")
    other = make_app().test_client()
    assert other.get("/v1/admin/settings", headers=key).status_code == 200  # known there

    response = revoke(client, "boss", tenant="acme")

    assert response.status_code == 204
    assert response.data == b""
    for worker in (client, other):
        for method, path in (("GET", "/v1/admin/settings"), ("POST", "/v1/links")):
            answer = worker.open(path, method=method, json=LINK, headers=key)
            assert_problem(answer, 401, "unauthorized")
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert listed(client, "acme") == []


def test_a_tenant_admin_revokes_its_own_keys_with_a_reason_in_the_query(client):
    make_tenant(client)
    boss = key_of(client, "boss", ["admin"], tenant="acme")
    mail = key_of(client, "mail", ["issuer"], headers=boss)

    response = client.delete("/v1/admin/keys/mail?reason=leaked", headers=boss)

    assert response.status_code == 204
    assert_problem(client.post("/v1/links", json=LINK, headers=mail), 401, "unauthorized")
    assert [k["name"] for k in listed(client, "acme")] == ["boss"]
    event = client.get("/v1/admin/audit", headers=boss).json["events"][0]
    assert (event["action"], event["actor"], event["detail"]["reason"]) == (
        "key.revoke",
        "boss",
        "leaked",
    )


def test_a_key_may_revoke_itself(client):
    make_tenant(client)
    boss = key_of(client, "boss", ["admin"], tenant="acme")

    assert revoke(client, "boss", headers=boss).status_code == 204
    assert_problem(client.get("/v1/admin/keys", headers=boss), 401, "unauthorized")


@pytest.mark.parametrize("tenant", ("acme", None))
def test_revoking_no_such_key_is_key_not_found(client, tenant):
    make_tenant(client)
    key_of(client, "mail", tenant="acme")

    assert_problem(revoke(client, "nope", tenant=tenant), 404, "key_not_found")
    # A name of acme's is no key of default's.
    if tenant is None:
        assert_problem(revoke(client, "mail"), 404, "key_not_found")
    assert revoke(client, "mail", tenant="acme").status_code == 204
    assert_problem(revoke(client, "mail", tenant="acme"), 404, "key_not_found")


def test_revoking_a_malformed_name_is_invalid_request(client):
    assert_problem(revoke(client, "a:b"), 400, "invalid_request")
    assert_problem(revoke(client, "x" * 65), 400, "invalid_request")


@pytest.mark.parametrize("body", (None, {}, {"reason": ""}, {"reason": 3}))
def test_revoking_without_a_reason_is_invalid_request_and_keeps_the_key(client, body):
    make_tenant(client)
    key = key_of(client, "boss", ["admin"], tenant="acme")

    response = client.delete("/v1/tenants/acme/admin/keys/boss", json=body, headers=ADMIN)

    assert_problem(response, 400, "invalid_request")
    assert client.get("/v1/admin/keys", headers=key).status_code == 200


def test_a_key_made_again_under_a_revoked_name_is_a_new_key(client):
    make_tenant(client)
    old = key_of(client, "mail", ["admin"], tenant="acme")
    revoke(client, "mail", tenant="acme")

    new = key_of(client, "mail", ["admin"], tenant="acme")

    assert new != old
    assert_problem(client.get("/v1/admin/keys", headers=old), 401, "unauthorized")
    assert client.get("/v1/admin/keys", headers=new).status_code == 200


# -- roles inside the tenant -----------------------------------------------------------

#: (method, path, body, roles that may call it), unprefixed: the key's own tenant.
TENANT_CALLS = (
    ("POST", "/v1/links", LINK, {"issuer"}),
    ("POST", "/v1/links/batch", {"items": [LINK]}, {"issuer"}),
    ("POST", "/v1/tokens/verify", {"token": "x.y.z"}, {"portal"}),
    ("POST", "/v1/scrub", {"text": "no links"}, {"issuer", "portal"}),
    ("GET", "/v1/admin/settings", None, {"admin"}),
    ("PATCH", "/v1/admin/settings", {"token_ttl_seconds": 3600}, {"admin"}),
    ("GET", "/v1/admin/epoch", None, {"admin"}),
    ("POST", "/v1/admin/epoch/bump", {"reason": "r"}, {"admin"}),
    ("POST", "/v1/admin/users/42/revoke", {"reason": "r"}, {"admin"}),
    ("GET", "/v1/admin/signins", None, {"admin"}),
    ("GET", "/v1/admin/audit", None, {"admin"}),
    ("GET", "/v1/admin/keys", None, {"admin"}),
    ("POST", "/v1/admin/keys", {"name": "new", "roles": ["issuer"], "reason": "r"}, {"admin"}),
    ("DELETE", "/v1/admin/keys/victim", {"reason": "r"}, {"admin"}),
)


def _role_cases(allowed: bool):
    for method, path, body, roles in TENANT_CALLS:
        for role in ("issuer", "portal", "admin"):
            if (role in roles) == allowed:
                yield pytest.param(method, path, body, role, id=f"{role} {method} {path}")


@pytest.mark.parametrize(("method", "path", "body", "role"), list(_role_cases(allowed=False)))
def test_a_tenant_key_without_the_role_is_forbidden(client, method, path, body, role):
    make_tenant(client)
    key = key_of(client, "caller", [role], tenant="acme")
    key_of(client, "victim", ["issuer"], tenant="acme")
    audit = client.get("/v1/tenants/acme/admin/audit", headers=ADMIN).json

    assert_problem(client.open(path, method=method, json=body, headers=key), 403, "forbidden")
    assert client.get("/v1/tenants/acme/admin/audit", headers=ADMIN).json == audit
    assert [k["name"] for k in listed(client, "acme")] == ["caller", "victim"]


@pytest.mark.parametrize(("method", "path", "body", "role"), list(_role_cases(allowed=True)))
def test_a_tenant_key_with_the_role_gets_through(client, method, path, body, role):
    make_tenant(client)
    key = key_of(client, "caller", [role], tenant="acme")
    key_of(client, "victim", ["issuer"], tenant="acme")

    response = client.open(path, method=method, json=body, headers=key)

    # verify answers 401 token_invalid for its dummy token: past the key checks all the same.
    assert response.status_code in (200, 201, 204, 401), response.json
    if response.status_code == 401:
        assert response.json["code"] == "token_invalid"


def test_what_a_tenant_key_does_is_done_in_its_tenant_and_by_its_name(frozen, client):
    make_tenant(client)
    boss = key_of(client, "boss", ["admin"], tenant="acme")

    bumped = client.post("/v1/admin/epoch/bump", json={"reason": "leak"}, headers=boss)

    assert bumped.json == {
        "epoch": 2,
        "changed_at": T0_ISO,
        "changed_by": "boss",
        "reason": "leak",
    }
    assert client.get("/v1/tenants/acme/admin/epoch", headers=ADMIN).json == bumped.json
    assert client.get("/v1/admin/epoch", headers=ADMIN).json["epoch"] == 1


def test_a_key_made_by_a_tenant_admin_is_of_its_tenant(client):
    make_tenant(client)
    boss = key_of(client, "boss", ["admin"], tenant="acme")

    response = create_key(client, "mail", ["issuer"], headers=boss)

    assert response.status_code == 201
    assert response.json["key"].startswith("tk.acme.")
    assert [k["name"] for k in listed(client, "acme")] == ["boss", "mail"]
    assert listed(client, "default") == []


@pytest.mark.parametrize(
    "presented",
    (
        "tk.acme.",
        "tk.acme",
        "tk.",
        "tk..abc",
        "tk.ACME.{secret}",
        "tk.globex.{secret}",
        "tk.default.{secret}",
        "tk.acme.{secret}x",
        "tk.acme.{secret}.",
        "TK.acme.{secret}",
        "{secret}",
    ),
)
def test_a_key_text_changed_in_any_way_is_unknown(client, presented):
    make_tenant(client, "acme")
    make_tenant(client, "globex")
    text = create_key(client, "boss", ["admin"], tenant="acme").json["key"]
    secret = text.rsplit(".", 1)[1]

    response = client.get("/v1/admin/settings", headers=bearer(presented.format(secret=secret)))

    assert_problem(response, 401, "unauthorized")
    assert client.get("/v1/admin/settings", headers=bearer(text)).status_code == 200
