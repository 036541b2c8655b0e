"""``POST /v1/links`` and ``POST /v1/links/batch`` through the test client."""

from __future__ import annotations

import json
import re

import jwt
import pytest

from tests.conftest import PORTAL, auth

T0_ISO = "2026-11-25T10:00:00Z"
ALICE = "alice@example.com"
TOKEN = r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def token_of(url: str) -> str:
    match = re.search(rf"[?&]auto_login=({TOKEN})", url)
    assert match, url
    return match.group(1)


def link_request(user_id: str = "42", email: str = ALICE, **extra) -> dict:
    return {"user_id": user_id, "email": email, "recipients": {"to": [email]}, **extra}


def post_batch(client, items):
    return client.post("/v1/links/batch", json={"items": items}, headers=auth("issuer-key"))


# -- the switch -----------------------------------------------------------


def test_new_install_answers_plain_link_with_reason_disabled(links):
    response = links.issue(target="/tickets/1234")

    assert response.status_code == 200
    assert response.json == {
        "url": f"{PORTAL}/tickets/1234",
        "auto_login": False,
        "reason": "disabled",
        "expires_at": None,
        "link_id": None,
    }


def test_switching_off_again_gives_plain_links(enabled):
    enabled.enable(False)

    response = enabled.issue()

    assert response.json["auto_login"] is False
    assert response.json["reason"] == "disabled"
    assert response.json["url"] == f"{PORTAL}/"


# -- who may get a token ------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "recipients"),
    (
        (ALICE, {"to": [ALICE]}),
        (ALICE, {"to": ["Alice@Example.com"]}),
        ("ALICE@EXAMPLE.COM", {"to": [ALICE]}),
        (ALICE, {"to": [ALICE], "cc": [], "bcc": []}),
        (ALICE, {"to": [ALICE], "cc": ["ALICE@example.com"], "bcc": ["alice@EXAMPLE.com"]}),
        (ALICE, {"to": [ALICE, "Alice@Example.com"]}),
        (ALICE, {"to": [], "cc": [ALICE]}),
        (ALICE, {"to": [], "bcc": [ALICE]}),
        (ALICE, {"to": [ALICE] * 101}),
    ),
    ids=[
        "same-case",
        "to-differs-in-case",
        "email-differs-in-case",
        "empty-cc-and-bcc",
        "same-address-in-to-cc-bcc",
        "same-address-twice-in-to",
        "cc-only",
        "bcc-only",
        "same-address-101-times",
    ],
)
def test_the_user_as_only_recipient_gets_a_token(enabled, email, recipients):
    response = enabled.issue(email=email, recipients=recipients)

    assert response.status_code == 200
    assert response.json["auto_login"] is True
    assert response.json["reason"] is None
    assert claims_of(token_of(response.json["url"]))["sub"] == "42"


@pytest.mark.parametrize(
    ("recipients", "reason"),
    (
        ({"to": [ALICE, "bob@example.com"]}, "multiple_recipients"),
        ({"to": [ALICE], "cc": ["bob@example.com"]}, "multiple_recipients"),
        ({"to": [ALICE], "bcc": ["bob@example.com"]}, "multiple_recipients"),
        ({"to": [], "cc": [ALICE], "bcc": ["bob@example.com"]}, "multiple_recipients"),
        ({"to": ["bob@example.com"], "cc": ["Bob@Example.com"]}, "recipient_mismatch"),
        ({"to": ["bob@example.com"]}, "recipient_mismatch"),
        ({"to": [], "cc": ["bob@example.com"]}, "recipient_mismatch"),
        ({"to": ["alice@example.org"]}, "recipient_mismatch"),
        ({"to": [ALICE], "bcc": [f"b{i}@example.com" for i in range(5000)]}, "multiple_recipients"),
        ({"to": [f"u{i}@example.com" for i in range(101)]}, "multiple_recipients"),
    ),
    ids=[
        "two-in-to",
        "to-and-cc",
        "to-and-bcc",
        "cc-and-bcc",
        "only-bob-twice",
        "only-bob",
        "only-bob-in-cc",
        "other-domain",
        "a-mailing-list-in-bcc",
        "101-in-to",
    ],
)
def test_an_email_not_only_to_the_user_gets_the_plain_link(enabled, recipients, reason):
    response = enabled.issue(recipients=recipients, target="/tickets/7")

    assert response.status_code == 200
    assert response.json == {
        "url": f"{PORTAL}/tickets/7",
        "auto_login": False,
        "reason": reason,
        "expires_at": None,
        "link_id": None,
    }


# -- the URL ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "before", "after"),
    (
        ("/", "/?", ""),
        ("/tickets/1234", "/tickets/1234?", ""),
        ("/tickets/1234?tab=notes", "/tickets/1234?tab=notes&", ""),
        ("/tickets/1234?tab=notes&x=1", "/tickets/1234?tab=notes&x=1&", ""),
        ("/tickets/1234#notes", "/tickets/1234?", "#notes"),
        ("/tickets/1234?tab=notes#latest", "/tickets/1234?tab=notes&", "#latest"),
    ),
)
def test_url_is_portal_plus_target_with_the_token_parameter(enabled, target, before, after):
    response = enabled.issue(target=target)

    url = response.json["url"]
    assert re.fullmatch(re.escape(PORTAL + before) + "auto_login=" + TOKEN + re.escape(after), url)
    assert claims_of(token_of(url))["tgt"] == target


def test_target_defaults_to_the_portal_root(enabled):
    response = enabled.issue()

    assert response.json["url"].startswith(f"{PORTAL}/?auto_login=")
    assert claims_of(token_of(response.json["url"]))["tgt"] == "/"


def test_url_keeps_the_base_path_of_the_portal(make_app):
    app = make_app(PORTAL_BASE_URL="https://portal.example.com/help/")
    client = app.test_client()
    client.patch("/v1/admin/settings", json={"auto_login_enabled": True}, headers=auth("admin-key"))

    response = client.post(
        "/v1/links", json=link_request(target="/tickets/9"), headers=auth("issuer-key")
    )

    assert response.json["url"].startswith("https://portal.example.com/help/tickets/9?auto_login=")


# -- lifetime -----------------------------------------------------------------


def test_expires_at_is_now_plus_the_default_lifetime(frozen, enabled):
    response = enabled.issue()

    assert response.json["expires_at"] == "2026-11-28T10:00:00Z"  # 259200 s
    claims = claims_of(token_of(response.json["url"]))
    assert claims["iat"] == 1795600800
    assert claims["exp"] - claims["iat"] == 259200


@pytest.mark.parametrize(
    ("ttl", "expires_at"),
    (
        (60, "2026-11-25T10:01:00Z"),
        (86400, "2026-11-26T10:00:00Z"),
        (604800, "2026-12-02T10:00:00Z"),
        (86400.0, "2026-11-26T10:00:00Z"),  # JSON Schema's integer: a whole float too
    ),
)
def test_ttl_seconds_sets_the_lifetime(frozen, enabled, ttl, expires_at):
    response = enabled.issue(ttl_seconds=ttl)

    assert response.status_code == 200
    assert response.json["expires_at"] == expires_at
    claims = claims_of(token_of(response.json["url"]))
    assert claims["exp"] - claims["iat"] == ttl


def test_the_admin_lifetime_is_the_default(frozen, enabled):
    enabled.enable(token_ttl_seconds=3600)

    response = enabled.issue()

    assert response.json["expires_at"] == "2026-11-25T11:00:00Z"


def test_explicit_ttl_wins_over_the_admin_lifetime(frozen, enabled):
    enabled.enable(token_ttl_seconds=3600)

    response = enabled.issue(ttl_seconds=120)

    assert response.json["expires_at"] == "2026-11-25T10:02:00Z"


@pytest.mark.parametrize("ttl", (0, 1, 59, 604801, 10**9, -60))
def test_ttl_outside_60_to_max_is_invalid_ttl(enabled, ttl):
    response = enabled.issue(ttl_seconds=ttl)

    assert response.status_code == 400
    assert response.json["code"] == "invalid_ttl"
    assert "ttl_seconds" in response.json["detail"]


def test_invalid_ttl_is_refused_even_when_disabled(links):
    response = links.issue(ttl_seconds=59)

    assert response.status_code == 400
    assert response.json["code"] == "invalid_ttl"


def test_ttl_above_a_lower_configured_maximum_is_invalid_ttl(make_app):
    client = make_app(MAX_TOKEN_TTL_SECONDS=3600).test_client()

    response = client.post(
        "/v1/links", json=link_request(ttl_seconds=3601), headers=auth("issuer-key")
    )

    assert response.status_code == 400
    assert response.json["code"] == "invalid_ttl"


# -- target -------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    (
        "https://evil.test/",
        "http://portal.example.com/tickets/1",
        "//evil.test",
        "//evil.test/tickets/1",
        "/\\evil.test",
        "\\\\evil.test",
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "tickets/1234",
        "/tickets/1\n",
        "/tickets/\r\nSet-Cookie: x=1",
        "/tickets/\x00",
        "/\ttickets",
        "/tickets\x7f",
        "/%2F%2Fevil.test",
        "/%2f%2fevil.test",
        "/%5Cevil.test",
        "",
        "/tickets/1?auto_login=abc",
        "/tickets/1?tab=notes&auto_login=",
        "/?auto_login=eyJhbGciOi.x.y",
    ),
)
def test_anything_but_a_portal_path_is_invalid_target(enabled, target):
    response = enabled.issue(target=target)

    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json["code"] == "invalid_target"
    assert "target" in response.json["detail"]


@pytest.mark.parametrize("target", (1234, None, True, ["/tickets/1"], {"path": "/"}))
def test_a_target_that_is_not_a_string_is_an_ill_typed_field(enabled, target):
    response = enabled.issue(target=target)

    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json["code"] == "invalid_request"
    assert response.json["detail"].startswith("target:")


def test_invalid_target_is_refused_even_when_disabled(links):
    response = links.issue(target="//evil.test")

    assert response.status_code == 400
    assert response.json["code"] == "invalid_target"


# -- request validation -------------------------------------------------------


def _without(body: dict, name: str) -> dict:
    return {k: v for k, v in body.items() if k != name}


BASE = link_request()


@pytest.mark.parametrize(
    ("body", "field"),
    (
        (_without(BASE, "user_id"), "user_id"),
        ({**BASE, "user_id": ""}, "user_id"),
        ({**BASE, "user_id": "user 42"}, "user_id"),
        ({**BASE, "user_id": "42/7"}, "user_id"),
        ({**BASE, "user_id": "jürgen"}, "user_id"),
        ({**BASE, "user_id": "a" * 129}, "user_id"),
        ({**BASE, "user_id": 42}, "user_id"),
        ({**BASE, "user_id": None}, "user_id"),
        (_without(BASE, "email"), "email"),
        ({**BASE, "email": "not-an-address"}, "email"),
        ({**BASE, "email": "Alice <alice@example.com>"}, "email"),
        ({**BASE, "email": "alice@"}, "email"),
        ({**BASE, "email": 42}, "email"),
        (_without(BASE, "recipients"), "recipients"),
        ({**BASE, "recipients": {"to": [], "cc": [], "bcc": []}}, "recipients"),
        ({**BASE, "recipients": {"to": []}}, "recipients"),
        ({**BASE, "recipients": [ALICE]}, "recipients"),
        ({**BASE, "recipients": ALICE}, "recipients"),
        ({**BASE, "recipients": None}, "recipients"),
        ({**BASE, "recipients": {"to": ALICE}}, "recipients.to"),
        ({**BASE, "recipients": {"to": [ALICE], "cc": ALICE}}, "recipients.cc"),
        ({**BASE, "recipients": {"to": [ALICE], "bcc": {"a": 1}}}, "recipients.bcc"),
        ({**BASE, "recipients": {"to": [42]}}, "recipients.to"),
        ({**BASE, "recipients": {"to": [ALICE, None]}}, "recipients.to"),
        ({**BASE, "recipients": {"to": ["not an address"]}}, "recipients.to"),
        ({**BASE, "recipients": {"to": [ALICE], "cc": ["x@"]}}, "recipients.cc"),
        ({**BASE, "ttl_seconds": "3600"}, "ttl_seconds"),
        ({**BASE, "ttl_seconds": True}, "ttl_seconds"),
        ({**BASE, "ttl_seconds": 3600.5}, "ttl_seconds"),
    ),
)
def test_a_missing_or_ill_typed_field_is_invalid_request_naming_it(client, links, body, field):
    links.enable()

    response = client.post("/v1/links", json=body, headers=auth("issuer-key"))

    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json["code"] == "invalid_request"
    assert field in response.json["detail"]


@pytest.mark.parametrize("user_id", ("a" * 128, "A-Z.a_z:0@9+x-", "0"))
def test_user_ids_of_the_allowed_characters_and_length_are_accepted(enabled, user_id):
    response = enabled.issue(user_id=user_id)

    assert response.status_code == 200
    assert claims_of(token_of(response.json["url"]))["sub"] == user_id


# -- the token ----------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    (
        "/tickets/1234567890/notes?tab=attachments&page=12&sort=date-desc",
        "/" + "%2A" * 21,
        "/" + "x" * 63,
    ),
)
def test_token_is_at_most_512_characters_for_long_user_id_and_target(enabled, target):
    assert len(target) == 64
    user_id = "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert len(user_id) == 36

    response = enabled.issue(user_id=user_id, target=target, ttl_seconds=604800)

    token = token_of(response.json["url"])
    assert len(token) <= 512


def test_no_email_address_is_in_the_token(enabled):
    response = enabled.issue(
        email="Alice.Smith@Example.com", recipients={"to": ["alice.smith@example.com"]}
    )

    token = token_of(response.json["url"])
    payload = json.dumps(claims_of(token)).lower()
    header = json.dumps(jwt.get_unverified_header(token)).lower()
    for text in (payload, header):
        assert "@" not in text
        assert "alice" not in text
        assert "example.com" not in text
    assert "alice" not in response.json["url"].lower()


def test_each_token_is_unique(enabled):
    tokens = {token_of(enabled.issue().json["url"]) for _ in range(5)}

    assert len(tokens) == 5
    assert len({claims_of(t)["jti"] for t in tokens}) == 5


# -- batch --------------------------------------------------------------------


def test_batch_answers_each_item_in_order(frozen, enabled, client):
    items = [
        link_request("1", target="/tickets/1"),
        link_request("2", recipients={"to": [ALICE, "bob@example.com"]}, target="/tickets/2"),
        link_request("3", target="/tickets/3", ttl_seconds=60),
        link_request("4", recipients={"to": ["bob@example.com"]}, target="/tickets/4"),
    ]

    response = post_batch(client, items)

    assert response.status_code == 200
    answers = response.json["items"]
    assert len(answers) == 4
    assert claims_of(token_of(answers[0]["url"]))["sub"] == "1"
    assert answers[0]["url"].startswith(f"{PORTAL}/tickets/1?auto_login=")
    assert answers[0]["expires_at"] == "2026-11-28T10:00:00Z"
    assert answers[1] == {
        "url": f"{PORTAL}/tickets/2",
        "auto_login": False,
        "reason": "multiple_recipients",
        "expires_at": None,
        "link_id": None,
    }
    assert claims_of(token_of(answers[2]["url"]))["sub"] == "3"
    assert answers[2]["expires_at"] == "2026-11-25T10:01:00Z"
    assert answers[3]["reason"] == "recipient_mismatch"


def test_batch_gives_an_invalid_item_its_own_error(enabled, client):
    items = [
        link_request("1"),
        link_request("bad id"),
        link_request("3", target="//evil.test"),
        link_request("4", ttl_seconds=59),
        "not an object",
        None,
        link_request("7"),
    ]

    response = post_batch(client, items)

    assert response.status_code == 200
    answers = response.json["items"]
    assert len(answers) == 7
    assert answers[0]["auto_login"] is True
    assert answers[6]["auto_login"] is True
    expected_codes = {
        1: "invalid_request",
        2: "invalid_target",
        3: "invalid_ttl",
        4: "invalid_request",
        5: "invalid_request",
    }
    for index, code in expected_codes.items():
        assert set(answers[index]) == {"error"}
        assert set(answers[index]["error"]) == {"code", "detail"}
        assert answers[index]["error"]["code"] == code
    assert "user_id" in answers[1]["error"]["detail"]
    assert "target" in answers[2]["error"]["detail"]


def test_batch_of_only_invalid_items_is_still_200(enabled, client):
    response = post_batch(client, [link_request("bad id"), 42])

    assert response.status_code == 200
    assert [a["error"]["code"] for a in response.json["items"]] == ["invalid_request"] * 2


def test_batch_while_disabled_gives_plain_links(links, client):
    response = post_batch(client, [link_request("1"), link_request("2")])

    assert [a["reason"] for a in response.json["items"]] == ["disabled", "disabled"]


def test_batch_of_1000_items_is_answered(enabled, client):
    items = [link_request(str(i), target=f"/tickets/{i}") for i in range(1000)]

    response = post_batch(client, items)

    assert response.status_code == 200
    answers = response.json["items"]
    assert len(answers) == 1000
    assert all(a["auto_login"] is True for a in answers)
    assert claims_of(token_of(answers[999]["url"]))["sub"] == "999"
    assert answers[999]["url"].startswith(f"{PORTAL}/tickets/999?")


def test_batch_of_1001_items_is_batch_too_large(enabled, client):
    response = post_batch(client, [link_request(str(i)) for i in range(1001)])

    assert response.status_code == 413
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json["code"] == "batch_too_large"


@pytest.mark.parametrize(
    "body",
    (
        {"items": []},
        {"items": "x"},
        {"items": {"user_id": "42"}},
        {"items": None},
        {"items": 3},
        {},
        {"item": [link_request()]},
    ),
)
def test_batch_without_a_list_of_items_is_invalid_request(client, body):
    response = client.post("/v1/links/batch", json=body, headers=auth("issuer-key"))

    assert response.status_code == 400
    assert response.json["code"] == "invalid_request"
    assert "items" in response.json["detail"]


def test_batch_tokens_of_mixed_users_each_verify_to_their_own_user(enabled, client):
    items = [
        link_request("alice", target="/tickets/1"),
        link_request("bob", email="bob@example.com", target="/tickets/2"),
        link_request("carol", email="carol@example.com", target="/tickets/3"),
        link_request("alice", target="/tickets/4"),
    ]

    answers = post_batch(client, items).json["items"]

    for item, answer in zip(items, answers, strict=True):
        verified = enabled.verify(token_of(answer["url"]))
        assert verified.status_code == 200
        assert verified.json["user_id"] == item["user_id"]
        assert verified.json["target"] == item["target"]


def test_batch_honours_a_per_user_revocation(enabled, client):
    assert enabled.revoke("bob").status_code == 200
    items = [link_request("alice"), link_request("bob", email="bob@example.com")]

    answers = post_batch(client, items).json["items"]

    assert [enabled.verify(token_of(a["url"])).status_code for a in answers] == [200, 200]
