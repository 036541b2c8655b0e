"""Chromium, two tenants, one portal: each link signs in on its own host, and on the other it fails.

The real service runs under gunicorn with tenants acme and globex, each with
its portal on its own host name of the same example portal
(``acme.localhost`` and ``globex.localhost``: Chromium resolves every
``*.localhost`` name to the loopback address). Each tenant's mail system has
its own tenant issuer key; the portal verifies with one platform portal key.
"""

from __future__ import annotations

import logging
import time

import pytest
import requests

from service.client import LinkClient
from service.emails import render_ticket_update
from tests.conftest import API_KEYS, SECRETS, production_config, sqlite_url
from tests.support.browser import chromium
from tests.support.example_portal import load_example_portal
from tests.support.gunicorn_server import GunicornServer, free_port
from tests.support.service_thread import serving

ADMIN = {"Authorization": f"Bearer {API_KEYS['admin-key'][0]}"}
USERS = {"acme": "alice@acme.example.com", "globex": "gloria@globex.example.com"}


def _portal_module():
    return load_example_portal("example_portal_app_tenant_e2e")


def _call(service, method: str, path: str, body: dict) -> dict:
    response = requests.request(method, service.url + path, json=body, headers=ADMIN, timeout=5)
    assert response.ok, response.text
    return response.json()


def _signins(service, tenant: str, *, at_least: int) -> list[str]:
    deadline = time.monotonic() + 5
    while True:
        signins = requests.get(
            f"{service.url}/v1/tenants/{tenant}/admin/signins", headers=ADMIN, timeout=5
        ).json()["signins"]
        if len(signins) >= at_least or time.monotonic() > deadline:
            return [s["outcome"] for s in signins]
        time.sleep(0.05)


@pytest.fixture
def stack(tmp_path):
    """The service with acme and globex, and the example portal serving both by host."""
    port = free_port()
    portals = {tenant: f"http://{tenant}.localhost:{port}" for tenant in USERS}
    config = production_config(
        sqlite_url(tmp_path), ENV="development", PORTAL_BASE_URL=f"http://127.0.0.1:{port}"
    )
    with GunicornServer(config, tmp_path) as service:
        issuer_keys = {}
        for tenant, portal in portals.items():
            _call(
                service,
                "POST",
                "/v1/admin/tenants",
                {"tenant_id": tenant, "portal_base_url": portal, "reason": "e2e"},
            )
            issuer_keys[tenant] = _call(
                service,
                "POST",
                f"/v1/tenants/{tenant}/admin/keys",
                {"name": f"{tenant}-mail", "roles": ["issuer"], "reason": "e2e"},
            )["key"]
            _call(
                service,
                "PATCH",
                f"/v1/tenants/{tenant}/admin/settings",
                {"auto_login_enabled": True},
            )
        module = _portal_module()
        app = module.create_portal(
            {
                "SECRET_KEY": "test-portal-secret-0123456789abcdefghijkl",
                "AUTOLOGIN_SERVICE_URL": service.url,
                "AUTOLOGIN_PORTAL_KEY": API_KEYS["portal-key"][0],
                "AUTOLOGIN_TENANT_HOSTS": {f"{t}.localhost": t for t in USERS},
            }
        )
        try:
            with serving(app, port, request_handler=module.QuietRequestHandler):
                yield service, portals, issuer_keys
        finally:
            app.extensions["autologin"].middleware.verifier.close()


def test_each_link_signs_in_on_its_own_host_and_acmes_fails_on_globexs(stack, caplog):
    caplog.set_level(logging.DEBUG)
    service, portals, issuer_keys = stack
    links = {}
    for tenant, email in USERS.items():
        with LinkClient(
            service.url, issuer_keys[tenant], tenant=tenant, portal_base_url=portals[tenant]
        ) as client:
            rendered = render_ticket_update(
                client, user_id="42", email=email, to=[email], target="/tickets/1234"
            )
        assert rendered.link.auto_login is True, rendered.link
        links[tenant] = rendered.link.url
        assert links[tenant].startswith(f"{portals[tenant]}/tickets/1234?auto_login=")
    pasted = links["acme"].replace(portals["acme"], portals["globex"])

    with chromium() as browser:
        for tenant, name in (("acme", "Alice Acme"), ("globex", "Gloria Globex")):
            context = browser.new_context()
            page = context.new_page()
            page.goto(links[tenant])
            assert page.url == f"{portals[tenant]}/tickets/1234"
            assert name in page.locator("#signed-in").inner_text()
            assert tenant.capitalize() in page.locator("#helpdesk").inner_text()
            context.close()

        context = browser.new_context()
        page = context.new_page()
        page.goto(pasted)
        assert page.url.startswith(f"{portals['globex']}/login")
        assert "auto_login" not in page.url
        assert "not valid" in page.locator("#messages").inner_text()
        assert page.locator("#signed-in").count() == 0
        context.close()

    # Gloria's click, and nothing of acme's token (written behind the click, by
    # whichever worker verified it: wait for the first entry).
    assert _signins(service, "globex", at_least=1) == ["ok"]

    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "signed in user 42 of tenant acme" in logged
    assert "signed in user 42 of tenant globex" in logged
    tokens = [link.split("auto_login=", 1)[1] for link in links.values()]
    for text in (logged, service.log()):
        for secret in (*tokens, *issuer_keys.values(), *SECRETS):
            assert secret not in text
