"""Shared fixtures: an app on either store, its client and runner, and actions."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import freezegun
import pytest

from service import close_app, create_app
from service.clock import utcnow
from tests.support.service_thread import Canned, serving, serving_canned

# The Redis client measures its own timeouts; freezegun must not stop its clock.
freezegun.configure(extend_ignore_list=["redis"])

#: Plain API keys of the test deployment; the app knows only their digests.
API_KEYS = {
    "issuer-key": ("test-issuer-0123456789abcdefghijklmnop", ["issuer"]),
    "portal-key": ("test-portal-0123456789abcdefghijklmnop", ["portal"]),
    "admin-key": ("test-admin-0123456789abcdefghijklmnopq", ["admin"]),
    "ops-key": ("test-multi-0123456789abcdefghijklmnopqr", ["issuer", "portal", "admin"]),
}
SIGNING_KEYS = {
    "k1": "test-signing-secret-k1-0123456789abcdefghijklmnop",
    "k2": "test-signing-secret-k2-0123456789abcdefghijklmnop",
}
PORTAL = "https://portal.example.com"
#: Signs the console's sessions; set, so that nothing is generated.
CONSOLE_SECRET_KEY = "test-console-secret-0123456789abcdefghijklmnop"
#: Every admin call, one request each: (method, path, JSON body or None).
ADMIN_CALLS = (
    ("GET", "/v1/admin/settings", None),
    ("PATCH", "/v1/admin/settings", {"auto_login_enabled": False}),
    ("GET", "/v1/admin/epoch", None),
    ("POST", "/v1/admin/epoch/bump", {"reason": "store test"}),
    ("POST", "/v1/admin/users/42/revoke", {"reason": "store test"}),
    ("GET", "/v1/admin/audit", None),
    ("GET", "/v1/admin/signins", None),
    ("GET", "/v1/admin/links", None),
    ("GET", "/v1/admin/links/Qx3vT0bqW2mZ8kLr", None),
    ("POST", "/v1/admin/links/Qx3vT0bqW2mZ8kLr/revoke", {"reason": "store test"}),
)
#: Every secret of the test deployment: nothing the service logs may hold one.
SECRETS = [key for key, _ in API_KEYS.values()] + list(SIGNING_KEYS.values())


def api_keys_config() -> dict[str, Any]:
    return {
        name: {"sha256": hashlib.sha256(key.encode()).hexdigest(), "roles": roles}
        for name, (key, roles) in API_KEYS.items()
    }


def auth(name: str) -> dict[str, str]:
    """Return the Authorization header of the test key ``name``."""
    return {"Authorization": f"Bearer {API_KEYS[name][0]}"}


def production_config(store_url: str, **overrides: Any) -> dict[str, Any]:
    """The settings of the test deployment on ``store_url``: production rules, known keys.

    ``overrides`` change or add settings.
    """
    return {
        "ENV": "production",
        "PORTAL_BASE_URL": PORTAL,
        "STORE_URL": store_url,
        "SIGNING_KEYS": dict(SIGNING_KEYS),
        "ACTIVE_KEY_ID": "k1",
        "API_KEYS": api_keys_config(),
        "SECRET_KEY": CONSOLE_SECRET_KEY,
        **overrides,
    }


def sqlite_url(directory: Path) -> str:
    """The URL of a fresh SQLite store in ``directory``."""
    return f"sqlite:///{directory / 'store.db'}"


@pytest.fixture(autouse=True)
def _write_sign_in_logs_before_teardown():
    """Leave no sign-in entry for a writer thread to write after its test.

    The sign-in log is written behind the request (service/signins.py); a
    thread still writing after the test stopped its store would only log
    warnings into a closed capture.
    """
    yield
    from service.signins import drain_all

    drain_all()


@pytest.fixture(scope="session")
def redis_server():
    from tests.support.redis_server import RedisServer

    with RedisServer() as server:
        yield server


@pytest.fixture
def own_redis():
    """A redis-server of this test alone, append-only, to stop, restart, freeze or kill.

    A clean stop keeps its data; the session's ``redis_server`` is never disturbed.
    """
    from tests.support.redis_server import RedisServer

    with RedisServer(appendonly=True) as server:
        yield server


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request, tmp_path) -> str:
    """A fresh, empty store URL of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    server = request.getfixturevalue("redis_server")
    return server.url


@pytest.fixture
def config(store_url) -> dict[str, Any]:
    """The test deployment: production rules, a fresh store, known keys."""
    # A unique prefix gives every test an empty Redis namespace.
    return production_config(store_url, STORE_KEY_PREFIX=f"test-{uuid.uuid4().hex[:12]}:")


@pytest.fixture
def app(config):
    app = create_app(config)
    app.config["TESTING"] = True
    yield app
    close_app(app)


@pytest.fixture
def make_app(config):
    """Build further apps on the same store with some settings changed."""
    apps = []

    def make(**overrides):
        app = create_app({**config, **overrides})
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield make
    for app in apps:
        close_app(app)


@pytest.fixture
def service_app(tmp_path):
    """The test deployment on a fresh SQLite store (no Redis), auto-login off as it starts."""
    app = create_app(production_config(sqlite_url(tmp_path)))
    yield app
    close_app(app)


@pytest.fixture
def sqlite_app(service_app):
    """``service_app`` under test (TESTING), with auto-login switched on."""
    service_app.config["TESTING"] = True
    # Switched on, so that link requests go as far as issuing a token.
    service_app.extensions["store"].update_settings(
        {"auto_login_enabled": True}, actor="tests", now=utcnow()
    )
    return service_app


@pytest.fixture
def service_url(service_app) -> Iterator[str]:
    """``service_app`` served over real HTTP on a free loopback port."""
    with serving(service_app) as url:
        yield url


@pytest.fixture
def canned() -> Iterator[Canned]:
    """A fake service served over real HTTP: ``canned.url``, ``canned.answer(...)``."""
    with serving_canned(Canned()) as canned:
        yield canned


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def frozen():
    with freezegun.freeze_time("2026-11-25T10:00:00Z") as freezer:
        yield freezer


class LinkActions:
    """Call the service as its three callers do."""

    def __init__(self, client) -> None:
        self.client = client

    def enable(self, enabled: bool = True, **extra: Any):
        body = {"auto_login_enabled": enabled, **extra}
        response = self.client.patch("/v1/admin/settings", json=body, headers=auth("admin-key"))
        assert response.status_code == 200, response.json
        return response.json

    def issue(self, user_id: str = "42", email: str = "alice@example.com", **body: Any):
        payload = {
            "user_id": user_id,
            "email": email,
            "recipients": body.pop("recipients", {"to": [email]}),
            **body,
        }
        return self.client.post("/v1/links", json=payload, headers=auth("issuer-key"))

    def token(self, user_id: str = "42", **body: Any) -> str:
        """Issue a link with a token and return the token."""
        response = self.issue(user_id, **body)
        assert response.status_code == 200, response.json
        assert response.json["auto_login"] is True, response.json
        return response.json["url"].split("auto_login=", 1)[1].split("#")[0]

    def verify(self, token: str, **body: Any):
        return self.client.post(
            "/v1/tokens/verify", json={"token": token, **body}, headers=auth("portal-key")
        )

    def bump(self, reason: str = "test bump"):
        return self.client.post(
            "/v1/admin/epoch/bump", json={"reason": reason}, headers=auth("admin-key")
        )

    def revoke(self, user_id: str, reason: str = "test revoke"):
        return self.client.post(
            f"/v1/admin/users/{user_id}/revoke", json={"reason": reason}, headers=auth("admin-key")
        )


@pytest.fixture
def links(client) -> LinkActions:
    return LinkActions(client)


@pytest.fixture
def enabled(links) -> LinkActions:
    """``links`` with auto-login switched on."""
    links.enable()
    return links


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parent.parent
