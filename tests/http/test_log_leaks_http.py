"""Nothing the service logs holds a token, a signing secret or an API key."""

from __future__ import annotations

import logging

import jwt

from tests.conftest import SECRETS, SIGNING_KEYS, auth


def test_a_whole_session_logs_no_token_secret_or_key(client, links, caplog, capsys, frozen):
    caplog.set_level(logging.DEBUG)
    links.enable()
    tokens = [links.token(f"user-{i}") for i in range(3)]
    forged = jwt.encode(
        {"sub": "42"}, SIGNING_KEYS["k1"] + "x", algorithm="HS256", headers={"kid": "k1"}
    )
    unknown_kid = jwt.encode({"sub": "42"}, SIGNING_KEYS["k1"], headers={"kid": "../../etc"})
    links.verify(tokens[0])
    links.revoke("user-1")
    links.verify(tokens[1])
    frozen.tick(8 * 24 * 3600)
    links.verify(tokens[2])
    for bad in (forged, unknown_kid, tokens[0] + "x", "not-a-token"):
        links.verify(bad)
    links.bump()
    links.verify(tokens[0])
    # Wrong keys: a presented key must not be echoed either.
    client.get("/v1/admin/settings", headers={"Authorization": "Bearer wrong-key-123456789"})
    client.post("/v1/links", json={"token": tokens[0]}, headers=auth("portal-key"))
    client.post("/v1/tokens/verify", data=b"{" + tokens[0].encode(), headers=auth("portal-key"))

    logged = "\n".join(r.getMessage() for r in caplog.records) + capsys.readouterr().err
    assert "token refused" in logged  # the reasons are logged ...
    for secret in [*SECRETS, *tokens, forged, unknown_kid, "wrong-key-123456789"]:
        assert secret not in logged  # ... the secrets never
    assert "eyJ" not in logged


def test_each_request_logs_one_structured_line(client, caplog):
    caplog.set_level(logging.INFO, logger="service.access")
    response = client.get("/healthz", headers={"X-Request-Id": "req-123"})
    assert response.headers["X-Request-Id"] == "req-123"
    lines = [r for r in caplog.records if r.name == "service.access"]
    assert len(lines) == 1
    fields = lines[0].fields
    assert fields["request_id"] == "req-123"
    assert (fields["method"], fields["route"], fields["status"]) == ("GET", "/healthz", 200)
    assert fields["duration_ms"] >= 0


def test_route_not_path_is_logged(client, caplog, links):
    caplog.set_level(logging.INFO, logger="service.access")
    links.revoke("someone-secret-looking")
    fields = [r.fields for r in caplog.records if r.name == "service.access"][-1]
    assert fields["route"] == "/v1/admin/users/<user_id:user_id>/revoke"
    assert "someone-secret-looking" not in caplog.text


def test_a_request_id_of_the_wrong_shape_is_replaced(client):
    response = client.get("/healthz", headers={"X-Request-Id": "x" * 200})
    first = response.headers["X-Request-Id"]
    assert first != "x" * 200 and 0 < len(first) <= 64
    assert client.get("/healthz", headers={"X-Request-Id": "a b"}).headers["X-Request-Id"] != first


def test_api_answers_are_never_cached_and_never_sniffed(client, links):
    response = links.issue()
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get("/healthz").headers["X-Content-Type-Options"] == "nosniff"
