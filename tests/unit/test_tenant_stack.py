"""Both ends of the link against the real service with two tenants, acme and globex.

The service (create_app on SQLite) is served on a loopback port; the portal is
a plain WSGI app behind the middleware, reached on each tenant's host name.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from werkzeug.test import Client

from service.client import EmailLinkRequest, LinkClient
from service.emails import make_portal_link
from service.portal import TENANT_ENVIRON_KEY, AutoLoginMiddleware, tenant_from_host
from tests.conftest import API_KEYS, PORTAL, auth

ISSUER_KEY = API_KEYS["issuer-key"][0]
PORTAL_KEY = API_KEYS["portal-key"][0]
PORTALS = {"acme": "https://acme.portal.example.com", "globex": "https://globex.portal.example.com"}
HOSTS = {"acme.portal.example.com": "acme", "globex.portal.example.com": "globex"}


@pytest.fixture
def tenants(service_app) -> dict[str, str]:
    """Create acme and globex with the platform admin key, auto-login on; their issuer keys."""
    api = service_app.test_client()
    keys = {}
    for tenant, portal in PORTALS.items():
        made = api.post(
            "/v1/admin/tenants",
            json={"tenant_id": tenant, "portal_base_url": portal, "reason": "kit test"},
            headers=auth("admin-key"),
        )
        assert made.status_code == 201, made.json
        on = api.patch(
            f"/v1/tenants/{tenant}/admin/settings",
            json={"auto_login_enabled": True},
            headers=auth("admin-key"),
        )
        assert on.status_code == 200, on.json
        key = api.post(
            f"/v1/tenants/{tenant}/admin/keys",
            json={"name": f"{tenant}-mail", "roles": ["issuer"], "reason": "kit test"},
            headers=auth("admin-key"),
        )
        assert key.status_code == 201, key.json
        keys[tenant] = key.json["key"]
    return keys


def signins(service_app, tenant: str) -> list[dict]:
    response = service_app.test_client().get(
        f"/v1/tenants/{tenant}/admin/signins", headers=auth("admin-key")
    )
    assert response.status_code == 200, response.json
    return response.json["signins"]


def issue(service_url: str, key: str, tenant: str, user_id: str = "42", target: str = "/t/1"):
    with LinkClient(service_url, key, tenant=tenant, portal_base_url=PORTALS[tenant]) as client:
        return client.link(user_id, "alice@example.com", to=["alice@example.com"], target=target)


class Portal:
    """The portal of both tenants, each on its host; records who signed in where."""

    def __init__(self, service_url: str) -> None:
        self.seen: list[tuple] = []
        self.middleware = AutoLoginMiddleware(
            self.app,
            login=lambda environ, user_id, claims: self.seen.append(
                ("login", environ[TENANT_ENVIRON_KEY], user_id)
            ),
            on_failure=lambda environ, reason: self.seen.append(
                ("failure", environ[TENANT_ENVIRON_KEY], reason)
            ),
            service_url=service_url,
            api_key=PORTAL_KEY,  # a platform key: it may verify in every tenant
            tenant=tenant_from_host(HOSTS),
        )
        self.client = Client(self.middleware)

    def app(self, environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"page"]

    def open(self, url: str, *, on: str):
        """GET the path and query of ``url`` on the portal of tenant ``on``."""
        path = "/" + url.split("://", 1)[1].split("/", 1)[1]
        return self.client.get(path, base_url=PORTALS[on] + "/")


@pytest.fixture
def portal(service_url) -> Iterator[Portal]:
    portal = Portal(service_url)
    yield portal
    portal.middleware.verifier.close()


def test_each_tenant_issues_links_to_its_own_portal(service_url, tenants):
    acme = issue(service_url, tenants["acme"], "acme", target="/tickets/1")
    globex = issue(service_url, tenants["globex"], "globex", target="/tickets/1")
    assert acme.auto_login and globex.auto_login
    assert acme.url.startswith(f"{PORTALS['acme']}/tickets/1?auto_login=")
    assert globex.url.startswith(f"{PORTALS['globex']}/tickets/1?auto_login=")


def test_a_platform_key_issues_for_any_tenant_and_in_batches(service_url, tenants):
    with LinkClient(service_url, ISSUER_KEY, portal_base_url=PORTAL) as platform:
        globex = platform.for_tenant("globex", portal_base_url=PORTALS["globex"])
        links = globex.links(
            [
                EmailLinkRequest("42", "a@example.com", to=["a@example.com"], target=f"/t/{i}")
                for i in range(3)
            ]
        )
        portal_link = make_portal_link(
            platform,
            user_id="42",
            email="a@example.com",
            to=["a@example.com"],
            tenant="acme",
            portal_base_url=PORTALS["acme"],
        )
        acme_url = portal_link("/t/9")
        # The platform's own calls still act in default, which is switched off.
        default = platform.link("42", "a@example.com", to=["a@example.com"])
    assert [link.url.split("?")[0] for link in links] == [
        f"{PORTALS['globex']}/t/{i}" for i in range(3)
    ]
    assert all(link.auto_login for link in links)
    assert acme_url.startswith(f"{PORTALS['acme']}/t/9?auto_login=")
    assert (default.url, default.reason) == (f"{PORTAL}/", "disabled")


def test_a_tenant_key_naming_another_tenant_gets_the_plain_link(service_url, tenants, caplog):
    link = issue(service_url, tenants["acme"], "globex")
    assert (link.url, link.auto_login, link.reason) == (
        f"{PORTALS['globex']}/t/1",
        False,
        "service_error",
    )
    assert "HTTP 403 forbidden" in caplog.text
    assert tenants["acme"] not in caplog.text


def test_a_tenant_the_service_does_not_know_gets_the_plain_link(service_url, tenants, caplog):
    with LinkClient(
        service_url, ISSUER_KEY, tenant="initech", portal_base_url="https://initech.test"
    ) as client:
        link = client.link("42", "a@example.com", to=["a@example.com"], target="/t")
    assert (link.url, link.reason) == ("https://initech.test/t", "service_error")
    assert "of tenant initech: HTTP 404 tenant_not_found" in caplog.text


def test_each_link_signs_in_on_its_own_tenants_host(service_app, service_url, tenants, portal):
    acme = issue(service_url, tenants["acme"], "acme", target="/tickets/1")
    globex = issue(service_url, tenants["globex"], "globex", target="/tickets/2")
    first = portal.open(acme.url, on="acme")
    second = portal.open(globex.url, on="globex")
    assert (first.status_code, first.headers["Location"]) == (303, "/tickets/1")
    assert (second.status_code, second.headers["Location"]) == (303, "/tickets/2")
    assert portal.seen == [("login", "acme", "42"), ("login", "globex", "42")]
    assert [s["outcome"] for s in signins(service_app, "acme")] == ["ok"]
    assert [s["outcome"] for s in signins(service_app, "globex")] == ["ok"]


def test_a_link_of_acme_pasted_on_globexs_host_is_refused(
    service_app, service_url, tenants, portal
):
    acme = issue(service_url, tenants["acme"], "acme", target="/tickets/1")
    response = portal.open(acme.url, on="globex")
    assert (response.status_code, response.headers["Location"]) == (303, "/tickets/1")
    assert portal.seen == [("failure", "globex", "token_invalid")]
    # Refused as a forgery would be: neither tenant's sign-in log records it.
    assert signins(service_app, "globex") == []
    assert signins(service_app, "acme") == []
    # On its own host it still works.
    assert portal.open(acme.url, on="acme").headers["Location"] == "/tickets/1"
    assert portal.seen[-1] == ("login", "acme", "42")


def test_a_bump_in_acme_voids_acmes_links_only(service_app, service_url, tenants, portal):
    acme = issue(service_url, tenants["acme"], "acme")
    globex = issue(service_url, tenants["globex"], "globex")
    bumped = service_app.test_client().post(
        "/v1/tenants/acme/admin/epoch/bump", json={"reason": "kit test"}, headers=auth("admin-key")
    )
    assert bumped.status_code == 200, bumped.json
    portal.open(acme.url, on="acme")
    portal.open(globex.url, on="globex")
    assert portal.seen == [("failure", "acme", "token_revoked"), ("login", "globex", "42")]
