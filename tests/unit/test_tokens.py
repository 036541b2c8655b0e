"""The token core without Flask: exact claims, expiry, forgery, rotation."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from freezegun import freeze_time

from service.errors import (
    BadSignatureError,
    ExpiredTokenError,
    MalformedTokenError,
    RevokedTokenError,
)
from service.store import EPOCH_VALUES, TokenState, fresh_epoch_value
from service.tokens import (
    PURPOSE,
    REQUIRED_CLAIMS,
    check_epochs,
    issue_token,
    verify_token,
)
from tests.support.keyring import K1, K2, STATE, ring

T0 = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def payload(**overrides) -> dict:
    iat = int(T0.timestamp())
    values = {
        "iss": "autologin-links",
        "aud": "helpdesk-portal",
        "sub": "42",
        "iat": iat,
        "exp": iat + 3600,
        "jti": "unique-id",
        "pur": PURPOSE,
        "sid": "inc-A",
        "ep": 3,
        "uep": 1,
        "tgt": "/tickets/1",
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def mint(claims: dict, key: bytes = K1, kid: str = "k1", alg: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


@pytest.fixture(autouse=True)
def frozen():
    with freeze_time(T0) as freezer:
        yield freezer


def test_issue_sets_exact_iat_exp_and_every_claim():
    token, claims = issue_token("42", STATE, target="/tickets/1", ring=ring(), ttl=3600, now=T0)
    decoded = claims_of(token)
    assert decoded["iat"] == int(T0.timestamp())
    assert decoded["exp"] == int(T0.timestamp()) + 3600
    assert set(decoded) == {*REQUIRED_CLAIMS, "eid"}
    assert decoded["sub"] == "42" and decoded["pur"] == PURPOSE
    assert (decoded["sid"], decoded["ep"], decoded["uep"]) == ("inc-A", 3, 1)
    assert decoded["eid"] == STATE.epoch_id
    # No "typ" (optional, RFC 7519 5.1): its characters went to the epoch identity.
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "kid": "k1"}
    assert claims.expires_at - claims.issued_at == 3600


def test_every_token_has_its_own_jti():
    ids = {
        claims_of(issue_token("42", STATE, target="/", ring=ring(), ttl=60, now=T0)[0])["jti"]
        for _ in range(50)
    }
    assert len(ids) == 50


def test_issue_refuses_a_lifetime_above_the_maximum():
    with pytest.raises(ValueError):
        issue_token("42", STATE, target="/", ring=ring(max_ttl_seconds=3600), ttl=3601, now=T0)


def test_payload_holds_no_email_address():
    token, _ = issue_token("alice-7", STATE, target="/", ring=ring(), ttl=60, now=T0)
    assert "@" not in json.dumps(claims_of(token))


def test_fresh_token_verifies_to_its_claims():
    token, issued = issue_token("42", STATE, target="/t", ring=ring(), ttl=3600, now=T0)
    assert verify_token(token, ring()) == issued


def test_token_is_valid_until_exp_plus_leeway(frozen):
    # API.md: refused only when past its expiry plus the leeway.
    token, _ = issue_token("42", STATE, target="/", ring=ring(), ttl=3600, now=T0)
    frozen.tick(timedelta(seconds=3600 + 30))
    assert verify_token(token, ring()).user_id == "42"
    frozen.tick(timedelta(seconds=1))
    with pytest.raises(ExpiredTokenError) as exc_info:
        verify_token(token, ring())
    assert exc_info.value.expired_at == int(T0.timestamp()) + 3600
    assert exc_info.value.user_id == "42"


def test_without_leeway_expiry_is_exact(frozen):
    token, _ = issue_token("42", STATE, target="/", ring=ring(leeway_seconds=0), ttl=60, now=T0)
    frozen.tick(timedelta(seconds=60))
    assert verify_token(token, ring(leeway_seconds=0)).user_id == "42"
    frozen.tick(timedelta(seconds=1))
    with pytest.raises(ExpiredTokenError):
        verify_token(token, ring(leeway_seconds=0))


def test_token_from_the_future_is_malformed():
    token = mint(payload(iat=int(T0.timestamp()) + 31, exp=int(T0.timestamp()) + 3600))
    with pytest.raises(MalformedTokenError):
        verify_token(token, ring())


def test_token_issued_within_leeway_of_now_verifies():
    token = mint(payload(iat=int(T0.timestamp()) + 30))
    assert verify_token(token, ring()).user_id == "42"


@pytest.mark.parametrize("claim", REQUIRED_CLAIMS)
def test_each_missing_claim_is_malformed(claim):
    token = mint(payload(**{claim: None}))
    with pytest.raises(MalformedTokenError):
        verify_token(token, ring())


@pytest.mark.parametrize(
    ("claim", "value"),
    (
        ("aud", "another-audience"),
        ("iss", "another-issuer"),
        ("pur", "password-reset"),
        ("sub", 42),
        ("sub", "not a user id"),
        ("ep", "3"),
        ("uep", True),
        ("tgt", "https://evil.test/"),
        ("exp", int(T0.timestamp()) + 604801),
    ),
)
def test_wrong_claim_values_are_malformed(claim, value):
    with pytest.raises(MalformedTokenError):
        verify_token(mint(payload(**{claim: value})), ring())


def test_wrong_key_is_a_bad_signature():
    forged = mint(payload(), key=b"someone-else-s-secret-0123456789abcdef")
    with pytest.raises(BadSignatureError):
        verify_token(forged, ring())


def test_unknown_kid_is_malformed():
    with pytest.raises(MalformedTokenError):
        verify_token(mint(payload(), kid="k9"), ring())


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("alg", ("none", "None", "NONE", "nOnE"))
def test_alg_none_is_refused(alg):
    token = f"{_b64({'alg': alg, 'kid': 'k1'})}.{_b64(payload())}."
    with pytest.raises(MalformedTokenError):
        verify_token(token, ring())


@pytest.mark.parametrize("alg", ("HS384", "HS512"))
def test_other_algorithms_are_refused_even_with_a_known_key(alg):
    long_key = K1 * 2  # long enough that PyJWT signs without a key-length warning
    with pytest.raises(MalformedTokenError):
        verify_token(mint(payload(), key=long_key, alg=alg), ring(keys={"k1": long_key}))


@pytest.mark.parametrize(
    "token",
    ("", "abc", "a.b.c", "a.b", "....", "eyJ.eyJ.sig", "x" * 4097, None, 12, ["a"]),
)
def test_garbage_is_malformed(token):
    with pytest.raises(MalformedTokenError):
        verify_token(token, ring())


def test_rotation_new_key_signs_and_old_key_still_verifies():
    old_token, _ = issue_token("42", STATE, target="/", ring=ring(), ttl=60, now=T0)
    rotated = ring(active_key_id="k2")
    new_token, claims = issue_token("42", STATE, target="/", ring=rotated, ttl=60, now=T0)
    assert jwt.get_unverified_header(new_token)["kid"] == "k2"
    assert claims.key_id == "k2"
    assert verify_token(old_token, rotated).key_id == "k1"
    assert verify_token(new_token, rotated).key_id == "k2"


def test_retired_key_no_longer_verifies():
    old_token, _ = issue_token("42", STATE, target="/", ring=ring(), ttl=60, now=T0)
    with pytest.raises(MalformedTokenError):
        verify_token(old_token, ring(keys={"k2": K2}, active_key_id="k2"))


def test_expired_token_with_wrong_audience_is_malformed_not_expired(frozen):
    token = mint(payload(aud="another-audience"))
    frozen.tick(timedelta(hours=2))
    with pytest.raises(MalformedTokenError):
        verify_token(token, ring())


def test_forged_expired_token_is_never_called_expired(frozen):
    forged = mint(payload(), key=b"someone-else-s-secret-0123456789abcdef")
    frozen.tick(timedelta(hours=2))
    with pytest.raises(BadSignatureError):
        verify_token(forged, ring())


@pytest.mark.parametrize(
    ("state", "scope"),
    (
        (TokenState("inc-B", 3, 1), "store"),
        (TokenState("inc-A", 4, 1), "global"),
        (TokenState("inc-A", 2, 1), "global"),
        (TokenState("inc-A", 3, 2), "user"),
        # The same epoch number with another identity: a bump lost in a
        # failover and made again (tokens carry eid; STATE has none, 0).
        (TokenState("inc-A", 3, 1, epoch_id=4_000_000_001), "global"),
    ),
)
def test_epoch_mismatch_is_revoked(state, scope):
    token, _ = issue_token("42", STATE, target="/", ring=ring(), ttl=60, now=T0)
    with pytest.raises(RevokedTokenError) as exc_info:
        check_epochs(verify_token(token, ring()), state)
    assert exc_info.value.scope == scope
    assert exc_info.value.user_id == "42"


def test_matching_epochs_pass():
    token, _ = issue_token("42", STATE, target="/", ring=ring(), ttl=60, now=T0)
    check_epochs(verify_token(token, ring()), STATE)


def test_revoked_error_carries_both_epochs():
    token, _ = issue_token("42", STATE, target="/", ring=ring(), ttl=60, now=T0)
    with pytest.raises(RevokedTokenError) as exc_info:
        check_epochs(verify_token(token, ring()), TokenState("inc-A", 5, 1))
    assert (exc_info.value.token_epoch, exc_info.value.current_epoch) == (3, 5)


def test_token_fits_512_characters_for_36_char_user_and_64_char_target():
    user = "u" * 36
    target = "/" + "t" * 63
    largest = EPOCH_VALUES[1] - 1  # a random identity and user epoch at their longest
    state = TokenState("x" * 12, 10**6, largest, epoch_id=largest)
    token, _ = issue_token(user, state, target=target, ring=ring(), ttl=604800, now=T0)
    assert len(token) <= 512


def test_a_token_carries_its_epochs_identity_and_only_that_identity_passes():
    state = TokenState("inc-A", 3, fresh_epoch_value(), epoch_id=fresh_epoch_value())
    token, claims = issue_token("42", state, target="/", ring=ring(), ttl=60, now=T0)
    assert claims_of(token)["eid"] == state.epoch_id
    check_epochs(verify_token(token, ring()), state)
    for other in (0, fresh_epoch_value(state.epoch_id)):
        with pytest.raises(RevokedTokenError) as exc_info:
            check_epochs(verify_token(token, ring()), state._replace(epoch_id=other))
        assert exc_info.value.scope == "global"


def test_a_token_from_before_epoch_identities_verifies_until_the_next_bump():
    # Minted as the version before wrote them: a "typ" header, no eid claim.
    payload = {
        "iss": "autologin-links",
        "aud": "helpdesk-portal",
        "sub": "42",
        "iat": int(T0.timestamp()),
        "exp": int(T0.timestamp()) + 60,
        "jti": "abcdefghijklmnop",
        "pur": PURPOSE,
        "sid": "inc-A",
        "ep": 3,
        "uep": 1,
        "tgt": "/",
    }
    old = jwt.encode(payload, K1, algorithm="HS256", headers={"kid": "k1", "typ": "JWT"})
    claims = verify_token(old, ring())
    assert claims.epoch_id == 0
    check_epochs(claims, TokenState("inc-A", 3, 1))  # a store that has no identity yet
    with pytest.raises(RevokedTokenError):  # the next bump gives the epoch one
        check_epochs(claims, TokenState("inc-A", 4, 1, epoch_id=fresh_epoch_value()))


@pytest.mark.parametrize("eid", (-1, 1.5, "7", True, None))
def test_an_epoch_identity_that_is_not_a_whole_number_is_invalid(eid):
    token, _ = issue_token("42", STATE, target="/", ring=ring(), ttl=60, now=T0)
    payload = {**claims_of(token), "eid": eid}
    forged = jwt.encode(payload, K1, algorithm="HS256", headers={"kid": "k1"})
    with pytest.raises(MalformedTokenError):
        verify_token(forged, ring())


def test_issued_token_is_a_standard_jws_that_pyjwt_decodes():
    token, _ = issue_token("42", STATE, target="/t", ring=ring(), ttl=3600, now=T0)
    decoded = jwt.decode(
        token,
        K1,
        algorithms=["HS256"],
        audience="helpdesk-portal",
        issuer="autologin-links",
        options={"require": list(REQUIRED_CLAIMS)},
    )
    assert decoded["sub"] == "42"


def test_token_minted_by_pyjwt_verifies():
    assert verify_token(mint(payload()), ring()).user_id == "42"


@pytest.mark.parametrize(
    "extra",
    (
        {"jku": "https://evil.test/keys.json"},
        {"x5u": "https://evil.test/cert.pem"},
        {"jwk": {"kty": "oct", "k": "AAAA"}},
        {"crit": ["exp"]},
        {"typ": "JWE"},
    ),
)
def test_headers_that_ask_for_other_keys_or_extensions_are_refused(extra):
    token = jwt.encode(payload(), K1, algorithm="HS256", headers={"kid": "k1", **extra})
    with pytest.raises(MalformedTokenError):
        verify_token(token, ring())


def test_duplicate_claims_are_refused_even_when_signed():
    body = json.dumps(payload())[:-1] + ', "sub": "43"}'
    header = _b64({"alg": "HS256", "kid": "k1", "typ": "JWT"})
    segment = base64.urlsafe_b64encode(body.encode()).rstrip(b"=").decode()
    import hashlib
    import hmac

    signature = hmac.new(K1, f"{header}.{segment}".encode(), hashlib.sha256).digest()
    token = f"{header}.{segment}." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    with pytest.raises(MalformedTokenError):
        verify_token(token, ring())


def test_nbf_in_the_future_is_refused_when_present():
    with pytest.raises(MalformedTokenError):
        verify_token(mint(payload(nbf=int(T0.timestamp()) + 3600)), ring())


@pytest.mark.parametrize(
    ("error", "code"),
    (
        (MalformedTokenError, "token_invalid"),
        (BadSignatureError, "token_invalid"),
        (ExpiredTokenError, "token_expired"),
        (RevokedTokenError, "token_revoked"),
    ),
)
def test_each_token_error_carries_its_contract_code(error, code):
    # The HTTP answer, the metric and the sign-in log all read this one attribute.
    assert error.code == code
