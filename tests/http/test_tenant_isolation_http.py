"""Tenants apart: the order of checks on a tenant's paths, and nothing of one in another.

Every tenant-scoped call exists under ``/v1/tenants/{tenant_id}/``; a key
acts in its own tenant (a tenant key) or in any (a platform key). These
tests call each of them across tenants and check that the answer is the
contract's and that the other tenant did not change.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

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
    get,
    issue,
    token,
    verify,
)

OPS = auth("ops-key")  # a platform key with every role
PORTALS = {"acme": ACME, "globex": GLOBEX, "default": PORTAL}

#: Every tenant-scoped call: (method, path after /v1/tenants/{t}, body, roles that may call it).
TENANT_CALLS = (
    ("POST", "/links", LINK, {"issuer"}),
    ("POST", "/links/batch", {"items": [LINK]}, {"issuer"}),
    ("POST", "/tokens/verify", {"token": "x.y.z"}, {"portal"}),
    ("POST", "/scrub", {"text": "no links here"}, {"issuer", "portal"}),
    ("GET", "/admin/settings", None, {"admin"}),
    ("PATCH", "/admin/settings", {"auto_login_enabled": False, "token_ttl_seconds": 60}, {"admin"}),
    ("GET", "/admin/epoch", None, {"admin"}),
    ("POST", "/admin/epoch/bump", {"reason": "cross-tenant"}, {"admin"}),
    ("POST", "/admin/users/42/revoke", {"reason": "cross-tenant"}, {"admin"}),
    ("GET", "/admin/signins?user_id=42", None, {"admin"}),
    ("GET", "/admin/audit", None, {"admin"}),
    ("GET", "/admin/keys", None, {"admin"}),
    ("POST", "/admin/keys", {"name": "intruder", "roles": ["admin"], "reason": "r"}, {"admin"}),
    ("DELETE", "/admin/keys/all", {"reason": "cross-tenant"}, {"admin"}),
)
CALL_PARAMS = [
    pytest.param(method, path, body, roles, id=f"{method} {path}")
    for method, path, body, roles in TENANT_CALLS
]
#: A platform key of a single role that lacks each call's role.
LACKING = {
    frozenset({"issuer"}): "portal-key",
    frozenset({"portal"}): "issuer-key",
    frozenset({"issuer", "portal"}): "admin-key",
    frozenset({"admin"}): "issuer-key",
}
MALFORMED = ("Acme", "a_b", "-a", "a-", "a" * 64, "acme.eu")


def call(client, method, path, body, headers, tenant=None):
    prefix = "" if tenant is None else f"/tenants/{tenant}"
    return client.open(f"/v1{prefix}{path}", method=method, json=body, headers=headers)


def make_tenant(client, tenant_id, portal) -> dict[str, str]:
    """Create a tenant with auto-login on; return the headers of its key with every role."""
    body = {"tenant_id": tenant_id, "portal_base_url": portal, "reason": "isolation test"}
    assert client.post("/v1/admin/tenants", json=body, headers=ADMIN).status_code == 201
    on = client.patch(
        f"/v1/tenants/{tenant_id}/admin/settings", json={"auto_login_enabled": True}, headers=ADMIN
    )
    assert on.status_code == 200, on.json
    made = client.post(
        f"/v1/tenants/{tenant_id}/admin/keys",
        json={"name": "all", "roles": ["issuer", "portal", "admin"], "reason": "isolation test"},
        headers=ADMIN,
    )
    assert made.status_code == 201, made.json
    return bearer(made.json["key"])


@pytest.fixture
def keys(client) -> dict[str, dict[str, str]]:
    """acme and globex, auto-login on, each with a key of every role named "all"."""
    return {
        "acme": make_tenant(client, "acme", ACME),
        "globex": make_tenant(client, "globex", GLOBEX),
    }


def state(client, tenant) -> dict:
    """Everything an admin can read of ``tenant``, through the platform admin key."""
    base = f"/v1/tenants/{tenant}/admin"
    # Each read of a log writes this process's sign-in buffer first.
    return {
        name: get(client, f"{base}/{name}")
        for name in ("settings", "epoch", "audit", "signins", "keys")
    }


def signins(client, tenant) -> list[dict]:
    return get(client, f"/v1/tenants/{tenant}/admin/signins")["signins"]


# -- the order of checks ----------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body", "roles"), CALL_PARAMS)
@pytest.mark.parametrize("tenant", ("acme", "nope", "Bad_Id", "default"))
@pytest.mark.parametrize(
    "headers",
    ({}, bearer("not-a-key"), bearer("tk.acme.not-a-key"), {"Authorization": "Basic eDp5"}),
    ids=("none", "unknown", "unknown-tenant-key", "basic"),
)
def test_no_or_an_unknown_key_is_401_first(
    client, keys, method, path, body, roles, tenant, headers
):
    response = call(client, method, path, body, headers, tenant)

    assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("method", "path", "body", "roles"), CALL_PARAMS)
@pytest.mark.parametrize("tenant", ("acme", "nope", "Bad_Id"))
def test_a_platform_key_without_the_role_is_403_before_the_tenant_is_looked_at(
    client, keys, method, path, body, roles, tenant
):
    headers = auth(LACKING[frozenset(roles)])

    assert_problem(call(client, method, path, body, headers, tenant), 403, "forbidden")


@pytest.mark.parametrize(("method", "path", "body", "roles"), CALL_PARAMS)
def test_a_tenant_key_naming_any_other_tenant_gets_one_and_the_same_403(
    client, keys, method, path, body, roles
):
    answers = {
        tenant: call(client, method, path, body, keys["acme"], tenant)
        for tenant in ("globex", "default", "nope", "Bad_Id", "a" * 64)
    }

    for response in answers.values():
        assert_problem(response, 403, "forbidden")
    # A tenant learns nothing of the others: not even whether they exist.
    seen = {
        (r.get_data(), tuple(sorted((k, v) for k, v in r.headers.items() if k != "X-Request-Id")))
        for r in answers.values()
    }
    assert len(seen) == 1


@pytest.mark.parametrize(("method", "path", "body", "roles"), CALL_PARAMS)
def test_a_tenant_key_naming_its_own_tenant_gets_through(client, keys, method, path, body, roles):
    response = call(client, method, path, body, keys["acme"], "acme")

    # verify's dummy token is refused as a token: past every key and tenant check.
    assert response.status_code in (200, 201, 204, 401), response.json
    if response.status_code == 401:
        assert response.json["code"] == "token_invalid"


@pytest.mark.parametrize(("method", "path", "body", "roles"), CALL_PARAMS)
@pytest.mark.parametrize("tenant", MALFORMED)
def test_a_platform_key_naming_a_malformed_id_is_invalid_request(
    client, keys, method, path, body, roles, tenant
):
    response = call(client, method, path, body, OPS, tenant)

    assert_problem(response, 400, "invalid_request")
    assert "tenant_id" in response.json["detail"]


@pytest.mark.parametrize(("method", "path", "body", "roles"), CALL_PARAMS)
@pytest.mark.parametrize("deleted", (False, True))
def test_a_platform_key_naming_no_such_tenant_is_tenant_not_found(
    client, keys, method, path, body, roles, deleted
):
    tenant = "nope"
    if deleted:
        tenant = "globex"
        response = client.delete("/v1/admin/tenants/globex?reason=gone", headers=ADMIN)
        assert response.status_code == 204

    assert_problem(call(client, method, path, body, OPS, tenant), 404, "tenant_not_found")
    assert get(client, "/v1/admin/tenants", prefix="nope")["tenants"] == []


@pytest.mark.parametrize(
    ("path", "body"),
    (
        ("/links", b"{not json"),
        ("/links", b"[]"),
        ("/links", b'{"user_id": 42}'),
        ("/links/batch", b"{"),
        ("/tokens/verify", b"{"),
        ("/scrub", b"{"),
        ("/admin/settings", b"{"),
        ("/admin/epoch/bump", b"{}"),
        ("/admin/keys", b"{"),
    ),
)
def test_the_body_is_read_only_after_the_tenant(client, keys, path, body):
    method = "PATCH" if path == "/admin/settings" else "POST"

    def send(tenant, headers):
        return client.open(
            f"/v1/tenants/{tenant}{path}",
            method=method,
            data=body,
            content_type="application/json",
            headers=headers,
        )

    assert_problem(send("nope", OPS), 404, "tenant_not_found")
    assert_problem(send("Bad_Id", OPS), 400, "invalid_request")
    assert_problem(send("nope", keys["acme"]), 403, "forbidden")
    assert_problem(send("globex", keys["acme"]), 403, "forbidden")
    own = send("acme", keys["acme"])
    assert own.status_code == 400
    assert own.json["code"] in ("invalid_json", "invalid_request")


# -- nothing crosses over -------------------------------------------------------------


def _cross_calls():
    for method, path, body, _roles in TENANT_CALLS:
        yield pytest.param(method, path, body, id=f"{method} {path}")


@pytest.mark.parametrize(("method", "path", "body"), list(_cross_calls()))
def test_a_tenant_key_on_another_tenant_s_path_changes_nothing_there(
    frozen, client, keys, method, path, body
):
    # Something of globex's own to lose: a live link, a sign-in.
    assert verify(client, "globex", token(client, "globex")).status_code == 200
    if path == "/tokens/verify":
        body = {"token": token(client, "globex")}
    before = state(client, "globex")

    response = call(client, method, path, body, keys["acme"], "globex")

    assert_problem(response, 403, "forbidden")
    assert state(client, "globex") == before


@pytest.mark.parametrize("how", ("unprefixed-tenant-key", "prefixed-platform-key", "own-path"))
def test_a_token_of_one_tenant_is_invalid_in_another_and_logged_nowhere(client, keys, how):
    acme_token = token(client, "acme", "42")
    before = {t: signins(client, t) for t in ("acme", "globex", "default")}

    if how == "unprefixed-tenant-key":
        response = verify(client, None, acme_token, keys["globex"])
    elif how == "prefixed-platform-key":
        response = verify(client, "globex", acme_token)
    else:
        response = verify(client, "globex", acme_token, keys["globex"])

    assert_problem(response, 401, "token_invalid")
    assert {t: signins(client, t) for t in before} == before
    # In its own tenant the same token is good.
    assert verify(client, None, acme_token, keys["acme"]).status_code == 200


@pytest.mark.parametrize(("issued_in", "verified_in"), (("acme", "default"), ("default", "acme")))
def test_default_and_a_tenant_refuse_each_other_s_tokens(client, keys, issued_in, verified_in):
    on = client.patch("/v1/admin/settings", json={"auto_login_enabled": True}, headers=ADMIN)
    assert on.status_code == 200
    issued = token(client, issued_in)

    assert_problem(verify(client, verified_in, issued), 401, "token_invalid")
    if verified_in == "default":
        assert_problem(verify(client, None, issued), 401, "token_invalid")
    assert verify(client, issued_in, issued).status_code == 200


def test_another_tenant_s_token_is_invalid_even_when_expired(frozen, client, keys):
    issued = token(client, "acme", ttl_seconds=60)
    frozen.tick(timedelta(minutes=10))

    assert_problem(verify(client, "globex", issued), 401, "token_invalid")
    assert_problem(verify(client, "acme", issued), 401, "token_expired")
    assert signins(client, "globex") == []
    assert [s["outcome"] for s in signins(client, "acme")] == ["token_expired"]


def test_a_bump_in_one_tenant_leaves_the_others_tokens_alone(client, keys, links):
    links.enable()
    tokens = {t: token(client, t) for t in ("acme", "globex", "default")}

    bumped = client.post("/v1/admin/epoch/bump", json={"reason": "leak"}, headers=keys["globex"])
    assert bumped.json["epoch"] == 2

    assert_problem(verify(client, "globex", tokens["globex"]), 401, "token_revoked")
    assert verify(client, "acme", tokens["acme"]).status_code == 200
    assert verify(client, "default", tokens["default"]).status_code == 200
    assert get(client, "/v1/tenants/acme/admin/epoch")["epoch"] == 1
    assert get(client, "/v1/admin/epoch")["epoch"] == 1


def test_a_bump_of_default_leaves_the_tenants_alone(client, keys, links):
    links.enable()
    tokens = {t: token(client, t) for t in ("acme", "default")}

    assert links.bump().status_code == 200

    assert_problem(verify(client, "default", tokens["default"]), 401, "token_revoked")
    assert verify(client, "acme", tokens["acme"]).status_code == 200


def test_user_42_revoked_in_one_tenant_still_signs_in_in_another(client, keys):
    acme_42, globex_42, acme_43 = (
        token(client, "acme"),
        token(client, "globex"),
        token(client, "acme", "43"),
    )

    revoked = client.post("/v1/admin/users/42/revoke", json={"reason": "r"}, headers=keys["acme"])
    assert revoked.status_code == 200

    assert_problem(verify(client, "acme", acme_42), 401, "token_revoked")
    assert verify(client, "globex", globex_42).status_code == 200
    assert verify(client, "acme", acme_43).status_code == 200
    assert verify(client, "globex", token(client, "globex")).status_code == 200


def test_settings_are_per_tenant(client, keys):
    changed = client.patch(
        "/v1/admin/settings",
        json={"auto_login_enabled": False, "token_ttl_seconds": 3600},
        headers=keys["globex"],
    )
    assert changed.status_code == 200
    assert changed.json["portal_base_url"] == GLOBEX

    assert get(client, "/v1/tenants/acme/admin/settings") == {
        "auto_login_enabled": True,
        "token_ttl_seconds": 259200,
        "max_token_ttl_seconds": 604800,
        "portal_base_url": ACME,
        **LINK_SETTINGS,
    }
    assert get(client, "/v1/admin/settings")["auto_login_enabled"] is False
    assert get(client, "/v1/admin/settings")["token_ttl_seconds"] == 259200
    plain = issue(client, "globex").json
    assert (plain["auto_login"], plain["reason"]) == (False, "disabled")
    assert issue(client, "acme").json["auto_login"] is True
    # Each tenant's audit has its own change only.
    acme_actions = [e["action"] for e in get(client, "/v1/tenants/acme/admin/audit")["events"]]
    assert acme_actions == ["key.create", "settings.update", "tenant.create"]


def test_each_tenant_s_lifetime_is_its_own(frozen, client, keys):
    client.patch("/v1/tenants/acme/admin/settings", json={"token_ttl_seconds": 600}, headers=ADMIN)

    acme = issue(client, "acme").json
    globex = issue(client, "globex").json

    assert acme["expires_at"] == "2026-11-25T10:10:00Z"
    assert globex["expires_at"] == "2026-11-28T10:00:00Z"


@pytest.mark.parametrize("tenant", ("acme", "globex", "default"))
def test_links_go_to_their_tenant_s_portal(client, keys, tenant):
    client.patch("/v1/admin/settings", json={"auto_login_enabled": True}, headers=ADMIN)

    one = issue(client, tenant, target="/tickets/7").json
    plain = issue(client, tenant, recipients={"to": ["a@example.com", "b@example.com"]}).json
    batch = client.post(
        f"/v1/tenants/{tenant}/links/batch", json={"items": [LINK, LINK]}, headers=ISSUER
    ).json

    assert one["url"].startswith(PORTALS[tenant] + "/tickets/7?auto_login=")
    assert plain["url"] == PORTALS[tenant] + "/"
    assert all(item["url"].startswith(PORTALS[tenant] + "/?auto_login=") for item in batch["items"])


def test_a_tenant_key_issues_to_its_own_portal_unprefixed(client, keys):
    response = client.post("/v1/links", json=LINK, headers=keys["globex"])

    assert response.status_code == 200
    assert response.json["url"].startswith(GLOBEX + "/?auto_login=")


@pytest.mark.parametrize("path", ("/v1/admin/settings", "/v1/tenants/default/admin/settings"))
def test_default_s_settings_show_the_deployment_s_portal(client, path):
    assert get(client, path) == {
        "auto_login_enabled": False,
        "token_ttl_seconds": 259200,
        "max_token_ttl_seconds": 604800,
        "portal_base_url": PORTAL,
        **LINK_SETTINGS,
    }


def test_a_tenant_s_settings_show_its_portal(client, keys):
    assert get(client, "/v1/admin/settings", headers=keys["acme"])["portal_base_url"] == ACME
    assert get(client, "/v1/tenants/globex/admin/settings")["portal_base_url"] == GLOBEX


@pytest.mark.parametrize(
    ("path", "who"),
    (
        ("/v1/admin/settings", "platform"),
        ("/v1/tenants/acme/admin/settings", "platform"),
        ("/v1/admin/settings", "acme"),
        ("/v1/tenants/acme/admin/settings", "acme"),
    ),
)
@pytest.mark.parametrize(
    "body",
    (
        {"portal_base_url": "https://evil.example.com"},
        {"portal_base_url": ACME},
        {"auto_login_enabled": False, "portal_base_url": "https://evil.example.com"},
    ),
)
def test_portal_base_url_is_read_only_in_the_settings(client, keys, path, who, body):
    headers = ADMIN if who == "platform" else keys["acme"]
    before = get(client, path, headers=headers)

    response = client.patch(path, json=body, headers=headers)

    assert_problem(response, 400, "invalid_setting")
    assert get(client, path, headers=headers) == before


def test_scrub_removes_any_tenant_s_token_and_reports_its_own_users_only(client, keys):
    acme_token = token(client, "acme", "42")
    globex_token = token(client, "globex", "43")
    text = (
        f"a: {GLOBEX}/t/1?auto_login={acme_token} "
        f"b: {GLOBEX}/t/2?auto_login={globex_token} "
        f"c: {ACME}/t/3?auto_login={acme_token}"
    )

    in_globex = client.post("/v1/scrub", json={"text": text}, headers=keys["globex"]).json

    # Only globex's portal links are globex's business; both tokens in them go.
    assert in_globex["text"] == (
        f"a: {GLOBEX}/t/1 b: {GLOBEX}/t/2 c: {ACME}/t/3?auto_login={acme_token}"
    )
    assert in_globex["removed"] == 2
    assert in_globex["user_ids"] == ["43"]
    in_acme = client.post("/v1/tenants/acme/scrub", json={"text": text}, headers=PORTAL_KEY).json
    assert in_acme["removed"] == 1
    assert in_acme["user_ids"] == ["42"]


def test_audit_and_sign_in_logs_are_per_tenant(client, keys):
    assert verify(client, "acme", token(client, "acme", "7")).status_code == 200
    client.post("/v1/admin/epoch/bump", json={"reason": "acme only"}, headers=keys["acme"])

    assert [s["user_id"] for s in signins(client, "acme")] == ["7"]
    assert signins(client, "globex") == []
    assert signins(client, "default") == []
    globex_audit = get(client, "/v1/tenants/globex/admin/audit")["events"]
    assert "epoch.bump" not in [e["action"] for e in globex_audit]
    assert "acme" not in str(globex_audit)
    assert [e["action"] for e in get(client, "/v1/admin/audit")["events"]] == ["store.create"]


def test_keys_are_listed_in_their_tenant_only(client, keys):
    assert [k["name"] for k in get(client, "/v1/admin/keys", headers=keys["acme"])["keys"]] == [
        "all"
    ]
    assert get(client, "/v1/admin/keys") == {"keys": []}
    revoked = client.delete("/v1/admin/keys/all?reason=r", headers=keys["acme"])
    assert revoked.status_code == 204
    # globex's key of the same name is untouched.
    assert get(client, "/v1/admin/keys", headers=keys["globex"])["keys"][0]["name"] == "all"


# -- rate limits, per tenant and key ------------------------------------------------------


@pytest.fixture
def limited(make_app):
    """A client of an app whose limits are tiny, with acme and globex made on it."""
    client = make_app(
        RATE_LIMIT_LINKS_PER_KEY="2 per minute",
        RATE_LIMIT_VERIFY_FAILURES_PER_KEY="2 per minute",
        RATE_LIMIT_VERIFY_FAILURES_PER_CLIENT="1000 per minute",
    ).test_client()
    tenant_keys = {t: make_tenant(client, t, PORTALS[t]) for t in ("acme", "globex")}
    return client, tenant_keys


def assert_rate_limited(response) -> None:
    assert_problem(response, 429, "rate_limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_a_platform_key_busy_in_one_tenant_is_not_limited_in_another(frozen, limited):
    client, _ = limited
    for _ in range(2):
        assert issue(client, "acme").status_code == 200

    assert_rate_limited(issue(client, "acme"))
    assert issue(client, "globex").status_code == 200
    assert issue(client, "globex").status_code == 200
    assert client.post("/v1/links", json=LINK, headers=ISSUER).status_code == 200
    assert_rate_limited(issue(client, "globex"))


def test_tenant_keys_of_the_same_name_are_limited_apart(frozen, limited):
    client, tenant_keys = limited
    for _ in range(2):
        assert client.post("/v1/links", json=LINK, headers=tenant_keys["acme"]).status_code == 200
    assert_rate_limited(client.post("/v1/links", json=LINK, headers=tenant_keys["acme"]))

    assert client.post("/v1/links", json=LINK, headers=tenant_keys["globex"]).status_code == 200
    # Nor does a tenant's key use up the platform key's count in that tenant.
    assert issue(client, "acme").status_code == 200


def test_failed_verifications_are_counted_per_tenant(frozen, limited):
    client, _ = limited
    for _ in range(2):
        assert_problem(verify(client, "acme", "x.y.z"), 401, "token_invalid")

    assert_rate_limited(verify(client, "acme", "x.y.z"))
    assert_problem(verify(client, "globex", "x.y.z"), 401, "token_invalid")
    good = token(client, "acme")
    assert verify(client, "acme", good).status_code == 200  # a good link never waits on a counter
