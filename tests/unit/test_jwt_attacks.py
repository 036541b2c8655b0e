"""Known JWT attacks, each by name, against ``verify_token`` and ``POST /v1/tokens/verify``.

Every malicious token is built by hand here (base64url and ``hmac``), because
PyJWT refuses to produce most of them. Unless a test says otherwise, a token is
signed with the service's own key ``k1``, so that the one defect under test is
what gets it refused, not a bad signature. ``test_hand_made_control_token_verifies``
shows that the builder makes tokens the service accepts.

Each attack is one table; ``test_every_attack_is_token_invalid_over_http``
replays every table against the app: ``401 token_invalid``, never ``200``,
``500``, ``token_expired`` or ``token_revoked`` (nothing in a forged token is
believed).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from freezegun import freeze_time
from jwt.exceptions import InvalidKeyError

from service import close_app, create_app
from service.errors import (
    BadSignatureError,
    ExpiredTokenError,
    MalformedTokenError,
    RevokedTokenError,
    TokenError,
)
from service.store import TokenState
from service.tokens import MAX_TOKEN_LENGTH, PURPOSE, KeyRing, check_epochs, verify_token
from tests.conftest import SIGNING_KEYS, auth, production_config, sqlite_url

T0 = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
NOW = int(T0.timestamp())
#: The test deployment's keys and token settings (config/default.toml), so the
#: same tokens serve the unit tests and the HTTP ones.
K1 = SIGNING_KEYS["k1"].encode()
K2 = SIGNING_KEYS["k2"].encode()
ISSUER = "autologin-links"
AUDIENCE = "helpdesk-portal"
MAX_TTL = 604800
ATTACKER_KEY = b"attacker-chosen-secret-0123456789abcdef"
HEADER = {"alg": "HS256", "kid": "k1", "typ": "JWT"}
#: A real RSA public key: the classic confusion signs HS256 with it as the secret.
RSA_PUBLIC_PEM = b"""-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDMafNz+sv93IFH8ZOGJYXFkH5v
quRaGZO5caKvtmGh3hDmUZ9BEQUB6q3H7rWQeCXyTCSCRMUWZ1v7ldK6H+QqANx+
kGna9e6r071hcwHYXg9TsH5ptf+3KSGaI4SmJUz0dhhsbaFxCnx5Z52gycIDsdpD
c9GuijQhAMLSjHGLEQIDAQAB
-----END PUBLIC KEY-----
"""


# -- token builder ----------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def enc(value: Any) -> str:
    """Base64url of ``value``: bytes as they are, a str as raw JSON text, else JSON."""
    if isinstance(value, bytes):
        return b64(value)
    if isinstance(value, str):
        return b64(value.encode("utf-8"))
    return b64(json.dumps(value, separators=(",", ":")).encode())


def sign(signing_input: str, key: bytes = K1, digest: Callable = hashlib.sha256) -> str:
    return b64(hmac.new(key, signing_input.encode("utf-8"), digest).digest())


def claims(**overrides: Any) -> dict[str, Any]:
    """A genuine payload of the test deployment; an override ``...`` drops the claim."""
    values = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "42",
        "iat": NOW,
        "exp": NOW + 3600,
        "jti": "attack-jti",
        "pur": PURPOSE,
        "sid": "inc-A",
        "ep": 1,
        "uep": 0,
        "tgt": "/tickets/1",
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not ...}


def forge(
    header: Any = HEADER,
    payload: Any = None,
    *,
    key: bytes = K1,
    digest: Callable = hashlib.sha256,
) -> str:
    """Build ``header.payload.signature`` by hand, signed with ``key``."""
    signing_input = f"{enc(header)}.{enc(claims() if payload is None else payload)}"
    return f"{signing_input}.{sign(signing_input, key, digest)}"


def with_header(**fields: Any) -> dict[str, Any]:
    """``HEADER`` with ``fields`` changed; a value ``...`` drops the field."""
    return {k: v for k, v in {**HEADER, **fields}.items() if v is not ...}


def raw_claims(replace: dict[str, str]) -> str:
    """Claims as JSON text, each claim's value replaced by a raw JSON spelling."""
    text = json.dumps(claims(), separators=(",", ":"))
    for name, spelled in replace.items():
        text = text.replace(
            json.dumps(name) + ":" + json.dumps(claims()[name]), f'"{name}":{spelled}'
        )
    return text


GENUINE = forge()
H, P, S = GENUINE.split(".")


def ring(**overrides: Any) -> KeyRing:
    values: dict[str, Any] = {
        "keys": {"k1": K1, "k2": K2},
        "active_key_id": "k1",
        "algorithm": "HS256",
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "max_ttl_seconds": MAX_TTL,
        "leeway_seconds": 30,
    }
    values.update(overrides)
    return KeyRing(**values)


def table(rows: list[tuple[str, Any]]) -> list[Any]:
    return [pytest.param(token, id=name) for name, token in rows]


@pytest.fixture(autouse=True)
def frozen():
    with freeze_time(T0) as freezer:
        yield freezer


def test_hand_made_control_token_verifies():
    """The builder makes tokens the service accepts: each attack fails for its own defect."""
    got = verify_token(GENUINE, ring())
    assert (got.user_id, got.key_id, got.target, got.incarnation) == (
        "42",
        "k1",
        "/tickets/1",
        "inc-A",
    )
    assert verify_token(forge(with_header(typ=...)), ring()).user_id == "42"
    assert verify_token(forge(with_header(kid="k2"), key=K2), ring()).key_id == "k2"


# -- alg: none ----------------------------------------------------------------

ALG_NONE = [
    row
    for spelling in ("none", "None", "NONE", "nOnE")
    for row in (
        (f"{spelling}-empty-signature", f"{enc(with_header(alg=spelling))}.{P}."),
        (f"{spelling}-no-signature-segment", f"{enc(with_header(alg=spelling))}.{P}"),
        (f"{spelling}-no-kid-empty-signature", f"{enc({'alg': spelling})}.{P}."),
        (f"{spelling}-with-genuine-signature", f"{enc(with_header(alg=spelling))}.{P}.{S}"),
        (f"{spelling}-signed-with-the-right-key", forge(with_header(alg=spelling))),
    )
]


@pytest.mark.parametrize("token", table(ALG_NONE))
def test_alg_none_is_refused(token):
    """alg: none (an unsecured JWS) in every spelling, with or without a signature."""
    with pytest.raises(MalformedTokenError):
        verify_token(token, ring())


# -- algorithm confusion --------------------------------------------------------

ALG_CONFUSION = [
    *[
        (f"{alg}-header-hmac-signed", forge(with_header(alg=alg)))
        for alg in ("RS256", "RS512", "ES256", "ES384", "PS256", "EdDSA", "ES256K")
    ],
    *[
        (f"{alg}-header-random-signature", f"{enc(with_header(alg=alg))}.{P}.{b64(bytes(256))}")
        for alg in ("RS256", "ES256", "PS256", "EdDSA")
    ],
    ("HS384-with-the-right-key", forge(with_header(alg="HS384"), digest=hashlib.sha384)),
    ("HS512-with-the-right-key", forge(with_header(alg="HS512"), digest=hashlib.sha512)),
    ("HS512-header-HS256-signature", forge(with_header(alg="HS512"))),
    ("lower-case-hs256", forge(with_header(alg="hs256"))),
    ("hs256-trailing-space", forge(with_header(alg="HS256 "))),
    ("alg-list", forge(with_header(alg=["HS256"]))),
    ("alg-empty", forge(with_header(alg=""))),
    ("alg-null", forge(with_header(alg=None))),
    ("alg-missing", forge(with_header(alg=...))),
    (
        "RS256-signed-with-public-key-as-hmac-secret",
        forge(with_header(alg="RS256"), key=RSA_PUBLIC_PEM),
    ),
    ("header-not-an-object", forge("[]")),
    ("header-a-string", forge('"HS256"')),
    ("header-not-json", forge("{alg:HS256}")),
]


@pytest.mark.parametrize("token", table(ALG_CONFUSION))
def test_algorithm_confusion_is_refused(token):
    """Any algorithm but the configured HS256 (asymmetric, stronger HMAC, misspelt) is refused."""
    with pytest.raises(MalformedTokenError):
        verify_token(token, ring())


def test_rsa_public_key_as_hmac_secret_is_a_bad_signature():
    """Algorithm confusion: HS256 signed with a public RSA key cannot match the real secret."""
    with pytest.raises(BadSignatureError):
        verify_token(forge(key=RSA_PUBLIC_PEM), ring())


def test_rsa_public_key_cannot_be_configured_as_an_hmac_secret():
    """Algorithm confusion at the source: PyJWT's prepare_key refuses PEM material."""
    with pytest.raises(InvalidKeyError):
        ring(keys={"k1": RSA_PUBLIC_PEM})


# -- kid injection ----------------------------------------------------------------

KID_INJECTION = [
    ("path-traversal-dev-null", forge(with_header(kid="../../dev/null"))),
    ("path-traversal-dev-null-empty-key", forge(with_header(kid="../../dev/null"), key=b"")),
    ("path-traversal-to-a-key-id", forge(with_header(kid="../k1"))),
    ("absolute-path", forge(with_header(kid="/etc/passwd"))),
    ("sql-or-true", forge(with_header(kid="' OR '1'='1"))),
    ("sql-union", forge(with_header(kid="x' UNION SELECT 'secret' --"))),
    ("command-pipe", forge(with_header(kid="|ls"))),
    ("command-substitution", forge(with_header(kid="$(id)"))),
    ("url", forge(with_header(kid="https://evil.test/keys.json"))),
    ("empty", forge(with_header(kid=""))),
    ("missing", forge(with_header(kid=...))),
    ("int", forge(with_header(kid=1))),
    ("zero", forge(with_header(kid=0))),
    ("float", forge(with_header(kid=1.0))),
    ("bool", forge(with_header(kid=True))),
    ("list", forge(with_header(kid=["k1"]))),
    ("null", forge(with_header(kid=None))),
    ("object", forge(with_header(kid={"kid": "k1"}))),
    ("unknown", forge(with_header(kid="k3"))),
    ("unknown-default", forge(with_header(kid="default"))),
    ("different-case", forge(with_header(kid="K1"))),
    ("trailing-space", forge(with_header(kid="k1 "))),
    ("leading-space", forge(with_header(kid=" k1"))),
    ("trailing-tab", forge(with_header(kid="k1\t"))),
    ("trailing-newline", forge(with_header(kid="k1\n"))),
    ("trailing-nul", forge(with_header(kid="k1\x00"))),
    ("zero-width-space", forge(with_header(kid="k1\u200b"))),
    ("full-width", forge(with_header(kid="ｋ１"))),
]


@pytest.mark.parametrize("token", table(KID_INJECTION))
def test_kid_injection_is_refused(token):
    """kid is looked up among the held key ids only: never a path, query, command or URL."""
    with pytest.raises(MalformedTokenError):
        verify_token(token, ring())


# -- key-bearing and extension headers ---------------------------------------------

_ATTACKER_JWK = {"kty": "oct", "k": b64(ATTACKER_KEY), "kid": "k1"}
FORBIDDEN_HEADERS = [
    ("jku", forge(with_header(jku="https://evil.test/jwks.json"))),
    (
        "jku-attacker-signed",
        forge(with_header(jku="https://evil.test/jwks.json"), key=ATTACKER_KEY),
    ),
    ("x5u", forge(with_header(x5u="https://evil.test/cert.pem"))),
    ("jwk", forge(with_header(jwk=_ATTACKER_JWK))),
    ("jwk-attacker-signed", forge(with_header(jwk=_ATTACKER_JWK), key=ATTACKER_KEY)),
    ("x5c", forge(with_header(x5c=["MIIBszCCAVmgAwIBAgIUQ"]))),
    ("x5t", forge(with_header(x5t="dGh1bWJwcmludA"))),
    ("x5t-s256", forge(with_header(**{"x5t#S256": "dGh1bWJwcmludA"}))),
    ("crit-exp", forge(with_header(crit=["exp"]))),
    ("crit-empty", forge(with_header(crit=[]))),
    ("crit-b64-unencoded-payload", forge(with_header(crit=["b64"], b64=False))),
    ("b64-false", forge(with_header(b64=False))),
    ("zip", forge(with_header(zip="DEF"))),
    ("typ-jwe", forge(with_header(typ="JWE"))),
    ("typ-access-token", forge(with_header(typ="at+jwt"))),
    ("typ-null", forge(with_header(typ=None))),
    ("unknown-field", forge(with_header(foo="bar"))),
]


@pytest.mark.parametrize("token", table(FORBIDDEN_HEADERS))
def test_jku_x5u_jwk_x5c_crit_headers_are_refused_even_when_signed(token):
    """Headers that ask the verifier to fetch or trust keys or understand extensions."""
    with pytest.raises(MalformedTokenError):
        verify_token(token, ring())


# -- signature stripping and tampering -------------------------------------------

STRIPPED_SIGNATURE = [
    ("two-segments", f"{H}.{P}"),
    ("trailing-dot", f"{H}.{P}."),
    ("extra-dot", f"{H}.{P}.{S}."),
    ("four-segments", f"{H}.{P}.{S}.{S}"),
    ("empty-payload", f"{H}..{S}"),
    ("signature-only", f"..{S}"),
]


@pytest.mark.parametrize("token", table(STRIPPED_SIGNATURE))
def test_stripped_signature_is_refused(token):
    """A token without its signature segment (or with stray dots) is not a compact JWS."""
    with pytest.raises(MalformedTokenError):
        verify_token(token, ring())


def test_zeroed_signature_is_a_bad_signature():
    """Zeroed signature: the same length, every character ``A``."""
    zeroed = f"{H}.{P}.{'A' * len(S)}"
    assert len(zeroed) == len(GENUINE)
    with pytest.raises(BadSignatureError):
        verify_token(zeroed, ring())


TRUNCATED_OR_EXTENDED = [
    ("truncated-by-1", f"{H}.{P}.{S[:-1]}"),
    ("truncated-by-2", f"{H}.{P}.{S[:-2]}"),
    ("truncated-by-4", f"{H}.{P}.{S[:-4]}"),
    ("truncated-to-half", f"{H}.{P}.{S[: len(S) // 2]}"),
    ("truncated-to-1", f"{H}.{P}.{S[:1]}"),
    ("extended-by-1", f"{H}.{P}.{S}A"),
    ("extended-by-4", f"{H}.{P}.{S}AAAA"),
    ("doubled", f"{H}.{P}.{S}{S}"),
    ("hmac-sha512-of-the-input", forge(digest=hashlib.sha512)),
]


@pytest.mark.parametrize("token", table(TRUNCATED_OR_EXTENDED))
def test_truncated_or_extended_signature_is_refused(token):
    """A signature cut short or made longer never matches (a length-tolerant compare would)."""
    with pytest.raises((BadSignatureError, MalformedTokenError)):
        verify_token(token, ring())


_OTHER = forge(payload=claims(sub="43", jti="other-jti"))
OTHER_SIGNATURE = [
    ("signature-of-another-users-token", f"{H}.{P}.{_OTHER.split('.')[2]}"),
    ("signature-by-k2-under-kid-k1", forge(key=K2)),
    ("k2-token-relabelled-kid-k1", f"{H}.{P}.{forge(with_header(kid='k2'), key=K2).split('.')[2]}"),
]


@pytest.mark.parametrize("token", table(OTHER_SIGNATURE))
def test_signature_from_another_token_or_key_is_a_bad_signature(token):
    """A genuine signature moved to other claims, or made by another of our keys."""
    with pytest.raises(BadSignatureError):
        verify_token(token, ring())


TAMPERED_CLAIMS = {
    "sub": {"sub": "admin"},
    "ep": {"ep": 999},
    "uep": {"uep": 999},
    "exp": {"exp": NOW + MAX_TTL},
    "tgt": {"tgt": "/admin"},
    "sid": {"sid": "inc-B"},
    "iat": {"iat": NOW - 10},
}
RESIGNED_WITH_WRONG_KEY = [
    *[
        (f"{name}-attacker-key", forge(payload=claims(**c), key=ATTACKER_KEY))
        for name, c in TAMPERED_CLAIMS.items()
    ],
    *[
        (f"{name}-k2-secret-kid-k1", forge(payload=claims(**c), key=K2))
        for name, c in TAMPERED_CLAIMS.items()
    ],
    ("sub-empty-key", forge(payload=claims(sub="admin"), key=b"")),
    (
        "expired-attacker-key",
        forge(payload=claims(iat=NOW - 7200, exp=NOW - 3600), key=ATTACKER_KEY),
    ),
]


@pytest.mark.parametrize("token", table(RESIGNED_WITH_WRONG_KEY))
def test_tampered_claims_resigned_with_a_wrong_key_are_a_bad_signature(token):
    """Changed sub, ep, uep, exp, tgt re-signed with a key this service does not hold."""
    with pytest.raises(BadSignatureError):
        verify_token(token, ring())


TAMPERED_UNSIGNED = [
    *[(name, f"{H}.{enc(claims(**c))}.{S}") for name, c in TAMPERED_CLAIMS.items()],
    ("payload-not-json", f"{H}.{enc('not json')}.{S}"),
    ("payload-an-array", f"{H}.{enc([claims()])}.{S}"),
    ("payload-empty-object", f"{H}.{enc({})}.{S}"),
]


@pytest.mark.parametrize("token", table(TAMPERED_UNSIGNED))
def test_payload_tampered_without_resigning_is_a_bad_signature(token):
    """A genuine signature over claims that were then changed: the signature is checked first."""
    with pytest.raises(BadSignatureError):
        verify_token(token, ring())


# -- other token shapes -------------------------------------------------------------

_JWE_HEADER = {"alg": "dir", "enc": "A256GCM", "kid": "k1"}
JWE_SHAPED = [
    ("five-segments-dir", f"{enc(_JWE_HEADER)}..{b64(bytes(12))}.{P}.{b64(bytes(16))}"),
    (
        "five-segments-rsa-oaep",
        ".".join(
            (enc({"alg": "RSA-OAEP", "enc": "A128GCM"}), b64(bytes(32)), b64(bytes(12)), P, S)
        ),
    ),
    ("five-segments-all-full", f"{H}.{P}.{S}.{P}.{S}"),
    ("enc-header-in-a-signed-jws", forge(with_header(enc="A256GCM"))),
    ("alg-dir-signed", forge(with_header(alg="dir"))),
]


@pytest.mark.parametrize("token", table(JWE_SHAPED))
def test_jwe_shaped_tokens_are_refused(token):
    """A JWE (five segments, or an ``enc`` header) is not a login token."""
    with pytest.raises(MalformedTokenError):
        verify_token(token, ring())


NESTED = [
    ("cty-jwt", forge(with_header(cty="JWT"), GENUINE.encode())),
    ("cty-lower-case", forge(with_header(cty="jwt"), GENUINE.encode())),
    ("jwt-as-payload-without-cty", forge(HEADER, GENUINE.encode())),
    ("jwt-as-json-string-payload", forge(HEADER, json.dumps(GENUINE))),
]


@pytest.mark.parametrize("token", table(NESTED))
def test_nested_tokens_are_refused(token):
    """A token wrapped in a signed token (``cty: JWT``) is never unwrapped."""
    with pytest.raises(MalformedTokenError):
        verify_token(token, ring())


def _duplicated(name: str, value: Any) -> str:
    return json.dumps(claims(), separators=(",", ":"))[:-1] + f',"{name}":{json.dumps(value)}}}'


DUPLICATE_CLAIMS = [
    ("two-sub-values", forge(HEADER, _duplicated("sub", "43"))),
    ("two-equal-sub", forge(HEADER, _duplicated("sub", "42"))),
    ("two-exp", forge(HEADER, _duplicated("exp", NOW + MAX_TTL))),
    ("two-pur", forge(HEADER, _duplicated("pur", PURPOSE))),
    ("two-ep", forge(HEADER, _duplicated("ep", 0))),
    (
        "duplicate-in-a-nested-object",
        forge(HEADER, _duplicated("x", None)[:-1] + ',"y":{"a":1,"a":2}}'),
    ),
    ("header-alg-then-none", forge('{"alg":"HS256","kid":"k1","typ":"JWT","alg":"none"}')),
    ("header-kid-then-traversal", forge('{"alg":"HS256","kid":"k1","kid":"../../dev/null"}')),
]


@pytest.mark.parametrize("token", table(DUPLICATE_CLAIMS))
def test_duplicate_claims_are_refused_even_when_signed(token):
    """Duplicate names: one parser may read the first, another the last."""
    with pytest.raises(MalformedTokenError):
        verify_token(token, ring())


# -- size, characters, encoding ---------------------------------------------------


def genuine_of_length(length: int) -> str:
    """A validly signed token of exactly ``length`` characters (jti and header spacing pad it)."""
    for spaces in range(4):
        header = json.dumps(HEADER, separators=(",", ":")).replace(",", "," + " " * spaces, 1)
        for pad in range(length):
            token = forge(header, claims(jti="j" * pad))
            if len(token) == length:
                return token
            if len(token) > length:
                break
    raise AssertionError(f"no token of {length} characters")


def test_token_of_exactly_the_maximum_length_verifies():
    """The control for the oversized attack: 4096 characters, genuinely signed, is accepted."""
    assert verify_token(genuine_of_length(MAX_TOKEN_LENGTH), ring()).user_id == "42"


OVERSIZED = [
    ("4097-characters-genuinely-signed", genuine_of_length(MAX_TOKEN_LENGTH + 1)),
    ("100-KiB-token-shaped", f"{H}.{'A' * 100 * 1024}.{S}"),
    ("1-MiB-garbage", "A" * (1 << 20)),
    ("1-MiB-token-shaped", f"{H}.{'A' * ((1 << 20) - len(H) - len(S) - 2)}.{S}"),
    ("1-MiB-of-dots", "." * (1 << 20)),
]


@pytest.mark.parametrize("token", table(OVERSIZED))
def test_oversized_input_is_refused(token):
    """Over 4096 characters is refused before a byte of it is decoded."""
    assert len(token) > MAX_TOKEN_LENGTH
    with pytest.raises(MalformedTokenError):
        verify_token(token, ring())


NON_ASCII = [
    ("unicode-in-header", f"{H[:5]}é{H[6:]}.{P}.{S}"),
    ("unicode-in-payload", f"{H}.{P[:5]}ä{P[6:]}.{S}"),
    ("unicode-in-signature", f"{H}.{P}.{S[:5]}𝔸{S[6:]}"),
    ("full-width-letter", f"{H}.{P}.Ａ{S[1:]}"),
    ("arabic-indic-digit", f"{H}.{P}.{S[:-1]}٣"),
    ("full-width-dots", GENUINE.replace(".", "\uff0e")),
    ("ideographic-full-stops", GENUINE.replace(".", "\u3002")),
    ("halfwidth-ideographic-full-stops", GENUINE.replace(".", "\uff61")),
    ("one-dot-leader", GENUINE.replace(".", "\u2024")),
    ("zero-width-space-in-header", f"{H[:4]}\u200b{H[4:]}.{P}.{S}"),
    ("zero-width-joiner-in-payload", f"{H}.{P[:4]}\u200d{P[4:]}.{S}"),
    ("zero-width-non-joiner-in-signature", f"{H}.{P}.{S[:4]}\u200c{S[4:]}"),
    ("word-joiner-after-dot", f"{H}.\u2060{P}.{S}"),
    ("bom-prefix", "\ufeff" + GENUINE),
    ("bom-suffix", GENUINE + "\ufeff"),
    ("right-to-left-override", f"{H}.{P}.\u202e{S}"),
    ("nul-suffix", GENUINE + "\x00"),
    ("latin-1-byte", GENUINE + "\xff"),
    ("surrogate-escape-byte", GENUINE + "\udcff"),
]


@pytest.mark.parametrize("token", table(NON_ASCII))
def test_non_ascii_input_is_refused(token):
    """Unicode look-alikes of base64url characters and dots, invisible characters, a BOM."""
    with pytest.raises(MalformedTokenError):
        verify_token(token, ring())


@pytest.mark.parametrize(
    "token",
    (
        pytest.param(f"{H}.{P}.{S}\ud800", id="high-surrogate-in-signature"),
        pytest.param(f"\udfff{H}.{P}.{S}", id="low-surrogate-before-header"),
    ),
)
def test_lone_surrogate_is_refused(token):
    """Non-ASCII input: a lone UTF-16 surrogate (Python str can hold one; JSON can spell one)."""
    with pytest.raises(MalformedTokenError):
        verify_token(token, ring())


WHITESPACE = [
    ("leading-space", " " + GENUINE),
    ("trailing-space", GENUINE + " "),
    ("trailing-newline", GENUINE + "\n"),
    ("trailing-crlf", GENUINE + "\r\n"),
    ("leading-tab", "\t" + GENUINE),
    ("space-after-each-dot", GENUINE.replace(".", ". ")),
    ("space-inside-payload", f"{H}.{P[:8]} {P[8:]}.{S}"),
    ("newline-inside-signature", f"{H}.{P}.{S[:8]}\n{S[8:]}"),
    ("no-break-space", GENUINE + "\u00a0"),
    ("ideographic-space", "\u3000" + GENUINE),
    ("vertical-tab", GENUINE + "\x0b"),
]


@pytest.mark.parametrize("token", table(WHITESPACE))
def test_whitespace_around_or_inside_is_refused(token):
    """Whitespace is not stripped or skipped: the token is exactly what was signed."""
    with pytest.raises(MalformedTokenError):
        verify_token(token, ring())


def _standard_alphabet() -> str:
    # A genuine token whose segments use both url-safe characters - and _.
    for n in range(500):
        token = forge(payload=claims(jti=f"jti-{n}", tgt="/~~~???>>>"))
        if "-" in token and "_" in token:
            return token.replace("-", "+").replace("_", "/")
    raise AssertionError("no token with both - and _")


ENCODING = [
    ("padding-on-header", f"{H}=.{P}.{S}"),
    ("padding-on-payload", f"{H}.{P}==.{S}"),
    ("padding-on-signature", f"{H}.{P}.{S}="),
    ("standard-base64-alphabet", _standard_alphabet()),
    ("percent-encoded-dots", GENUINE.replace(".", "%2E")),
    ("base64-of-the-whole-token", b64(GENUINE.encode())),
]


@pytest.mark.parametrize("token", table(ENCODING))
def test_padding_and_standard_base64_are_refused(token):
    """Only unpadded base64url: ``=`` padding and the ``+/`` alphabet are not this service's."""
    with pytest.raises(MalformedTokenError):
        verify_token(token, ring())


# -- claims of the wrong kind, signed with the right key ------------------------------

WRONG_CONTEXT = [
    ("another-purpose", forge(payload=claims(pur="password-reset"))),
    ("purpose-missing", forge(payload=claims(pur=...))),
    ("purpose-in-a-list", forge(payload=claims(pur=[PURPOSE]))),
    ("another-audience", forge(payload=claims(aud="another-portal"))),
    ("audience-in-a-list", forge(payload=claims(aud=[AUDIENCE]))),
    ("audience-list-with-another", forge(payload=claims(aud=[AUDIENCE, "another-portal"]))),
    ("audience-missing", forge(payload=claims(aud=...))),
    ("another-issuer", forge(payload=claims(iss="another-service"))),
    ("issuer-null", forge(payload=claims(iss=None))),
    ("issuer-missing", forge(payload=claims(iss=...))),
]


@pytest.mark.parametrize("token", table(WRONG_CONTEXT))
def test_token_for_another_purpose_audience_or_issuer_is_refused(token):
    """Minted with our very key for something else: not a login link here."""
    with pytest.raises(MalformedTokenError):
        verify_token(token, ring())


LIFETIME = [
    ("above-the-maximum-by-1", forge(payload=claims(exp=NOW + MAX_TTL + 1))),
    ("a-year", forge(payload=claims(exp=NOW + 365 * 86400))),
    ("zero", forge(payload=claims(exp=NOW))),
    ("negative", forge(payload=claims(exp=NOW - 1))),
]


@pytest.mark.parametrize("token", table(LIFETIME))
def test_lifetime_outside_the_maximum_is_refused(token):
    """exp - iat above the configured maximum (or not positive), whatever the signature."""
    with pytest.raises(MalformedTokenError):
        verify_token(token, ring())


TIME_VALUES = [
    ("string", lambda t: json.dumps(str(t))),
    ("float", lambda t: f"{t}.0"),
    ("fraction", lambda t: f"{t}.5"),
    ("exponent", lambda t: f"{t / 10**9}e9"),
    ("huge", lambda t: str(10**30)),
    ("int64-overflow", lambda t: str(2**63)),
    ("uint64-overflow", lambda t: str(2**64)),
    ("negative", lambda t: str(-t)),
    ("minus-one", lambda t: "-1"),
    ("true", lambda t: "true"),
    ("false", lambda t: "false"),
    ("null", lambda t: "null"),
    ("nan", lambda t: "NaN"),
    ("infinity", lambda t: "Infinity"),
    ("overflowing-float", lambda t: "1e400"),
    ("array", lambda t: f"[{t}]"),
    ("object", lambda t: f'{{"$date":{t}}}'),
    ("thousands-of-digits", lambda t: "9" * 5000),
]
TIME_TYPES = [
    (f"{claim}-{name}", forge(HEADER, raw_claims({claim: spell(claims()[claim])})))
    for claim in ("exp", "iat")
    for name, spell in TIME_VALUES
]


@pytest.mark.parametrize("token", table(TIME_TYPES))
def test_exp_and_iat_of_the_wrong_type_are_refused(token):
    """exp/iat as strings, floats, huge or negative numbers, booleans, NaN: not whole seconds."""
    with pytest.raises(MalformedTokenError):
        verify_token(token, ring())


SUB_VALUES = [
    ("int", 42),
    ("zero", 0),
    ("empty", ""),
    ("too-long", "a" * 129),
    ("space", "a b"),
    ("slash", "a/b"),
    ("newline", "42\n"),
    ("nul", "42\x00"),
    ("non-ascii", "ä"),
    ("markup", "<script>"),
    ("null", None),
    ("list", ["42"]),
    ("object", {"id": "42"}),
    ("bool", True),
]
SUB_TYPES = [(name, forge(payload=claims(sub=value))) for name, value in SUB_VALUES]


@pytest.mark.parametrize("token", table(SUB_TYPES))
def test_sub_that_is_not_a_user_id_is_refused(token):
    """sub as an int, empty, over 128 characters, or with characters outside the alphabet."""
    with pytest.raises(MalformedTokenError):
        verify_token(token, ring())


def test_sub_of_128_characters_verifies():
    """The control for the sub table: the longest user id the contract allows."""
    assert verify_token(forge(payload=claims(sub="a" * 128)), ring()).user_id == "a" * 128


def test_non_string_input_is_refused():
    """Input that is not text at all (bytes, numbers, containers, None)."""
    for value in (GENUINE.encode(), 42, None, [GENUINE], {"token": GENUINE}, b""):
        with pytest.raises(MalformedTokenError):
            verify_token(value, ring())


# -- another store incarnation -------------------------------------------------------


def test_token_from_another_store_incarnation_is_revoked():
    """A genuine token from before the store was recreated, even when its epochs match."""
    claims_ = verify_token(GENUINE, ring())
    with pytest.raises(RevokedTokenError) as exc_info:
        check_epochs(claims_, TokenState("inc-B", 1, 0))
    assert exc_info.value.scope == "store"
    assert (exc_info.value.token_epoch, exc_info.value.current_epoch) == ("inc-A", "inc-B")
    check_epochs(claims_, TokenState("inc-A", 1, 0))  # the control: same incarnation passes


# -- over HTTP -------------------------------------------------------------------------

HTTP_TABLES = {
    "alg-none": ALG_NONE,
    "alg-confusion": [
        *ALG_CONFUSION,
        ("HS256-signed-with-rsa-public-key", forge(key=RSA_PUBLIC_PEM)),
    ],
    "kid-injection": KID_INJECTION,
    "forbidden-header": FORBIDDEN_HEADERS,
    "stripped-signature": STRIPPED_SIGNATURE,
    "zeroed-signature": [("all-A", f"{H}.{P}.{'A' * len(S)}")],
    "truncated-or-extended-signature": TRUNCATED_OR_EXTENDED,
    "signature-from-another-token": OTHER_SIGNATURE,
    "resigned-with-wrong-key": RESIGNED_WITH_WRONG_KEY,
    "tampered-unsigned": TAMPERED_UNSIGNED,
    "jwe-shaped": JWE_SHAPED,
    "nested": NESTED,
    "duplicate-claims": DUPLICATE_CLAIMS,
    # The two 1 MiB tokens make a body over 1 MiB: see the 413 test below.
    "oversized": [(n, t) for n, t in OVERSIZED if len(t) < 1 << 19],
    "non-ascii": NON_ASCII,
    "whitespace": WHITESPACE,
    "encoding": ENCODING,
    "wrong-context": WRONG_CONTEXT,
    "lifetime": LIFETIME,
    "time-types": TIME_TYPES,
    "sub-types": SUB_TYPES,
    "empty": [("empty-string", "")],
}


def _json_can_carry(token: str) -> bool:
    try:
        token.encode("utf-8")
    except UnicodeEncodeError:
        return False  # a lone surrogate: see test_lone_surrogate_in_the_body_is_invalid_json
    return True


HTTP_ATTACKS = [
    pytest.param(token, id=f"{attack}/{name}")
    for attack, rows in HTTP_TABLES.items()
    for name, token in rows
    if _json_can_carry(token)
]


def _app(path):
    app = create_app(
        production_config(
            sqlite_url(path),
            # Hundreds of failed verifications from one key: the limiter would
            # answer 429 before the table ends (test_ratelimit_http covers it).
            RATE_LIMITS_ENABLED=False,
        )
    )
    app.config["TESTING"] = True
    return app


@pytest.fixture(scope="module")
def attack_client(tmp_path_factory):
    app = _app(tmp_path_factory.mktemp("attacks"))
    yield app.test_client()
    close_app(app)


def verify_over_http(client, token: Any):
    return client.post("/v1/tokens/verify", json={"token": token}, headers=auth("portal-key"))


@pytest.mark.parametrize("token", HTTP_ATTACKS)
def test_every_attack_is_token_invalid_over_http(attack_client, token):
    """Each attack through ``POST /v1/tokens/verify``: 401 token_invalid, nothing believed."""
    response = verify_over_http(attack_client, token)
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.json["code"] == "token_invalid"
    assert "user_id" not in response.json


def test_hand_made_control_token_gets_past_the_signature_over_http(attack_client):
    """The control over HTTP: the genuine hand-made token is refused only for its epochs."""
    response = verify_over_http(attack_client, GENUINE)
    assert (response.status_code, response.json["code"]) == (401, "token_revoked")


@pytest.mark.parametrize("token", table([(n, t) for n, t in OVERSIZED if len(t) >= 1 << 19]))
def test_one_mebibyte_token_is_refused_over_http(attack_client, token):
    """Oversized input of 1 MiB: a body over the limit is 413, a smaller one 401; never 200/500."""
    response = verify_over_http(attack_client, token)
    assert response.status_code in (401, 413)
    assert response.mimetype == "application/problem+json"
    assert response.json["code"] in ("token_invalid", "payload_too_large")


@pytest.mark.parametrize("token", (f"{GENUINE}\udcff", f"{GENUINE}\ud800"))
def test_lone_surrogate_in_the_body_is_invalid_json(attack_client, token):
    """Non-ASCII input over HTTP: JSON may spell a lone surrogate; the body is refused first."""
    response = verify_over_http(attack_client, token)
    assert (response.status_code, response.json["code"]) == (400, "invalid_json")


def test_token_from_another_store_incarnation_is_revoked_over_http(tmp_path):
    """Store incarnation: a token of the lost store is token_revoked on the new one, same keys."""
    old, new = _app(tmp_path / "old"), _app(tmp_path / "new")
    try:
        admin = old.test_client().patch(
            "/v1/admin/settings", json={"auto_login_enabled": True}, headers=auth("admin-key")
        )
        assert admin.status_code == 200
        issued = old.test_client().post(
            "/v1/links",
            json={
                "user_id": "42",
                "email": "alice@example.com",
                "recipients": {"to": ["alice@example.com"]},
            },
            headers=auth("issuer-key"),
        )
        token = issued.json["url"].split("auto_login=", 1)[1]
        assert verify_over_http(old.test_client(), token).status_code == 200
        response = verify_over_http(new.test_client(), token)
        assert (response.status_code, response.json["code"]) == (401, "token_revoked")
    finally:
        close_app(old)
        close_app(new)


def test_expired_and_revoked_are_only_said_of_genuine_tokens():
    """A forged expired token is a bad signature; the error carries no believed user id."""
    forged = forge(payload=claims(iat=NOW - 7200, exp=NOW - 3600), key=ATTACKER_KEY)
    with pytest.raises(TokenError) as exc_info:
        verify_token(forged, ring())
    assert not isinstance(exc_info.value, (ExpiredTokenError, RevokedTokenError))
    assert exc_info.value.user_id is None
