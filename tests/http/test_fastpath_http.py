"""The click's fast path answers exactly as the Flask view would, and only good clicks."""

from __future__ import annotations

import json
import logging

import pytest

from tests.conftest import auth
from tests.support.store_calls import count_store_calls


def _verify_raw(client, body: str):
    return client.post(
        "/v1/tokens/verify",
        data=body,
        headers={**auth("portal-key"), "Content-Type": "application/json"},
    )


def test_fast_and_flask_paths_give_the_same_answer_and_headers(client, links, frozen, caplog):
    caplog.set_level(logging.INFO, logger="service.access")
    links.enable()
    token = links.token("42", target="/tickets/7")
    # A \u escape sends the request through the Flask view (read_json checks escapes).
    fast = _verify_raw(client, json.dumps({"token": token, "client": {"user_agent": "UA"}}))
    slow = _verify_raw(client, '{"token": "' + token + '", "client": {"user_agent": "\\u0055A"}}')
    assert fast.status_code == slow.status_code == 200
    assert (
        fast.json
        == slow.json
        == {
            "user_id": "42",
            "target": "/tickets/7",
            "issued_at": "2026-11-25T10:00:00Z",
            "expires_at": "2026-11-28T10:00:00Z",
        }
    )
    for name in ("Content-Type", "Cache-Control", "X-Content-Type-Options"):
        assert fast.headers[name] == slow.headers[name], name
    assert fast.headers["X-Request-Id"] and slow.headers["X-Request-Id"]
    # Both wrote the structured request line and the sign-in entry.
    routes = [r.fields["route"] for r in caplog.records if r.name == "service.access"]
    assert routes.count("/v1/tokens/verify") == 2
    signins = client.get("/v1/admin/signins?user_id=42", headers=auth("admin-key")).json
    assert [s["user_agent"] for s in signins["signins"]] == ["UA", "UA"]


def test_a_good_click_counts_as_ok_in_the_metrics(client, links):
    links.enable()
    token = links.token("42")
    before = client.get("/metrics").text
    assert links.verify(token).status_code == 200
    after = client.get("/metrics").text

    def ok(text: str) -> float:
        for line in text.splitlines():
            if line.startswith('autologin_verifications_total{outcome="ok"}'):
                return float(line.split()[-1])
        return 0.0

    assert ok(after) == ok(before) + 1


def test_only_good_clicks_take_the_fast_path(client, links):
    links.enable()
    token = links.token("42")
    # Wrong role, wrong key, no key, a bad token, a bad body: all answered by Flask.
    assert (
        links.client.post(
            "/v1/tokens/verify", json={"token": token}, headers=auth("issuer-key")
        ).json["code"]
        == "forbidden"
    )
    assert client.post("/v1/tokens/verify", json={"token": token}).status_code == 401
    assert links.verify(token + "x").json["code"] == "token_invalid"
    assert links.verify(token, client={"ip": 7}).json["code"] == "invalid_request"
    assert (
        _verify_raw(client, '{"token": "' + token + '", "x": NaN}').json["code"] == "invalid_json"
    )
    links.bump()
    assert links.verify(token).json["code"] == "token_revoked"


def test_a_large_body_goes_through_flask_and_still_verifies(client, links):
    links.enable()
    token = links.token("42")
    body = json.dumps({"token": token, "client": {"user_agent": "U" * 500}, "pad": "x" * 20000})
    assert _verify_raw(client, body).status_code == 200


def test_a_failed_token_reads_the_store_once(app, client, links, monkeypatch):
    # A token the fast path refused is answered by the view without a second
    # verification and a second store read (a store timing out would wait twice).
    links.enable()
    token = links.token("42")
    links.bump()
    store = app.extensions["store"]
    reads = []
    real = store.token_state
    monkeypatch.setattr(
        store, "token_state", lambda user_id, *key: reads.append(user_id) or real(user_id, *key)
    )
    response = links.verify(token)
    assert response.json["code"] == "token_revoked"
    assert reads == ["42"]


@pytest.mark.parametrize(
    "length", ("²", "1" * 5000, "-1", ""), ids=("²", "5000 digits", "-1", "empty")
)
def test_an_odd_content_length_goes_to_flask_and_is_answered_there(client, links, length):
    links.enable()
    body = json.dumps({"token": links.token()})

    response = client.post(
        "/v1/tokens/verify",
        data=body,
        headers={**auth("portal-key"), "Content-Type": "application/json"},
        environ_overrides={"CONTENT_LENGTH": length},
    )

    # Not a crash of the fast path: Flask reads no body from such a header.
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert response.json["code"] == "invalid_json"


@pytest.mark.parametrize("caller", ("tenant key", "platform key"))
def test_a_good_click_in_a_tenant_is_one_store_read(app, client, monkeypatch, caller):
    admin = auth("admin-key")
    made = client.post(
        "/v1/admin/tenants",
        json={"tenant_id": "acme", "portal_base_url": "https://acme.example.com", "reason": "r"},
        headers=admin,
    )
    assert made.status_code == 201
    key = client.post(
        "/v1/tenants/acme/admin/keys",
        json={"name": "acme-all", "roles": ["admin", "issuer", "portal"], "reason": "r"},
        headers=admin,
    ).json["key"]
    acme = {"Authorization": f"Bearer {key}"}
    client.patch("/v1/admin/settings", json={"auto_login_enabled": True}, headers=acme)
    url = client.post(
        "/v1/links",
        json={"user_id": "42", "email": "a@example.com", "recipients": {"to": ["a@example.com"]}},
        headers=acme,
    ).json["url"]
    token = url.partition("auto_login=")[2]
    path, headers = (
        ("/v1/tokens/verify", acme)
        if caller == "tenant key"
        else ("/v1/tenants/acme/tokens/verify", auth("portal-key"))
    )
    assert client.post(path, json={"token": token}, headers=headers).status_code == 200
    calls = count_store_calls(monkeypatch, app)

    response = client.post(path, json={"token": token}, headers=headers)

    assert response.status_code == 200 and response.json["user_id"] == "42"
    # The key (a tenant key's record), the tenant and the epochs: one read.
    assert calls == ["token_state"]
