"""The real server on Redis: gunicorn with 2 workers, one or two hosts, a real redis-server.

Checks what only a running deployment shows: every worker fails closed when
Redis stops or hangs and recovers without a restart; two hosts on one Redis
see each other's bumps, revocations and settings at once; an append-only
Redis keeps them through kill -9; a bad STORE_URL stops gunicorn with one line.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import production_config
from tests.e2e.test_gunicorn_e2e import (
    ADMIN,
    ISSUER,
    assert_no_secret_in,
    bump,
    enable,
    issue,
    verify,
)
from tests.support.gunicorn_server import ROOT, GunicornServer
from tests.support.redis_keys import meta
from tests.support.redis_server import RedisServer
from tests.support.tenants import LINK_SETTINGS

#: Generous bound for "answers, does not hang": the Redis timeouts are 0.5 s.
BOUND_SECONDS = 10
LINK = {"user_id": "42", "email": "42@example.com", "recipients": {"to": ["42@example.com"]}}
FAULTY_CALLS = (
    ("POST", "/v1/links", ISSUER, LINK),
    ("POST", "/v1/links/batch", ISSUER, {"items": [LINK, LINK]}),
    ("GET", "/readyz", {}, None),
    ("GET", "/v1/admin/settings", ADMIN, None),
    ("PATCH", "/v1/admin/settings", ADMIN, {"token_ttl_seconds": 3600}),
    ("GET", "/v1/admin/epoch", ADMIN, None),
    ("POST", "/v1/admin/epoch/bump", ADMIN, {"reason": "during the outage"}),
    ("POST", "/v1/admin/users/42/revoke", ADMIN, {"reason": "during the outage"}),
    ("GET", "/v1/admin/audit", ADMIN, None),
    ("GET", "/v1/admin/signins", ADMIN, None),
)


@pytest.fixture
def launch(tmp_path):
    """Start gunicorn servers (hosts) on a store URL; stop them and check their logs after."""
    servers: list[GunicornServer] = []
    prefix = f"e2e-{secrets.token_hex(6)}:"

    def launch(store_url: str, **extra) -> GunicornServer:
        workdir = tmp_path / f"host-{len(servers)}"
        workdir.mkdir()
        config = production_config(store_url, STORE_KEY_PREFIX=prefix, **extra)
        server = GunicornServer(config, workdir)
        servers.append(server)
        server.start()
        return server

    launch.prefix = prefix
    yield launch
    for server in servers:
        server.stop()
    # Whatever the test did, no host logged a secret or any token of any host.
    tokens = [token for server in servers for token in getattr(server, "tokens", [])]
    for server in servers:
        assert_no_secret_in(server.log(), tokens=tokens)


def call(server: GunicornServer, method: str, path: str, headers=None, body=None):
    return requests.request(
        method, server.url + path, headers=headers, json=body, timeout=BOUND_SECONDS
    )


def get_json(server: GunicornServer, path: str) -> dict:
    response = call(server, "GET", path, ADMIN)
    assert response.status_code == 200, response.text
    return response.json()


def assert_store_unavailable(response: requests.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["Retry-After"].isdigit()
    assert response.json()["code"] == "store_unavailable"


def verify_all(server: GunicornServer, tokens: list[str], times: int = 4) -> set:
    """Verify every token ``times`` times, 4 at once, so that both workers answer."""
    with ThreadPoolExecutor(4) as pool:
        return set(pool.map(lambda t: verify(server, t), tokens * times))


def assert_workers_alive(server: GunicornServer) -> None:
    assert server.process is not None and server.process.poll() is None
    # The second worker may log its boot a moment after the first one served:
    # wait (bounded) until both have, then no more may have booted since.
    deadline = time.monotonic() + 10
    while server.log().count("Booting worker with pid") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    log = server.log()
    # Two workers booted at start and none since: none died, none was killed as hung.
    assert log.count("Booting worker with pid") == 2, log
    assert "WORKER TIMEOUT" not in log


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# -- Redis stops or hangs: every worker fails closed, then recovers ---------------------------


@pytest.mark.parametrize("how", ["stopped", "paused"])
def test_every_worker_fails_closed_while_redis_is_down_and_recovers_without_a_restart(
    own_redis, launch, how
):
    server = launch(own_redis.url)
    enable(server)
    tokens = [issue(server, f"user-{i}") for i in range(4)]
    assert verify_all(server, tokens) == {(200, None)}

    if how == "stopped":
        own_redis.stop()
    else:
        own_redis.pause()  # SIGSTOP: connections open, nothing answers
    try:
        with ThreadPoolExecutor(4) as pool:
            refused = list(pool.map(lambda t: verify(server, t), tokens * 2))
            answers = list(pool.map(lambda c: call(server, *c), FAULTY_CALLS))
        # No token is accepted while its epoch cannot be read.
        assert set(refused) == {(503, "store_unavailable")}
        for response in answers:
            assert_store_unavailable(response)
        assert call(server, "GET", "/healthz").status_code == 200
    finally:
        if how == "stopped":
            own_redis.start()
        else:
            own_redis.resume()

    # The same workers serve again at once: no restart, no retry.
    assert call(server, "GET", "/readyz").status_code == 200
    assert verify_all(server, tokens) == {(200, None)}
    bump(server, "after the outage")
    assert verify_all(server, tokens) == {(401, "token_revoked")}
    assert verify(server, issue(server, "user-0")) == (200, None)
    assert len(server.worker_pids()) >= 2
    assert_workers_alive(server)
    assert "store unavailable" in server.log()


def test_data_of_the_wrong_shape_fails_closed_and_is_logged(redis_server, launch):
    server = launch(redis_server.url)
    enable(server)
    token = issue(server, "shape")
    raw = redis_server.client()
    try:
        raw.delete(meta(launch.prefix))
        raw.set(meta(launch.prefix), "x")

        assert verify_all(server, [token], times=4) == {(503, "store_unavailable")}
        assert_store_unavailable(call(server, "POST", "/v1/links", ISSUER, LINK))
        assert_store_unavailable(call(server, "GET", "/readyz"))
        assert "store holds data of the wrong shape" in server.log()

        # Once the foreign value is gone the store starts over: a new incarnation.
        raw.delete(meta(launch.prefix))
    finally:
        raw.close()
    assert verify(server, token) == (401, "token_revoked")
    assert get_json(server, "/v1/admin/epoch")["epoch"] == 1
    assert_workers_alive(server)


# -- two hosts on one Redis ------------------------------------------------------------------


@pytest.fixture
def hosts(redis_server, launch):
    """Two gunicorn servers, 2 workers each, on one Redis and one key prefix."""
    return launch(redis_server.url), launch(redis_server.url)


def test_tokens_issued_on_one_host_verify_on_the_other_and_a_bump_revokes_them_there_at_once(
    hosts,
):
    a, b = hosts
    enable(a)
    tokens = [issue(a, f"user-{i}") for i in range(8)]
    assert verify_all(b, tokens) == {(200, None)}

    bump(a, "leaked on host a")

    # Every following verification on host b, on either worker, refuses.
    assert verify_all(b, tokens) == {(401, "token_revoked")}
    assert get_json(b, "/v1/admin/epoch")["epoch"] == 2
    assert verify(a, issue(b, "user-0")) == (200, None)


def test_a_user_revoked_on_one_host_is_revoked_on_the_other_at_once(hosts):
    a, b = hosts
    enable(a)
    alice, bob = issue(a, "alice"), issue(b, "bob")

    response = call(a, "POST", "/v1/admin/users/alice/revoke", ADMIN, {"reason": "lost laptop"})

    assert response.status_code == 200
    assert verify_all(b, [alice]) == {(401, "token_revoked")}
    assert verify_all(b, [bob]) == {(200, None)}
    assert verify(b, issue(b, "alice")) == (200, None)


def test_settings_changed_on_one_host_are_used_by_the_other(hosts):
    a, b = hosts
    changes = {"auto_login_enabled": True, "token_ttl_seconds": 7200}
    assert call(a, "PATCH", "/v1/admin/settings", ADMIN, changes).status_code == 200

    assert get_json(b, "/v1/admin/settings") == {
        **changes,
        "max_token_ttl_seconds": 604800,
        "portal_base_url": "https://portal.example.com",
        **LINK_SETTINGS,
    }
    token = issue(b, "ttl")
    assert claims(token)["exp"] - claims(token)["iat"] == 7200

    off = {"auto_login_enabled": False}
    assert call(b, "PATCH", "/v1/admin/settings", ADMIN, off).status_code == 200
    assert call(a, "POST", "/v1/links", ISSUER, LINK).json()["reason"] == "disabled"


def test_concurrent_bumps_from_two_hosts_raise_the_epoch_by_exactly_their_number(hosts):
    a, b = hosts
    start = get_json(a, "/v1/admin/epoch")["epoch"]

    def bump_25(server: GunicornServer) -> list[int]:
        return [bump(server, "race") for _ in range(25)]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(bump_25, [a, b] * 4))

    # 200 bumps, each answered with its own new epoch: none lost, none doubled.
    epochs = sorted(epoch for result in results for epoch in result)
    assert epochs == list(range(start + 1, start + 201))
    assert get_json(a, "/v1/admin/epoch")["epoch"] == start + 200
    assert get_json(b, "/v1/admin/epoch")["epoch"] == start + 200
    events = get_json(b, "/v1/admin/audit?limit=500")["events"]
    assert sum(event["action"] == "epoch.bump" for event in events) == 200


# -- durability -----------------------------------------------------------------------------


def test_bumps_revocations_and_settings_survive_kill_9_of_an_append_only_redis(own_redis, launch):
    server = launch(own_redis.url)
    enable(server)
    before_bump = issue(server, "alice")
    epoch = bump(server, "before the crash")
    alice, bob = issue(server, "alice"), issue(server, "bob")
    revoke = call(server, "POST", "/v1/admin/users/alice/revoke", ADMIN, {"reason": "crash test"})
    assert revoke.status_code == 200
    ttl = {"token_ttl_seconds": 7200}
    assert call(server, "PATCH", "/v1/admin/settings", ADMIN, ttl).status_code == 200

    own_redis.kill()
    own_redis.start()

    # The same gunicorn, never restarted, reads everything back on its first requests.
    assert get_json(server, "/v1/admin/epoch")["epoch"] == epoch
    settings = get_json(server, "/v1/admin/settings")
    assert (settings["auto_login_enabled"], settings["token_ttl_seconds"]) == (True, 7200)
    assert verify_all(server, [before_bump, alice]) == {(401, "token_revoked")}
    assert verify_all(server, [bob]) == {(200, None)}
    actions = [e["action"] for e in get_json(server, "/v1/admin/audit")["events"]]
    assert actions[:3] == ["settings.update", "user.revoke", "epoch.bump"]
    assert_workers_alive(server)


def test_a_redis_that_comes_back_empty_never_brings_old_tokens_back(launch):
    with RedisServer(appendonly=False) as volatile:
        server = launch(volatile.url)
        enable(server)
        token = issue(server, "phoenix")
        for _ in range(3):
            bump(server)
        newest = issue(server, "phoenix")

        volatile.kill()
        volatile.start()  # no AOF, no RDB: empty

        # A new incarnation at epoch 1 with auto-login off; every old token is refused.
        assert verify_all(server, [token, newest]) == {(401, "token_revoked")}
        assert get_json(server, "/v1/admin/epoch")["epoch"] == 1
        assert get_json(server, "/v1/admin/settings")["auto_login_enabled"] is False
        assert call(server, "POST", "/v1/links", ISSUER, LINK).json()["reason"] == "disabled"
        assert_workers_alive(server)


# -- start-up faults --------------------------------------------------------------------------


def run_until_exit(tmp_path, store_url: str, prefix: str = "autologin:"):
    config = production_config(store_url, STORE_KEY_PREFIX=prefix)
    server = GunicornServer(config, tmp_path)
    return subprocess.run(
        server.command(), cwd=ROOT, env=server.env(), capture_output=True, text=True, timeout=60
    )


def assert_one_clear_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if "configuration error" in line]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("configuration error: STORE_URL")
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "store_url",
    (
        "memcached://127.0.0.1:11211/0",
        "redis://127.0.0.1:notaport/0",
        "redis://127.0.0.1:1/0",
        "redis://:hunter2-e2e-password@127.0.0.1:1/0",
    ),
    ids=("unknown-scheme", "bad-port", "unreachable", "unreachable-with-password"),
)
def test_a_bad_store_url_stops_gunicorn_with_one_clear_line(tmp_path, store_url):
    result = run_until_exit(tmp_path, store_url)

    assert_one_clear_line(result)
    assert "hunter2" not in result.stderr + result.stdout


def test_a_redis_holding_foreign_data_under_the_prefix_stops_gunicorn(tmp_path, redis_server):
    prefix = f"e2e-{secrets.token_hex(6)}:"
    raw = redis_server.client()
    try:
        raw.set(f"{prefix}meta", "someone else's")
        result = run_until_exit(tmp_path, redis_server.url, prefix)
    finally:
        raw.delete(f"{prefix}meta")
        raw.close()

    line = assert_one_clear_line(result)
    assert "not a store of this service" in line
