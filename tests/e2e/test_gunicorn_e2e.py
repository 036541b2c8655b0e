"""The real server: gunicorn with 2 worker processes on a free loopback port."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.conftest import API_KEYS, SECRETS, production_config, sqlite_url
from tests.support.gunicorn_server import ROOT, GunicornServer, write_toml

ISSUER = {"Authorization": f"Bearer {API_KEYS['issuer-key'][0]}"}
PORTAL_KEY = {"Authorization": f"Bearer {API_KEYS['portal-key'][0]}"}
ADMIN = {"Authorization": f"Bearer {API_KEYS['admin-key'][0]}"}


@pytest.fixture
def server(tmp_path):
    config = production_config(sqlite_url(tmp_path))
    with GunicornServer(config, tmp_path) as server:
        yield server
    # Whatever the test did, nothing the server logged may hold a secret or a token.
    assert_no_secret_in(server.log(), tokens=getattr(server, "tokens", []))


def assert_no_secret_in(text: str, tokens: list[str]) -> None:
    for secret in SECRETS + tokens:
        assert secret not in text
    # The JWS header of every token of this service starts like this.
    assert "eyJhbGciOi" not in text


def link_answer(server: GunicornServer, user_id: str = "42") -> dict:
    """Ask for the link of ``user_id``; keep its token, if any, for the log check."""
    response = requests.post(
        server.url + "/v1/links",
        json={
            "user_id": user_id,
            "email": f"{user_id}@example.com",
            "recipients": {"to": [f"{user_id}@example.com"]},
        },
        headers=ISSUER,
        timeout=5,
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    if answer["auto_login"]:
        token = answer["url"].split("auto_login=", 1)[1]
        server.tokens = [*getattr(server, "tokens", []), token]
    return answer


def issue(server: GunicornServer, user_id: str) -> str:
    answer = link_answer(server, user_id)
    assert answer["auto_login"] is True
    return answer["url"].split("auto_login=", 1)[1]


def verify(server: GunicornServer, token: str) -> tuple[int, str | None]:
    response = requests.post(
        server.url + "/v1/tokens/verify", json={"token": token}, headers=PORTAL_KEY, timeout=5
    )
    return response.status_code, response.json().get("code")


def enable(server: GunicornServer) -> None:
    response = requests.patch(
        server.url + "/v1/admin/settings",
        json={"auto_login_enabled": True},
        headers=ADMIN,
        timeout=5,
    )
    assert response.status_code == 200


def bump(server: GunicornServer, reason: str = "e2e") -> int:
    response = requests.post(
        server.url + "/v1/admin/epoch/bump", json={"reason": reason}, headers=ADMIN, timeout=5
    )
    assert response.status_code == 200, response.text
    return response.json()["epoch"]


def test_bump_through_one_request_is_seen_by_every_worker_at_once(server):
    enable(server)
    tokens = [issue(server, f"user-{i}") for i in range(16)]
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(lambda t: verify(server, t), tokens * 3)) == {(200, None)}
        # Both worker processes served verifications: each writes its own metrics file.
        assert len(server.worker_pids()) >= 2
        bump(server)
        # Every following verification, on whichever worker, refuses at once.
        outcomes = list(pool.map(lambda t: verify(server, t), tokens * 3))
    assert set(outcomes) == {(401, "token_revoked")}
    fresh = issue(server, "user-0")
    assert verify(server, fresh) == (200, None)


def test_per_user_revoke_through_the_server(server):
    enable(server)
    alice, bob = issue(server, "alice"), issue(server, "bob")
    response = requests.post(
        server.url + "/v1/admin/users/alice/revoke",
        json={"reason": "lost laptop"},
        headers=ADMIN,
        timeout=5,
    )
    assert response.status_code == 200
    with ThreadPoolExecutor(4) as pool:
        assert set(pool.map(lambda t: verify(server, t), [alice] * 8)) == {(401, "token_revoked")}
        assert set(pool.map(lambda t: verify(server, t), [bob] * 8)) == {(200, None)}


def test_8_threads_bumping_25_times_raise_the_epoch_by_exactly_200(server):
    start = requests.get(server.url + "/v1/admin/epoch", headers=ADMIN, timeout=5).json()["epoch"]

    def bump_25(_: int) -> None:
        for _ in range(25):
            bump(server, "race")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(bump_25, range(8)))
    end = requests.get(server.url + "/v1/admin/epoch", headers=ADMIN, timeout=5).json()["epoch"]
    assert end == start + 200


def test_metrics_count_over_every_worker(server):
    enable(server)
    token = issue(server, "counted")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: verify(server, token), range(40)))
    assert len(server.worker_pids()) >= 2
    text = requests.get(server.url + "/metrics", timeout=5).text
    line = next(
        line
        for line in text.splitlines()
        if line.startswith('autologin_verifications_total{outcome="ok"}')
    )
    assert float(line.split()[-1]) == 40.0
    assert 'autologin_links_issued_total{auto_login="true",reason="none"} 1.0' in text
    assert "autologin_request_duration_seconds_bucket" in text


def test_epoch_and_settings_survive_a_restart(server):
    enable(server)
    token = issue(server, "survivor")
    epoch = bump(server)
    after_bump = issue(server, "survivor")
    requests.patch(
        server.url + "/v1/admin/settings",
        json={"token_ttl_seconds": 7200},
        headers=ADMIN,
        timeout=5,
    )
    server.stop()
    server.start()
    assert (
        requests.get(server.url + "/v1/admin/epoch", headers=ADMIN, timeout=5).json()["epoch"]
        == epoch
    )
    settings = requests.get(server.url + "/v1/admin/settings", headers=ADMIN, timeout=5).json()
    assert settings["auto_login_enabled"] is True
    assert settings["token_ttl_seconds"] == 7200
    assert verify(server, token) == (401, "token_revoked")
    assert verify(server, after_bump) == (200, None)


def test_a_lost_store_never_brings_old_tokens_back(server, tmp_path):
    enable(server)
    token = issue(server, "phoenix")
    server.stop()
    for path in tmp_path.glob("store.db*"):
        path.unlink()
    server.start()
    # The new store is disabled and at epoch 1 again, but it is another incarnation.
    assert (
        requests.get(server.url + "/v1/admin/epoch", headers=ADMIN, timeout=5).json()["epoch"] == 1
    )
    assert verify(server, token) == (401, "token_revoked")


@pytest.mark.parametrize(
    ("change", "setting"),
    (
        ({"SIGNING_KEYS": {"k1": "too-short"}}, "SIGNING_KEYS"),
        ({"ACTIVE_KEY_ID": "nope"}, "ACTIVE_KEY_ID"),
        ({"MAX_TOKEN_TTL_SECONDS": 604801}, "MAX_TOKEN_TTL_SECONDS"),
        ({"STORE_URL": "sqlite:////proc/forbidden/store.db"}, "STORE_URL"),
    ),
)
def test_bad_config_stops_gunicorn_with_one_clear_line(tmp_path, change, setting):
    config = production_config(sqlite_url(tmp_path), **change)
    server = GunicornServer(config, tmp_path)
    result = subprocess.run(
        server.command(), cwd=ROOT, env=server.env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if "configuration error" in line]
    assert len(lines) == 1 and setting in lines[0]
    assert "Traceback" not in result.stderr
    assert "too-short" not in result.stderr


def test_missing_signing_keys_in_production_stop_the_start(tmp_path):
    config = production_config(sqlite_url(tmp_path))
    del config["SIGNING_KEYS"]
    path = write_toml(tmp_path / "service.toml", config)
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        cwd=ROOT,
        env={"SERVICE_CONFIG": str(path), "PATH": str(Path(sys.executable).parent)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert result.stderr.strip().startswith("configuration error: SIGNING_KEYS is missing")
