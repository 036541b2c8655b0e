"""The store fails under a running app: fail closed with 503, never accept a token, recover.

Redis faults use a Redis of each test alone (append-only, so a clean stop keeps
its data), so stopping or freezing it never disturbs the session's server.
"""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from service import close_app, create_app
from tests.conftest import ADMIN_CALLS, auth
from tests.support.redis_keys import data, meta
from tests.support.redis_server import RedisServer

LINK = {"user_id": "42", "email": "alice@example.com", "recipients": {"to": ["alice@example.com"]}}
#: Generous bound for "answers, does not hang": the store's timeouts are 0.5 s.
BOUND_SECONDS = 10


def answer(call):
    """Return what ``call()`` returns, failing the test if it takes over BOUND_SECONDS."""
    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(call).result(timeout=BOUND_SECONDS)
    finally:
        pool.shutdown(wait=False)  # a hung call must not hang the test run too


def assert_store_unavailable(response) -> None:
    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["Retry-After"].isdigit()
    assert response.json["code"] == "store_unavailable"
    assert "user_id" not in response.json


@pytest.fixture
def store_url(own_redis):
    return own_redis.url


@pytest.fixture
def raw(own_redis):
    with own_redis.client() as client:
        yield client


@pytest.fixture
def token(links) -> str:
    links.enable()
    token = links.token()
    assert links.verify(token).status_code == 200
    return token


# -- Redis stops, or hangs ------------------------------------------------------------


class _Fault:
    """Stop Redis (connections refused) or freeze it with SIGSTOP (connections hang)."""

    def __init__(self, server: RedisServer, how: str) -> None:
        self.server, self.how = server, how

    def begin(self) -> None:
        if self.how == "stopped":
            self.server.stop()
        else:
            self.server.pause()

    def end(self) -> None:
        if self.how == "stopped":
            self.server.start()
        else:
            self.server.resume()


@pytest.fixture(params=["stopped", "paused"])
def fault(request, own_redis):
    fault = _Fault(own_redis, request.param)
    yield fault
    own_redis.resume()  # a frozen server must be able to shut down


def test_readyz_answers_503_while_redis_is_down(client, fault):
    fault.begin()

    assert_store_unavailable(answer(lambda: client.get("/readyz")))


def test_healthz_still_answers_while_redis_is_down(client, fault):
    fault.begin()

    assert answer(lambda: client.get("/healthz")).status_code == 200


def test_issuing_answers_503_store_unavailable_while_redis_is_down(client, links, token, fault):
    fault.begin()

    assert_store_unavailable(answer(links.issue))
    batch = answer(
        lambda: client.post("/v1/links/batch", json={"items": [LINK]}, headers=auth("issuer-key"))
    )
    assert_store_unavailable(batch)


def test_a_valid_token_is_never_accepted_while_redis_is_down(links, token, fault):
    fault.begin()

    for _ in range(3):
        assert_store_unavailable(answer(lambda: links.verify(token)))


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
def test_admin_calls_answer_503_while_redis_is_down(client, fault, method, path, body):
    fault.begin()

    response = answer(
        lambda: client.open(path, method=method, json=body, headers=auth("admin-key"))
    )

    assert_store_unavailable(response)


def test_a_void_that_answered_503_is_whole_or_absent(client, links, fault):
    """The store fails during a void: 503; afterwards the link is void, or not, never half."""
    links.enable()
    issued = links.issue().json
    token = issued["url"].split("auto_login=", 1)[1]
    fault.begin()
    response = answer(
        lambda: client.post(
            f"/v1/admin/links/{issued['link_id']}/revoke",
            json={"reason": "leaked"},
            headers=auth("admin-key"),
        )
    )
    assert_store_unavailable(response)
    fault.end()

    events = client.get("/v1/admin/audit", headers=auth("admin-key")).json["events"]
    audited = events[0]["action"] == "link.revoke"
    verdict = links.verify(token)
    assert verdict.status_code == (401 if audited else 200)
    listed = client.get(f"/v1/admin/links/{issued['link_id']}", headers=auth("admin-key")).json
    assert listed["status"] == ("revoked" if audited else "active")
    # Repeating the void completes it either way.
    again = client.post(
        f"/v1/admin/links/{issued['link_id']}/revoke",
        json={"reason": "leaked"},
        headers=auth("admin-key"),
    )
    assert again.status_code == 200
    assert links.verify(token).json["code"] == "token_revoked"


def test_the_log_says_the_store_is_unavailable_but_not_the_token(links, token, fault, caplog):
    fault.begin()

    answer(lambda: links.verify(token))

    assert "store unavailable" in caplog.text
    assert token.split(".")[1] not in caplog.text


def test_everything_works_again_when_redis_comes_back_without_a_restart(
    client, links, token, fault
):
    fault.begin()
    assert_store_unavailable(answer(lambda: links.verify(token)))
    assert_store_unavailable(answer(links.issue))
    assert_store_unavailable(answer(links.bump))

    fault.end()

    assert client.get("/readyz").status_code == 200
    assert links.verify(token).status_code == 200
    fresh = links.token()
    assert links.bump().status_code == 200
    assert links.verify(token).json["code"] == "token_revoked"
    assert links.verify(fresh).json["code"] == "token_revoked"
    assert links.verify(links.token()).status_code == 200


def test_the_redis_timeouts_come_from_the_settings(config):
    config.update(REDIS_SOCKET_TIMEOUT_SECONDS=0.25, REDIS_CONNECT_TIMEOUT_SECONDS=0.75)
    app = create_app(config)
    try:
        kwargs = app.extensions["store"].redis.connection_pool.connection_kwargs
    finally:
        close_app(app)

    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (0.25, 0.75)


def test_a_redis_that_comes_back_empty_refuses_every_old_token(client, links, token, own_redis):
    own_redis.kill()
    for path in own_redis.dir.glob("appendonly*"):  # the AOF dir of Redis 7, the file of 6
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    own_redis.start()

    response = links.verify(token)

    assert response.status_code == 401
    assert response.json["code"] == "token_revoked"
    # A new store: epoch 1, auto-login off, however far the lost one had got.
    epoch = client.get("/v1/admin/epoch", headers=auth("admin-key")).json
    assert epoch["epoch"] == 1
    assert links.issue().json["reason"] == "disabled"


# -- Redis holds data of the wrong shape under the service's keys -----------------------


def _meta_a_string(raw, p):
    raw.delete(meta(p))
    raw.set(meta(p), "x")


def _epoch_not_a_number(raw, p):
    raw.hset(meta(p), "epoch", "abc")


def _incarnation_missing(raw, p):
    raw.hdel(meta(p), "incarnation")


def _user_epochs_a_string(raw, p):
    raw.delete(data(raw, p, "user_epochs"))
    raw.set(data(raw, p, "user_epochs"), "x")


def _user_epoch_not_a_number(raw, p):
    raw.hset(data(raw, p, "user_epochs"), "42", "abc")


WRONG_SHAPES = {
    "meta-a-string": _meta_a_string,
    "epoch-not-a-number": _epoch_not_a_number,
    "incarnation-missing": _incarnation_missing,
    "user-epochs-a-string": _user_epochs_a_string,
    "user-epoch-not-a-number": _user_epoch_not_a_number,
}


@pytest.fixture(params=WRONG_SHAPES.values(), ids=WRONG_SHAPES.keys())
def wrong_shape(request, raw, config):
    return lambda: request.param(raw, config["STORE_KEY_PREFIX"])


def test_a_store_of_the_wrong_shape_never_accepts_a_token(links, token, wrong_shape, caplog):
    wrong_shape()

    response = links.verify(token)

    assert_store_unavailable(response)
    assert "store holds data of the wrong shape" in caplog.text
    assert token.split(".")[1] not in caplog.text


def test_a_store_of_the_wrong_shape_issues_nothing(client, links, token, wrong_shape, caplog):
    wrong_shape()

    assert_store_unavailable(links.issue())
    batch = client.post("/v1/links/batch", json={"items": [LINK]}, headers=auth("issuer-key"))
    assert_store_unavailable(batch)
    assert "store holds data of the wrong shape" in caplog.text


@pytest.mark.parametrize("corrupt", [_meta_a_string, _epoch_not_a_number, _incarnation_missing])
def test_a_meta_hash_of_the_wrong_shape_makes_readyz_answer_503(client, raw, config, corrupt):
    corrupt(raw, config["STORE_KEY_PREFIX"])

    assert_store_unavailable(client.get("/readyz"))


@pytest.mark.parametrize("corrupt", [_meta_a_string, _epoch_not_a_number])
def test_a_bump_over_an_epoch_of_the_wrong_shape_answers_503(links, raw, config, corrupt):
    corrupt(raw, config["STORE_KEY_PREFIX"])

    assert_store_unavailable(links.bump())


# -- the SQLite file turns to garbage while the app runs ---------------------------------


class TestSqliteFileTurnsToGarbage:
    @pytest.fixture
    def store_url(self, tmp_path):
        return f"sqlite:///{tmp_path / 'store.db'}"

    @staticmethod
    def _files(app) -> list[Path]:
        path = app.extensions["store"].path
        return [Path(path), Path(f"{path}-wal"), Path(f"{path}-shm")]

    def test_garbage_over_the_open_files_never_accepts_a_token(self, app, client, links, token):
        # Same size, in place: the open connection sees it (truncating the
        # memory-mapped -shm instead would kill the process with SIGBUS).
        for path in self._files(app):
            path.write_bytes(b"\xa5" * path.stat().st_size)

        assert_store_unavailable(links.verify(token))
        assert_store_unavailable(links.issue())
        assert_store_unavailable(client.get("/readyz"))
        assert_store_unavailable(links.bump())
        assert client.get("/healthz").status_code == 200

    def test_a_connection_opened_after_the_file_turned_to_garbage_refuses(
        self, app, links, token, caplog
    ):
        app.extensions["store"]._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        path = self._files(app)[0]
        path.write_bytes(b"this is not an SQLite database. " * 64)
        answers = []
        # Another thread opens its own connection, as a new worker would.
        worker = threading.Thread(target=lambda: answers.append(links.verify(token)))
        worker.start()
        worker.join(BOUND_SECONDS)

        assert len(answers) == 1
        assert_store_unavailable(answers[0])
        assert "store holds data of the wrong shape" in caplog.text
