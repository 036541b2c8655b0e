"""Actions shared by the tenant tests: keys, links, tokens and answers in a named tenant."""

from __future__ import annotations

from service.store import DEFAULT_ROLE_MAILBOXES
from tests.conftest import auth

ADMIN = auth("admin-key")
ISSUER = auth("issuer-key")
PORTAL_KEY = auth("portal-key")
ACME = "https://acme.portal.example.com"
GLOBEX = "https://globex.portal.example.com"
LINK = {"user_id": "42", "email": "alice@example.com", "recipients": {"to": ["alice@example.com"]}}


def bearer(key: str) -> dict[str, str]:
    """Return the Authorization header of a key's text (a tenant key made by a test)."""
    return {"Authorization": f"Bearer {key}"}


def assert_problem(response, status: int, code: str) -> None:
    """Assert a problem+json answer of ``status`` and ``code``."""
    assert response.status_code == status, response.json
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json["code"] == code
    assert response.json["status"] == status


def get(client, path, headers=ADMIN, **query) -> dict:
    """GET ``path``; assert a 200 and return its JSON."""
    response = client.get(path, query_string=query, headers=headers)
    assert response.status_code == 200, response.json
    return response.json


def enable(client, tenant="acme", **settings) -> None:
    """Switch auto-login on in ``tenant`` (with other settings), as the platform admin."""
    body = {"auto_login_enabled": True, **settings}
    response = client.patch(f"/v1/tenants/{tenant}/admin/settings", json=body, headers=ADMIN)
    assert response.status_code == 200, response.json


def issue(client, tenant, user_id="42", headers=ISSUER, **body):
    """Ask for the link of one email to ``user_id`` of ``tenant``."""
    return client.post(
        f"/v1/tenants/{tenant}/links", json={**LINK, "user_id": user_id, **body}, headers=headers
    )


def token(client, tenant, user_id="42", **body) -> str:
    """Return the token of a link of ``tenant`` (auto-login must be on)."""
    response = issue(client, tenant, user_id, **body)
    assert response.status_code == 200, response.json
    assert response.json["auto_login"] is True, response.json
    return response.json["url"].split("auto_login=", 1)[1]


def verify(client, tenant, token_, headers=PORTAL_KEY):
    """Verify ``token_`` in ``tenant`` (``None``: the unprefixed path, the key's tenant)."""
    path = "/v1/tokens/verify" if tenant is None else f"/v1/tenants/{tenant}/tokens/verify"
    return client.post(path, json={"token": token_}, headers=headers)


#: The settings a tenant starts with besides the switch and the lifetime:
#: links not bound to a browser, the default role mailboxes.
LINK_SETTINGS = {
    "bind_to_first_device": False,
    "role_mailboxes": list(DEFAULT_ROLE_MAILBOXES),
}
