"""API keys and roles on every route of the contract."""

from __future__ import annotations

import base64

import pytest

from tests.conftest import API_KEYS, auth

LINK = {"user_id": "42", "email": "alice@example.com", "recipients": {"to": ["alice@example.com"]}}

#: (method, path, a valid body, the roles that may call it)
ROUTES = (
    ("POST", "/v1/links", LINK, {"issuer"}),
    ("POST", "/v1/links/batch", {"items": [LINK]}, {"issuer"}),
    ("POST", "/v1/tokens/verify", {"token": "not-a-token"}, {"portal"}),
    ("GET", "/v1/admin/settings", None, {"admin"}),
    ("PATCH", "/v1/admin/settings", {"auto_login_enabled": True}, {"admin"}),
    ("GET", "/v1/admin/epoch", None, {"admin"}),
    ("POST", "/v1/admin/epoch/bump", {"reason": "auth test"}, {"admin"}),
    ("POST", "/v1/admin/users/42/revoke", {"reason": "auth test"}, {"admin"}),
    ("GET", "/v1/admin/signins?user_id=42&limit=5", None, {"admin"}),
    ("GET", "/v1/admin/audit?limit=5", None, {"admin"}),
    ("POST", "/v1/scrub", {"text": "no links", "content_type": "text/plain"}, {"issuer", "portal"}),
)
SINGLE_ROLE_KEYS = {"issuer": "issuer-key", "portal": "portal-key", "admin": "admin-key"}


def _route_params():
    for method, path, body, roles in ROUTES:
        marks = []
        yield pytest.param(method, path, body, roles, marks=marks, id=f"{method} {path}")


def _pairs(allowed: bool):
    """Each route with each single-role key that may (or may not) call it."""
    for method, path, body, roles in ROUTES:
        marks = []
        for role, key in SINGLE_ROLE_KEYS.items():
            if (role in roles) == allowed:
                yield pytest.param(
                    method, path, body, key, marks=marks, id=f"{key} {method} {path}"
                )


ROUTE_PARAMS = list(_route_params())
FORBIDDEN_PAIRS = list(_pairs(allowed=False))
ALLOWED_PAIRS = list(_pairs(allowed=True))


def call(client, method, path, body, headers):
    return client.open(path, method=method, json=body, headers=headers)


def assert_problem(response, status: int, code: str) -> None:
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json["code"] == code
    assert response.json["status"] == status


def assert_unauthorized(response) -> None:
    assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("method", "path", "body", "roles"), ROUTE_PARAMS)
def test_no_key_is_401_with_a_bearer_challenge(client, method, path, body, roles):
    assert_unauthorized(call(client, method, path, body, {}))


@pytest.mark.parametrize(
    "presented",
    (
        "not-a-key",
        "test-issuer-0123456789abcdefghijklmno",  # one character short
        "test-issuer-0123456789abcdefghijklmnopX",  # one character long
        "TEST-ISSUER-0123456789ABCDEFGHIJKLMNOP",
    ),
    ids=["unknown", "prefix", "extended", "upper-case"],
)
@pytest.mark.parametrize(("method", "path", "body", "roles"), ROUTE_PARAMS)
def test_unknown_key_is_401(client, method, path, body, roles, presented):
    headers = {"Authorization": f"Bearer {presented}"}

    assert_unauthorized(call(client, method, path, body, headers))


@pytest.mark.parametrize(("method", "path", "body", "key"), FORBIDDEN_PAIRS)
def test_a_key_without_the_role_is_403_forbidden(client, method, path, body, key):
    response = call(client, method, path, body, auth(key))

    assert_problem(response, 403, "forbidden")
    assert "WWW-Authenticate" not in response.headers


@pytest.mark.parametrize(("method", "path", "body", "key"), ALLOWED_PAIRS)
def test_a_key_with_the_role_gets_through(client, method, path, body, key):
    response = call(client, method, path, body, auth(key))

    if path == "/v1/tokens/verify":
        assert_problem(response, 401, "token_invalid")  # past the key check, refused as a token
    else:
        assert response.status_code == 200, response.json


@pytest.mark.parametrize(("method", "path", "body", "roles"), ROUTE_PARAMS)
def test_the_multi_role_key_works_everywhere(client, method, path, body, roles):
    response = call(client, method, path, body, auth("ops-key"))

    if path == "/v1/tokens/verify":
        assert_problem(response, 401, "token_invalid")  # past the key check, refused as a token
    else:
        assert response.status_code == 200, response.json


def test_the_multi_role_key_verifies_a_real_token(links, client):
    links.enable()
    token = links.token()

    response = client.post("/v1/tokens/verify", json={"token": token}, headers=auth("ops-key"))

    assert response.status_code == 200
    assert response.json["user_id"] == "42"


ISSUER_KEY = API_KEYS["issuer-key"][0]
ADMIN_KEY = API_KEYS["admin-key"][0]


@pytest.mark.parametrize(
    "authorization",
    (
        ISSUER_KEY,
        f"Basic {base64.b64encode(f'issuer:{ISSUER_KEY}'.encode()).decode()}",
        f"Basic {ISSUER_KEY}",
        f"Token {ISSUER_KEY}",
        f"Bearer{ISSUER_KEY}",
        f"Bearer: {ISSUER_KEY}",
        "Bearer",
        "Bearer ",
        "Bearer    ",
        "",
    ),
    ids=[
        "no-scheme",
        "basic-user-pass",
        "basic-raw",
        "token-scheme",
        "no-space",
        "colon",
        "bearer-only",
        "bearer-space",
        "bearer-spaces",
        "empty",
    ],
)
def test_anything_but_a_bearer_key_is_401(client, authorization):
    response = client.post("/v1/links", json=LINK, headers={"Authorization": authorization})

    assert_unauthorized(response)


def test_bearer_scheme_is_case_insensitive(client):
    response = client.post(
        "/v1/links", json=LINK, headers={"Authorization": f"bearer {ISSUER_KEY}"}
    )

    assert response.status_code == 200


def test_key_in_a_query_string_is_not_accepted(client):
    response = client.get(f"/v1/admin/settings?api_key={ADMIN_KEY}")

    assert_unauthorized(response)


def test_role_checks_come_before_body_checks(client):
    """A caller without the role learns nothing about what the body should be."""
    response = client.post("/v1/links", data=b"not json", headers=auth("portal-key"))

    assert_problem(response, 403, "forbidden")
    response = client.patch("/v1/admin/settings", data=b"[", headers={})
    assert_unauthorized(response)


@pytest.mark.parametrize("path", ("/healthz", "/readyz", "/metrics", "/openapi.json"))
def test_operations_need_no_key(client, path):
    assert client.get(path).status_code == 200
