"""``POST /v1/scrub`` through the test client: roles, validation, real tokens."""

from __future__ import annotations

import html
import json
import logging
from datetime import timedelta
from urllib.parse import quote

import pytest

from service.api.ops import openapi_document
from tests.conftest import PORTAL, auth
from tests.http.test_openapi_http import check_answer, validator
from tests.support.store_calls import count_store_calls

SAFELINKS = "https://eur01.safelinks.protection.outlook.com/?url="
FORGED = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJlLW9mLW5vYm9keS1hdC1hbGwtYXQtYWxs"


def scrub(client, body, key: str | None = "issuer-key"):
    headers = auth(key) if key else {}
    return client.post("/v1/scrub", json=body, headers=headers)


def assert_problem(response, status: int, code: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.json["code"] == code


@pytest.fixture(scope="module")
def doc():
    return openapi_document()


# -- who may call ---------------------------------------------------------------


@pytest.mark.parametrize("key", ["issuer-key", "portal-key", "ops-key"])
def test_issuer_and_portal_may_scrub(client, doc, key):
    response = scrub(client, {"text": "nothing here"}, key)
    assert response.status_code == 200
    assert response.json == {"text": "nothing here", "removed": 0, "user_ids": []}
    check_answer(doc, response, "/v1/scrub", "post")


def test_admin_may_not(client, doc):
    response = scrub(client, {"text": "x"}, "admin-key")
    assert_problem(response, 403, "forbidden")
    check_answer(doc, response, "/v1/scrub", "post")


def test_no_key_is_401(client, doc):
    response = scrub(client, {"text": "x"}, None)
    assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    check_answer(doc, response, "/v1/scrub", "post")


def test_unknown_key_is_401(client):
    response = client.post(
        "/v1/scrub", json={"text": "x"}, headers={"Authorization": "Bearer not-a-key"}
    )
    assert_problem(response, 401, "unauthorized")


# -- what is refused --------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"not json", b"[1]", b'"text"', b'{"text": NaN}'])
def test_a_body_that_is_not_a_json_object(client, doc, data):
    response = client.post(
        "/v1/scrub", data=data, content_type="application/json", headers=auth("portal-key")
    )
    assert_problem(response, 400, "invalid_json")
    check_answer(doc, response, "/v1/scrub", "post")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "text"),
        ({"text": None}, "text"),
        ({"text": 1}, "text"),
        ({"text": ["a"]}, "text"),
        ({"text": {"a": 1}}, "text"),
        ({"text": "x", "content_type": None}, "content_type"),
        ({"text": "x", "content_type": 1}, "content_type"),
        ({"text": "x", "content_type": ["text/html"]}, "content_type"),
        ({"text": "x", "content_type": "text/markdown"}, "content_type"),
        ({"text": "x", "content_type": "TEXT/HTML"}, "content_type"),
        ({"text": "x", "content_type": "text/html; charset=utf-8"}, "content_type"),
        ({"text": "x", "content_type": ""}, "content_type"),
    ],
)
def test_ill_typed_fields_are_invalid_request(client, doc, body, field):
    response = scrub(client, body)
    assert_problem(response, 400, "invalid_request")
    assert response.json["detail"].startswith(f"{field}: ")
    check_answer(doc, response, "/v1/scrub", "post")


def test_a_body_over_one_mebibyte_is_413(client, doc):
    response = scrub(client, {"text": "x" * (1024 * 1024)})
    assert_problem(response, 413, "payload_too_large")
    check_answer(doc, response, "/v1/scrub", "post")


REQUEST_CASES = [
    {"text": ""},
    {"text": "x", "content_type": "text/plain"},
    {"text": "x", "content_type": "text/html"},
    {"text": "x", "other": 1},
    {"text": "x", "content_type": None},
    {"text": "x", "content_type": "text/markdown"},
    {"text": 1},
    {"content_type": "text/plain"},
]


@pytest.mark.parametrize("body", REQUEST_CASES, ids=[json.dumps(c) for c in REQUEST_CASES])
def test_request_schema_agrees_with_the_service(client, doc, body):
    response = scrub(client, body)
    schema_ok = validator(doc, "#/components/schemas/ScrubRequest").is_valid(body)
    assert schema_ok == (response.status_code == 200)


# -- real tokens ------------------------------------------------------------------


def test_counts_and_users_of_real_tokens(client, doc, enabled):
    alice = enabled.token("42")
    bob = enabled.token("bob", email="bob@example.com", target="/tickets/7?tab=notes")
    text = (
        f"Hi,\n> {PORTAL}/?auto_login={bob}\n"
        f"> {PORTAL}/tickets/1?tab=notes&auto_login={alice}#top.\n"
        f"> <{PORTAL}/?auto_login={FORGED}>\n"
        f"{PORTAL}/x?auto_login={bob}&y=1 and https://elsewhere.test/?auto_login={alice}\n"
    )
    response = scrub(client, {"text": text})
    assert response.status_code == 200
    assert response.json == {
        "text": (
            f"Hi,\n> {PORTAL}/\n"
            f"> {PORTAL}/tickets/1?tab=notes#top.\n"
            f"> <{PORTAL}/>\n"
            f"{PORTAL}/x?y=1 and https://elsewhere.test/?auto_login={alice}\n"
        ),
        "removed": 4,
        "user_ids": ["bob", "42"],
    }
    check_answer(doc, response, "/v1/scrub", "post")


@pytest.mark.parametrize(
    "target", ["/", "/tickets/1234", "/tickets/1234?tab=notes#top", "/t?a=b?c"]
)
def test_an_issued_link_comes_back_as_the_plain_link(client, enabled, target):
    url = enabled.issue(target=target).json["url"]
    assert "auto_login=" in url
    plain = PORTAL + target
    plain_html, url_html = html.escape(plain), html.escape(url)  # & is &amp; in HTML
    cases = [
        ({"text": f"Thanks!\n> {url}\n"}, f"Thanks!\n> {plain}\n", 1),
        (
            {"text": f'<a href="{url_html}">{url_html}</a>', "content_type": "text/html"},
            f'<a href="{plain_html}">{plain_html}</a>',
            2,
        ),
        (
            {"text": f"{SAFELINKS}{quote(url, safe='')}&amp;data=05%7C02"},
            f"{SAFELINKS}{quote(plain, safe='')}&amp;data=05%7C02",
            1,
        ),
    ]
    for body, expected, removed in cases:
        response = scrub(client, body, "portal-key")
        assert response.json == {"text": expected, "removed": removed, "user_ids": ["42"]}


def test_expired_tokens_are_still_reported(client, frozen, enabled):
    token = enabled.token(ttl_seconds=60)
    frozen.tick(timedelta(seconds=60 + 30 + 1))
    assert_problem(enabled.verify(token), 401, "token_expired")
    response = scrub(client, {"text": f"{PORTAL}/?auto_login={token}"})
    assert response.json == {"text": f"{PORTAL}/", "removed": 1, "user_ids": ["42"]}


def test_revoked_tokens_are_still_reported(client, enabled):
    alice = enabled.token("42")
    bob = enabled.token("bob", email="bob@example.com")
    assert enabled.revoke("42").status_code == 200
    assert_problem(enabled.verify(alice), 401, "token_revoked")
    assert enabled.bump().status_code == 200
    assert_problem(enabled.verify(bob), 401, "token_revoked")
    text = f"{PORTAL}/?auto_login={alice} {PORTAL}/?auto_login={bob}"
    response = scrub(client, {"text": text})
    assert response.json == {
        "text": f"{PORTAL}/ {PORTAL}/",
        "removed": 2,
        "user_ids": ["42", "bob"],
    }


def test_other_hosts_and_schemes_are_left_alone(client, enabled):
    token = enabled.token()
    text = (
        f"http://portal.example.com/?auto_login={token} "
        f"https://portal.example.com.evil.test/?auto_login={token} "
        f"https://portal.example.com:8443/?auto_login={token}"
    )
    response = scrub(client, {"text": text, "content_type": "text/html"})
    assert response.json == {"text": text, "removed": 0, "user_ids": []}


def test_the_log_says_how_many_but_never_the_token(client, enabled, caplog):
    token = enabled.token()
    with caplog.at_level(logging.INFO, logger="service"):
        response = scrub(client, {"text": f"{PORTAL}/?auto_login={token}"})
    assert response.status_code == 200
    assert "removed 1 tokens" in caplog.text
    assert token not in caplog.text
    for part in token.split("."):
        assert part not in caplog.text


def test_scrub_in_a_named_tenant_reads_the_tenant_once(app, client, monkeypatch):
    # The tenant's portal address comes from the read that found the tenant.
    made = client.post(
        "/v1/admin/tenants",
        json={"tenant_id": "acme", "portal_base_url": "https://acme.example.com", "reason": "r"},
        headers=auth("admin-key"),
    )
    assert made.status_code == 201
    calls = count_store_calls(monkeypatch, app)

    response = client.post(
        "/v1/tenants/acme/scrub",
        json={"text": "see https://acme.example.com/t?auto_login=abc"},
        headers=auth("issuer-key"),
    )

    assert response.status_code == 200
    assert response.json["text"] == "see https://acme.example.com/t"
    assert calls == ["get_tenant"]
