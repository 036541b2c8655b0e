"""Health, readiness, failing closed when the store is gone, and metrics."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ADMIN_CALLS, auth

LINK = {"user_id": "42", "email": "alice@example.com", "recipients": {"to": ["alice@example.com"]}}


def assert_store_unavailable(response) -> None:
    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json["code"] == "store_unavailable"
    assert response.json["status"] == 503


# -- health and readiness ----------------------------------------------------------


def test_healthz_answers_ok(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_answers_200_when_the_store_answers(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"


# -- the SQLite store goes away ------------------------------------------------------


def _remove_parent(path: Path) -> None:
    shutil.rmtree(path.parent)


def _directory_in_its_place(path: Path) -> None:
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        name.unlink(missing_ok=True)
    path.mkdir()


def _garbage_in_its_place(path: Path) -> None:
    for name in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        name.unlink(missing_ok=True)
    path.write_bytes(b"this is not an SQLite database, it never was. " * 200)


BREAKAGES = {
    "parent-removed": _remove_parent,
    "directory-in-its-place": _directory_in_its_place,
    "garbage-in-its-place": _garbage_in_its_place,
}


class TestSqliteStoreGone:
    """Whatever makes SQLite fail, the service fails closed with 503."""

    @pytest.fixture
    def store_url(self, tmp_path):
        """SQLite only: these break the store's file."""
        return f"sqlite:///{tmp_path / 'store' / 'store.db'}"

    @pytest.fixture(params=BREAKAGES.values(), ids=BREAKAGES.keys())
    def break_store(self, request, app):
        store = app.extensions["store"]

        def break_it():
            # Close this thread's connection first: an open SQLite handle
            # would keep reading the unlinked file.
            store.close()
            request.param(Path(store.path))

        return break_it

    @pytest.fixture
    def token(self, links) -> str:
        links.enable()
        return links.token()

    def test_readyz_is_503_store_unavailable(self, client, break_store):
        break_store()

        response = client.get("/readyz")

        assert_store_unavailable(response)

    def test_healthz_still_answers(self, client, break_store):
        break_store()

        assert client.get("/healthz").status_code == 200

    def test_issuing_is_503_store_unavailable(self, links, token, break_store):
        break_store()

        assert_store_unavailable(links.issue())

    def test_batch_issuing_is_503_store_unavailable(self, client, token, break_store):
        break_store()

        response = client.post(
            "/v1/links/batch", json={"items": [LINK]}, headers=auth("issuer-key")
        )

        assert_store_unavailable(response)

    def test_a_valid_token_is_never_accepted_without_the_epoch(self, links, token, break_store):
        assert links.verify(token).status_code == 200
        break_store()

        response = links.verify(token)

        assert_store_unavailable(response)
        assert "user_id" not in response.json

    @pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
    def test_administration_is_503_store_unavailable(self, client, break_store, method, path, body):
        break_store()

        response = client.open(path, method=method, json=body, headers=auth("admin-key"))

        assert_store_unavailable(response)

    def test_a_forged_token_is_still_token_invalid(self, links, token, break_store):
        """The signature is checked before the store is asked."""
        break_store()
        head, payload, signature = token.split(".")

        response = links.verify(f"{head}.{payload}.{signature[::-1]}")

        assert response.status_code == 401
        assert response.json["code"] == "token_invalid"

    def test_the_log_names_the_failure_but_not_the_token(self, links, token, break_store, caplog):
        break_store()

        links.verify(token)

        assert "store" in caplog.text
        assert token.split(".")[1] not in caplog.text


# -- metrics ---------------------------------------------------------------------------


@pytest.fixture
def metrics(client, monkeypatch):
    """Return the current metrics as {(sample name, sorted labels): value}."""
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)

    def read() -> dict:
        response = client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        samples = {}
        for family in text_string_to_metric_families(response.get_data(as_text=True)):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples

    return read


def links_issued(auto_login: str, reason: str):
    return ("autologin_links_issued_total", (("auto_login", auto_login), ("reason", reason)))


def verifications(outcome: str):
    return ("autologin_verifications_total", (("outcome", outcome),))


def test_metrics_count_links_by_auto_login_and_reason(links, client, metrics):
    links.issue()
    links.enable()
    links.issue()
    links.issue(recipients={"to": ["alice@example.com", "bob@example.com"]})
    links.issue(recipients={"to": ["bob@example.com"]})
    client.post(
        "/v1/links/batch",
        json={"items": [LINK, LINK, {"user_id": "bad id"}]},
        headers=auth("issuer-key"),
    )
    links.issue(target="//evil.test")

    samples = metrics()

    assert samples[links_issued("false", "disabled")] == 1
    assert samples[links_issued("true", "none")] == 3
    assert samples[links_issued("false", "multiple_recipients")] == 1
    assert samples[links_issued("false", "recipient_mismatch")] == 1


def test_metrics_count_verifications_by_outcome(frozen, links, metrics):
    links.enable()
    fresh, short, revoked = links.token("a"), links.token("b", ttl_seconds=60), links.token("c")
    links.revoke("c")
    links.verify(fresh)
    links.verify(fresh)
    links.verify("garbage")
    links.verify(revoked)
    frozen.tick(timedelta(minutes=10))
    links.verify(short)

    samples = metrics()

    assert samples[verifications("ok")] == 2
    assert samples[verifications("token_invalid")] == 1
    assert samples[verifications("token_revoked")] == 1
    assert samples[verifications("token_expired")] == 1


def test_metrics_count_epoch_bumps(links, runner, metrics):
    links.bump()
    links.bump()
    runner.invoke(args=["epoch", "bump", "--reason", "metrics"])

    assert metrics()[("autologin_epoch_bumps_total", ())] == 3


def test_metrics_have_a_request_latency_histogram(links, client, metrics):
    links.issue()
    links.issue()
    client.get("/healthz")

    samples = metrics()

    issue = (("endpoint", "links.issue"), ("method", "POST"))
    assert samples[("autologin_request_duration_seconds_count", issue)] == 2
    assert ("autologin_request_duration_seconds_sum", issue) in samples
    buckets = {
        dict(labels)["le"]: value
        for (name, labels), value in samples.items()
        if name == "autologin_request_duration_seconds_bucket"
        and ("endpoint", "links.issue") in labels
    }
    assert buckets["+Inf"] == 2
    assert len(buckets) > 1
    healthz = (("endpoint", "ops.healthz"), ("method", "GET"))
    assert samples[("autologin_request_duration_seconds_count", healthz)] == 1


def test_metrics_text_is_prometheus_exposition(client, links):
    links.issue()

    response = client.get("/metrics")
    text = response.get_data(as_text=True)

    assert response.status_code == 200
    assert "# TYPE autologin_links_issued_total counter" in text
    assert "# TYPE autologin_request_duration_seconds histogram" in text
    assert 'autologin_links_issued_total{auto_login="false",reason="disabled"} 1.0' in text


def test_metrics_need_no_key_and_hold_no_secret(client, links):
    links.enable()
    token = links.token()
    links.verify(token)

    text = client.get("/metrics").get_data(as_text=True)

    assert token.split(".")[1] not in text
    assert "alice" not in text
