"""``POST /v1/tokens/verify`` through the test client."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import uuid
import warnings
from datetime import timedelta

import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning

from service.tokens import REQUIRED_CLAIMS
from tests.conftest import SECRETS, SIGNING_KEYS, LinkActions, auth

T0 = 1795600800  # 2026-11-25T10:00:00Z, the `frozen` instant
LEEWAY = 30
FOREIGN_SECRET = "a-secret-this-service-never-held-0123456789abcdef"


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def mint(
    claims: dict, *, key: str | None = SIGNING_KEYS["k1"], kid="k1", alg="HS256", **headers
) -> str:
    """Sign ``claims`` as an attacker or a sloppy sibling service would."""
    if kid is not None:
        headers["kid"] = kid
    with warnings.catch_warnings():
        # HS512 with a 49-byte test key: short for HS512, which is beside the point here.
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(claims, key, algorithm=alg, headers=headers)


def mint_raw(header: dict, claims: dict, key: str = SIGNING_KEYS["k1"]) -> str:
    """Sign by hand: for headers PyJWT itself refuses to write."""

    def b64(data: dict) -> str:
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = f"{b64(header)}.{b64(claims)}"
    signature = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def signins(client, user_id=None) -> list[dict]:
    query = {"user_id": user_id} if user_id else {}
    response = client.get("/v1/admin/signins", query_string=query, headers=auth("admin-key"))
    assert response.status_code == 200
    return response.json["signins"]


@pytest.fixture
def genuine(frozen, enabled) -> dict:
    """The claims of a token this service issued at T0 for 24 hours."""
    return claims_of(enabled.token(target="/tickets/1234", ttl_seconds=86400))


def assert_refused(response, code: str) -> None:
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json["code"] == code
    assert set(response.json) >= {"type", "title", "status", "detail", "code"}


# -- a fresh token -------------------------------------------------------------


def test_fresh_token_verifies_with_exact_claims(frozen, enabled):
    token = enabled.token(target="/tickets/1234?tab=notes", ttl_seconds=86400)

    response = enabled.verify(token)

    assert response.status_code == 200
    assert response.json == {
        "user_id": "42",
        "target": "/tickets/1234?tab=notes",
        "issued_at": "2026-11-25T10:00:00Z",
        "expires_at": "2026-11-26T10:00:00Z",
    }


def test_token_verifies_more_than_once_while_valid(frozen, enabled):
    token = enabled.token()
    frozen.tick(timedelta(hours=1))

    assert enabled.verify(token).status_code == 200
    assert enabled.verify(token).status_code == 200


def test_resigned_copy_of_a_genuine_token_verifies(enabled, genuine):
    """The minting helper is right: the refusals below are about the change alone."""
    response = enabled.verify(mint(genuine))

    assert response.status_code == 200
    assert response.json["user_id"] == "42"


# -- expiry --------------------------------------------------------------------


def test_token_is_valid_just_before_expiry_plus_leeway(frozen, enabled):
    token = enabled.token(ttl_seconds=60)
    frozen.tick(timedelta(seconds=60 + LEEWAY - 1))

    response = enabled.verify(token)

    assert response.status_code == 200


def test_token_is_valid_at_exactly_expiry_plus_leeway(frozen, enabled):
    token = enabled.token(ttl_seconds=60)
    frozen.tick(timedelta(seconds=60 + LEEWAY))

    response = enabled.verify(token)

    assert response.status_code == 200


def test_token_one_second_past_expiry_plus_leeway_is_token_expired(frozen, enabled):
    token = enabled.token(ttl_seconds=60)
    frozen.tick(timedelta(seconds=60 + LEEWAY + 1))

    response = enabled.verify(token)

    assert_refused(response, "token_expired")
    assert "2026-11-25T10:01:00Z" in response.json["detail"]


def test_expired_token_that_was_also_revoked_is_token_expired(frozen, enabled):
    token = enabled.token(ttl_seconds=60)
    enabled.bump()
    frozen.tick(timedelta(hours=1))

    assert_refused(enabled.verify(token), "token_expired")


# -- revocation ----------------------------------------------------------------


def test_global_bump_revokes_every_earlier_token(enabled):
    alice, bob = enabled.token("alice"), enabled.token("bob")

    assert enabled.bump().status_code == 200

    assert_refused(enabled.verify(alice), "token_revoked")
    assert_refused(enabled.verify(bob), "token_revoked")


def test_token_issued_after_a_bump_verifies(enabled):
    enabled.bump()

    assert enabled.verify(enabled.token()).status_code == 200


def test_user_revoke_revokes_only_that_users_tokens(enabled):
    alice_1, alice_2, bob = enabled.token("alice"), enabled.token("alice"), enabled.token("bob")

    assert enabled.revoke("alice").status_code == 200

    assert_refused(enabled.verify(alice_1), "token_revoked")
    assert_refused(enabled.verify(alice_2), "token_revoked")
    assert enabled.verify(bob).status_code == 200
    assert enabled.verify(enabled.token("alice")).status_code == 200


@pytest.mark.parametrize(
    "change",
    (
        {"ep": 0},
        {"ep": 2},  # an epoch from the "future" is no more trustworthy
        {"uep": 1},
        {"sid": "another-store"},
    ),
    ids=["older-epoch", "future-epoch", "other-user-epoch", "other-store-incarnation"],
)
def test_genuine_token_of_other_epochs_is_token_revoked(enabled, genuine, change):
    response = enabled.verify(mint({**genuine, **change}))

    assert_refused(response, "token_revoked")


def test_token_of_a_lost_store_is_token_revoked_by_a_fresh_one(config, make_app, enabled, tmp_path):
    token = enabled.token()
    fresh = {"STORE_KEY_PREFIX": f"test-{uuid.uuid4().hex[:12]}:"}
    if config["STORE_URL"].startswith("sqlite"):
        fresh["STORE_URL"] = f"sqlite:///{tmp_path / 'fresh' / 'store.db'}"
    client = make_app(**fresh).test_client()

    response = client.post("/v1/tokens/verify", json={"token": token}, headers=auth("portal-key"))

    assert_refused(response, "token_revoked")


# -- invalid tokens ------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    (
        "garbage",
        "",
        " ",
        "\n",
        ".",
        "..",
        "a.b.c",
        "eyJ",
        "eyJhbGciOiJIUzI1NiJ9..",
        "eyJhbGciOiJIUzI1NiIsImtpZCI6ImsxIn0.e30.",
        "null",
        "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x",
        "é.é.é",
        "A" * 4097,
    ),
)
def test_garbage_is_token_invalid(enabled, token):
    assert_refused(enabled.verify(token), "token_invalid")


def test_genuine_token_padded_past_4096_characters_is_token_invalid(enabled):
    token = enabled.token()
    long_token = token + "A" * (4097 - len(token))

    assert_refused(enabled.verify(long_token), "token_invalid")


@pytest.mark.parametrize(
    ("change", "mint_options"),
    (
        ({}, {"key": FOREIGN_SECRET}),
        ({}, {"key": SIGNING_KEYS["k1"], "kid": "k2"}),
        ({}, {"kid": "k3"}),
        ({}, {"kid": None}),
        ({}, {"kid": "../k1"}),
        ({}, {"key": None, "alg": "none"}),
        ({}, {"key": None, "alg": "none", "kid": None}),
        ({}, {"alg": "HS512"}),
        ({}, {"alg": "HS384"}),
        ({"aud": "another-audience"}, {}),
        ({"aud": ["helpdesk-portal", "another"]}, {}),
        ({"iss": "someone-else"}, {}),
        ({"pur": "password-reset"}, {}),
        ({"sub": 42}, {}),
        ({"sub": "user 42"}, {}),
        ({"tgt": "https://evil.test/"}, {}),
        ({"ep": "1"}, {}),
        ({"exp": T0 + 604801}, {}),
        ({"iat": T0 + LEEWAY + 1, "exp": T0 + 3600}, {}),
        ({"iat": T0 + 86400, "exp": T0 + 2 * 86400}, {}),
    ),
    ids=[
        "unknown-secret",
        "k1-secret-under-kid-k2",
        "unknown-kid",
        "no-kid",
        "path-kid",
        "alg-none",
        "alg-none-without-kid",
        "HS512",
        "HS384",
        "wrong-audience",
        "audience-list",
        "wrong-issuer",
        "wrong-purpose",
        "integer-sub",
        "bad-sub",
        "target-not-a-path",
        "string-epoch",
        "lifetime-above-max",
        "iat-future-beyond-leeway",
        "iat-a-day-ahead",
    ],
)
def test_forged_or_foreign_token_is_token_invalid(enabled, genuine, change, mint_options):
    token = mint({**genuine, **change}, **mint_options)

    assert_refused(enabled.verify(token), "token_invalid")


def test_hand_signed_copy_of_a_genuine_token_verifies(enabled, genuine):
    token = mint_raw({"alg": "HS256", "kid": "k1", "typ": "JWT"}, genuine)

    assert enabled.verify(token).status_code == 200


@pytest.mark.parametrize(
    "header",
    (
        {"alg": "HS256", "kid": 1},
        {"alg": "HS256", "kid": ["k1"]},
        {"alg": "HS256", "kid": {"id": "k1"}},
        {"alg": "HS256", "kid": None},
        {"alg": "hs256", "kid": "k1"},
        {"alg": ["HS256"], "kid": "k1"},
        {"kid": "k1"},
        {"alg": "HS256", "kid": "k1", "crit": ["exp"]},
    ),
    ids=[
        "numeric-kid",
        "list-kid",
        "object-kid",
        "null-kid",
        "lower-case-alg",
        "list-alg",
        "no-alg",
        "unknown-crit",
    ],
)
def test_token_with_an_odd_header_is_token_invalid(enabled, genuine, header):
    assert_refused(enabled.verify(mint_raw(header, genuine)), "token_invalid")


def test_iat_in_the_future_within_leeway_is_accepted(enabled, genuine):
    token = mint({**genuine, "iat": T0 + LEEWAY})

    assert enabled.verify(token).status_code == 200


@pytest.mark.parametrize("claim", REQUIRED_CLAIMS)
def test_token_missing_a_required_claim_is_token_invalid(enabled, genuine, claim):
    claims = {name: value for name, value in genuine.items() if name != claim}

    assert_refused(enabled.verify(mint(claims)), "token_invalid")


@pytest.mark.parametrize(
    ("change", "mint_options"),
    (
        ({"aud": "another-audience"}, {}),
        ({"iss": "someone-else"}, {}),
        ({"pur": "password-reset"}, {}),
        ({}, {"key": FOREIGN_SECRET}),
        ({}, {"kid": "k3"}),
    ),
    ids=["wrong-audience", "wrong-issuer", "wrong-purpose", "unknown-secret", "unknown-kid"],
)
def test_expired_token_that_is_not_ours_is_token_invalid_not_expired(
    frozen, enabled, genuine, change, mint_options
):
    token = mint({**genuine, **change}, **mint_options)
    frozen.tick(timedelta(days=2))

    assert_refused(enabled.verify(token), "token_invalid")


def test_forged_token_of_an_old_epoch_is_token_invalid_not_revoked(enabled, genuine):
    enabled.bump()

    response = enabled.verify(mint(genuine, key=FOREIGN_SECRET))

    assert_refused(response, "token_invalid")


# -- key rotation --------------------------------------------------------------


def test_rotated_app_signs_with_k2_and_still_verifies_k1_tokens(make_app, enabled):
    k1_token = enabled.token()
    rotated = make_app(ACTIVE_KEY_ID="k2").test_client()

    k2_token = LinkActions(rotated).token("43")

    assert jwt.get_unverified_header(k1_token)["kid"] == "k1"
    assert jwt.get_unverified_header(k2_token)["kid"] == "k2"
    assert LinkActions(rotated).verify(k1_token).json["user_id"] == "42"
    assert LinkActions(rotated).verify(k2_token).json["user_id"] == "43"
    assert enabled.verify(k2_token).json["user_id"] == "43"


def test_app_without_k1_refuses_k1_tokens(make_app, enabled):
    k1_token = enabled.token()
    retired = make_app(SIGNING_KEYS={"k2": SIGNING_KEYS["k2"]}, ACTIVE_KEY_ID="k2")

    response = retired.test_client().post(
        "/v1/tokens/verify", json={"token": k1_token}, headers=auth("portal-key")
    )

    assert_refused(response, "token_invalid")


# -- request validation --------------------------------------------------------


@pytest.mark.parametrize("token", (42, None, True, ["eyJ"], {"token": "eyJ"}))
def test_token_that_is_not_a_string_is_invalid_request(client, token):
    response = client.post("/v1/tokens/verify", json={"token": token}, headers=auth("portal-key"))

    assert response.status_code == 400
    assert response.json["code"] == "invalid_request"
    assert "token" in response.json["detail"]


def test_missing_token_is_invalid_request(client):
    response = client.post("/v1/tokens/verify", json={}, headers=auth("portal-key"))

    assert response.status_code == 400
    assert response.json["code"] == "invalid_request"
    assert "token" in response.json["detail"]


@pytest.mark.parametrize(
    "client_info",
    (
        "203.0.113.7",
        ["203.0.113.7"],
        42,
        True,
        {"ip": "203.0.113.7", "referer": "x"},
        {"country": "NL"},
        {"ip": "1" * 65},
        {"user_agent": "a" * 513},
        {"ip": 42},
        {"ip": ["203.0.113.7"]},
        {"user_agent": {"name": "curl"}},
        {"user_agent": False},
    ),
)
def test_client_that_is_not_the_contract_object_is_invalid_request(enabled, client_info):
    token = enabled.token()

    response = enabled.verify(token, client=client_info)

    assert response.status_code == 400
    assert response.json["code"] == "invalid_request"
    assert "client" in response.json["detail"]


@pytest.mark.parametrize(
    "client_info",
    (
        None,
        {},
        {"ip": None, "user_agent": None},
        {"ip": "1" * 64, "user_agent": "a" * 512},
        {"ip": "2001:db8::1"},
    ),
)
def test_client_within_limits_is_accepted(enabled, client_info):
    response = enabled.verify(enabled.token(), client=client_info)

    assert response.status_code == 200


# -- the sign-in log -----------------------------------------------------------

CLICK = {"ip": "203.0.113.7", "user_agent": "Mozilla/5.0 (test)"}


def test_signin_log_records_ok_expired_and_revoked_with_the_client(frozen, enabled, client):
    ok = enabled.token("alice")
    short = enabled.token("bob", email="bob@example.com", ttl_seconds=60)
    revoked = enabled.token("carol", email="carol@example.com")
    enabled.revoke("carol")

    enabled.verify(ok, client=CLICK)
    frozen.tick(timedelta(seconds=120))
    enabled.verify(short, client=CLICK)
    enabled.verify(revoked, client={"ip": "198.51.100.1"})

    def link(token):  # each entry names its token's link
        return {"link_id": jwt.decode(token, options={"verify_signature": False})["jti"]}

    assert signins(client) == [
        {
            "at": "2026-11-25T10:02:00Z",
            "user_id": "carol",
            "outcome": "token_revoked",
            "ip": "198.51.100.1",
            "user_agent": None,
            **link(revoked),
        },
        {
            "at": "2026-11-25T10:02:00Z",
            "user_id": "bob",
            "outcome": "token_expired",
            **CLICK,
            **link(short),
        },
        {"at": "2026-11-25T10:00:00Z", "user_id": "alice", "outcome": "ok", **CLICK, **link(ok)},
    ]


@pytest.mark.parametrize(
    ("change", "mint_options"),
    (
        ({}, {"key": FOREIGN_SECRET}),
        ({}, {"kid": "k3"}),
        ({}, {"key": None, "alg": "none"}),
        ({"pur": "password-reset"}, {}),
        ({"aud": "another-audience"}, {}),
        ({"exp": T0 - 3600, "iat": T0 - 7200}, {"key": FOREIGN_SECRET}),
        ({"ep": 0}, {"key": FOREIGN_SECRET}),
    ),
    ids=[
        "unknown-secret",
        "unknown-kid",
        "alg-none",
        "wrong-purpose",
        "wrong-audience",
        "forged-expired",
        "forged-old-epoch",
    ],
)
def test_signin_log_records_nothing_for_a_token_that_is_not_genuine(
    enabled, genuine, client, change, mint_options
):
    response = enabled.verify(mint({**genuine, **change}, **mint_options), client=CLICK)

    assert_refused(response, "token_invalid")
    assert signins(client) == []


def test_signin_log_records_nothing_for_garbage(enabled, client):
    enabled.verify("garbage", client=CLICK)

    assert signins(client) == []


def test_signin_log_off_records_nothing(make_app, enabled, client):
    quiet = LinkActions(make_app(SIGNIN_LOG=False).test_client())
    token = enabled.token()
    enabled.revoke("42")
    fresh = enabled.token()

    assert quiet.verify(fresh, client=CLICK).status_code == 200
    assert quiet.verify(token, client=CLICK).json["code"] == "token_revoked"
    assert signins(client) == []


# -- what the log says ---------------------------------------------------------


@pytest.mark.parametrize(
    ("prepare", "code", "logged"),
    (
        ("expire", "token_expired", "expired"),
        ("bump", "token_revoked", "revoked"),
        ("revoke", "token_revoked", "revoked"),
        ("forge", "token_invalid", "bad_signature"),
        ("retarget", "token_invalid", "malformed"),
    ),
)
def test_log_gives_the_precise_reason_and_never_the_token(
    frozen, enabled, caplog, prepare, code, logged
):
    caplog.set_level(logging.DEBUG)
    token = enabled.token(ttl_seconds=60)
    if prepare == "expire":
        frozen.tick(timedelta(minutes=5))
    elif prepare == "bump":
        enabled.bump()
    elif prepare == "revoke":
        enabled.revoke("42")
    elif prepare == "forge":
        token = mint(claims_of(token), key=FOREIGN_SECRET)
    else:
        token = mint({**claims_of(token), "aud": "another-audience"})
    caplog.clear()

    response = enabled.verify(token, client=CLICK)

    assert_refused(response, code)
    assert logged in caplog.text
    assert token not in caplog.text
    for part in token.split("."):
        assert part not in caplog.text
    for secret in SECRETS:
        assert secret not in caplog.text


def test_successful_verification_does_not_log_the_token(enabled, caplog):
    caplog.set_level(logging.DEBUG)
    token = enabled.token()

    assert enabled.verify(token).status_code == 200
    assert token.split(".")[2] not in caplog.text
