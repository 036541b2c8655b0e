"""Property tests (Hypothesis): the token core, request validation, and the HTTP app.

- issue -> verify round-trips for any user id, target, lifetime and epochs;
- a one-character edit of a genuine token never verifies to anybody else;
- any other input to ``verify_token`` raises a ``TokenError`` and nothing else;
- ``parse_link_request`` answers a ``LinkRequest`` or an ``ApiError`` of the contract;
- ``validate_target`` never lets through a URL, a host or a control character;
- ``isoformat`` writes any aware moment as strftime would, in UTC, to the second;
- the app answers any JSON body on every POST/PATCH route without a 5xx.

Example counts are modest so the file stays well under a minute on a slow CI box.
"""

from __future__ import annotations

import copy
import json
import string
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from jwt.utils import base64url_decode, base64url_encode

from service.clock import isoformat, utcnow
from service.errors import ApiError, TokenError
from service.links import LinkRequest, parse_link_request, validate_target
from service.store import TokenState
from service.tokens import PURPOSE, USER_ID, KeyRing, check_epochs, issue_token, verify_token
from tests.conftest import PORTAL, SIGNING_KEYS, auth

K1 = SIGNING_KEYS["k1"].encode()
K2 = SIGNING_KEYS["k2"].encode()
MAX_TTL = 604800


def _ring(active_key_id: str) -> KeyRing:
    return KeyRing(
        keys={"k1": K1, "k2": K2},
        active_key_id=active_key_id,
        algorithm="HS256",
        issuer="autologin-links",
        audience="helpdesk-portal",
        max_ttl_seconds=MAX_TTL,
        leeway_seconds=30,
    )


#: One ring per active key: a token signed by either verifies on both (rotation).
RINGS = {kid: _ring(kid) for kid in ("k1", "k2")}
RING = RINGS["k1"]
FEW = settings(max_examples=150, deadline=None)
MANY = settings(max_examples=300, deadline=None)

# -- strategies ----------------------------------------------------------------

user_ids = st.from_regex(r"[A-Za-z0-9._:@+\-]{1,128}", fullmatch=True)
#: The token core binds any path; validate_target decides which are allowed.
targets = st.text(max_size=80).map(lambda rest: "/" + rest)
epochs = st.integers(min_value=0, max_value=2**63)
# A current token's state: no key asked for, its link neither voided nor bound.
states = st.builds(
    TokenState,
    st.text(min_size=1, max_size=40),
    epochs,
    epochs,
    key=st.none(),
    link_revoked=st.just(False),
    bind_to_first_device=st.just(False),
    bound_device=st.none(),
    epoch_id=epochs,
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=15,
)


@st.composite
def issued_tokens(draw):
    """A genuine token issued ``age`` seconds ago (age within its lifetime), and its inputs."""
    user_id, state, target = draw(user_ids), draw(states), draw(targets)
    ttl = draw(st.integers(min_value=60, max_value=MAX_TTL))
    age = draw(st.integers(min_value=0, max_value=ttl))
    ring = RINGS[draw(st.sampled_from(sorted(RINGS)))]
    now = utcnow() - timedelta(seconds=age)
    token, claims = issue_token(user_id, state, target=target, ring=ring, ttl=ttl, now=now)
    return token, claims, (user_id, state, target, ttl, now, ring.active_key_id)


# -- token core ------------------------------------------------------------------


@given(
    st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(min_value=-23 * 60, max_value=23 * 60),
)
def test_isoformat_is_strftime_in_utc_to_the_second(naive, offset_minutes):
    moment = naive.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    expected = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert isoformat(moment) == expected


@FEW
@given(issued_tokens())
def test_issue_then_verify_round_trips_to_the_same_claims(issued):
    token, claims, (user_id, state, target, ttl, now, kid) = issued
    assert verify_token(token, RING) == claims
    assert claims.user_id == user_id and claims.target == target and claims.key_id == kid
    assert (claims.incarnation, claims.epoch, claims.user_epoch, claims.epoch_id) == (
        state.incarnation,
        state.epoch,
        state.user_epoch,
        state.epoch_id,
    )
    assert claims.issued_at == int(now.timestamp())
    assert claims.expires_at - claims.issued_at == ttl
    check_epochs(claims, state)


#: Replacement characters: the base64url alphabet (the likely near-misses), the
#: characters a careless decoder might accept, and anything else.
_NEAR = string.ascii_letters + string.digits + "-_.=+/ \t\n%"


@MANY
@given(issued_tokens(), st.data())
def test_one_character_edit_never_verifies_to_another_user(issued, data):
    token, claims, _ = issued
    index = data.draw(st.integers(min_value=0, max_value=len(token) - 1), label="index")
    edit = data.draw(st.sampled_from(["replace", "delete", "insert"]), label="edit")
    char = data.draw(st.sampled_from(_NEAR) | st.characters(), label="char")
    if edit == "replace":
        edited = token[:index] + char + token[index + 1 :]
    elif edit == "delete":
        edited = token[:index] + token[index + 1 :]
    else:
        edited = token[:index] + char + token[index:]
    assume(edited != token)
    try:
        got = verify_token(edited, RING)
    except TokenError as e:
        event(type(e).__name__)
        return
    event("verified: signature tail bits")
    # Only one edit may still verify: the last character of the signature carries
    # bits base64url decoding ignores, so the signature bytes are unchanged.
    assert got == claims
    signing_input, signature = token.rsplit(".", 1)
    edited_input, edited_signature = edited.rsplit(".", 1)
    assert edited_input == signing_input
    assert base64url_decode(edited_signature) == base64url_decode(signature)


@MANY
@given(
    st.text(max_size=300)
    | st.from_regex(
        r"[A-Za-z0-9_-]{1,80}\.[A-Za-z0-9_-]{1,200}\.[A-Za-z0-9_-]{0,60}", fullmatch=True
    )
    | st.builds(
        lambda h, p, s: (
            ".".join(base64url_encode(json.dumps(x).encode()).decode() for x in (h, p))
            + "."
            + base64url_encode(s).decode()
        ),
        json_values,
        json_values,
        st.binary(max_size=64),
    )
)
def test_arbitrary_text_raises_a_token_error(text):
    with pytest.raises(TokenError):
        verify_token(text, RING)


@FEW
@given(json_values.filter(lambda v: not isinstance(v, str)) | st.binary(max_size=64))
def test_arbitrary_objects_raise_a_token_error(value):
    with pytest.raises(TokenError):
        verify_token(value, RING)


_CLAIM_NAMES = ["iss", "aud", "sub", "iat", "exp", "jti", "pur", "sid", "ep", "uep", "tgt", "nbf"]


@MANY
@given(
    header=st.fixed_dictionaries(
        {},
        optional={
            "alg": st.sampled_from(["HS256", "HS512", "none", "RS256"]) | json_values,
            "kid": st.sampled_from(["k1", "k2", "k3"]) | json_values,
            "typ": st.sampled_from(["JWT", "JWE"]) | json_values,
            "cty": json_values,
        },
    ),
    changes=st.dictionaries(st.sampled_from(_CLAIM_NAMES), json_values, max_size=3),
    dropped=st.lists(st.sampled_from(_CLAIM_NAMES), max_size=2),
)
def test_signed_tokens_with_arbitrary_header_and_claims_never_crash(header, changes, dropped):
    """Signed with our key, so only the header and claim checks stand between it and a login."""
    now = int(utcnow().timestamp())
    payload = {
        "iss": RING.issuer,
        "aud": RING.audience,
        "sub": "42",
        "iat": now,
        "exp": now + 3600,
        "jti": "j",
        "pur": PURPOSE,
        "sid": "s",
        "ep": 1,
        "uep": 0,
        "tgt": "/",
        **changes,
    }
    for name in dropped:
        payload.pop(name, None)
    segments = [base64url_encode(json.dumps(x).encode()).decode() for x in (header, payload)]
    signing_input = ".".join(segments).encode()
    signature = RING._hmac.sign(signing_input, K1)
    token = signing_input.decode() + "." + base64url_encode(signature).decode()
    try:
        claims = verify_token(token, RING)
    except TokenError:
        return
    # Accepted: then it is exactly what a token of this service says.
    assert header.get("alg") == "HS256" and header.get("kid") == "k1"
    assert claims.user_id == payload["sub"] and USER_ID.fullmatch(claims.user_id)
    assert 0 < claims.expires_at - claims.issued_at <= MAX_TTL


@settings(max_examples=50, deadline=None)
@given(
    st.text(max_size=20),
    st.integers(min_value=0xD800, max_value=0xDFFF).map(chr),
    st.text(max_size=20),
)
def test_text_with_a_lone_surrogate_raises_a_token_error(before, surrogate, after):
    with pytest.raises(TokenError):
        verify_token(before + surrogate + after, RING)


# -- request validation ------------------------------------------------------------

TOKEN_PARAM = "auto_login"
LINK_CODES = {"invalid_request", "invalid_target", "invalid_ttl"}
VALID_REQUEST = {
    "user_id": "42",
    "email": "alice@example.com",
    "recipients": {"to": ["alice@example.com"], "cc": [], "bcc": []},
    "target": "/tickets/1234?tab=notes",
    "ttl_seconds": 3600,
}
_addresses = (
    st.sampled_from(
        [
            "alice@example.com",
            "Alice@Example.COM",
            "bob@example.com",
            "a@b",
            "@example.com",
            "alice@example.com ",
            "Alice <alice@example.com>",
            "a" * 65 + "@example.com",
            "",
        ]
    )
    | st.emails()
    | json_values
)
_PLAUSIBLE = {
    "user_id": user_ids | st.sampled_from(["", "a" * 129, "a b", "ä", "42\n"]),
    "email": _addresses,
    "recipients": st.fixed_dictionaries(
        {},
        optional={
            "to": st.lists(_addresses, max_size=3),
            "cc": st.lists(_addresses, max_size=3) | json_values,
            "bcc": st.lists(_addresses, max_size=3),
            "extra": json_values,
        },
    ),
    "target": st.sampled_from(
        [
            "/",
            "//evil.test",
            "/\\evil.test",
            "https://evil.test/",
            "/%2F%2Fevil.test",
            "/%5Cevil.test",
            "/a\nb",
            "/?auto_login=x",
            "javascript:alert(1)",
            "",
            "/" * 3000,
        ]
    )
    | targets,
    "ttl_seconds": st.sampled_from([59, 60, MAX_TTL, MAX_TTL + 1, 0, -1, True, 3600.0, "3600"])
    | st.integers()
    | json_values,
}


@st.composite
def perturbed_requests(draw):
    """A valid link request with up to three fields dropped, replaced or added."""
    body = copy.deepcopy(VALID_REQUEST)
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        name = draw(st.sampled_from([*_PLAUSIBLE, "extra"]))
        action = draw(st.sampled_from(["drop", "plausible", "arbitrary"]))
        if action == "drop":
            body.pop(name, None)
        elif action == "plausible" and name in _PLAUSIBLE:
            body[name] = draw(_PLAUSIBLE[name])
        else:
            body[name] = draw(json_values)
    return body


def _check_link_request(body: Any) -> None:
    try:
        request = parse_link_request(body, token_param=TOKEN_PARAM, max_ttl_seconds=MAX_TTL)
    except ApiError as e:
        assert e.status == 400 and e.code in LINK_CODES, (e.status, e.code)
        return
    assert isinstance(request, LinkRequest)
    assert USER_ID.fullmatch(request.user_id)
    assert request.recipients and all(r == r.lower() for r in request.recipients)
    assert validate_target(request.target, TOKEN_PARAM) == request.target
    assert request.ttl_seconds is None or 60 <= request.ttl_seconds <= MAX_TTL


@MANY
@given(json_values)
def test_parse_link_request_on_any_json_value(body):
    _check_link_request(body)


@MANY
@given(perturbed_requests())
def test_parse_link_request_on_perturbed_valid_requests(body):
    _check_link_request(body)


def test_parse_link_request_accepts_the_unperturbed_request():
    """The control for the perturbations: the base request is valid."""
    request = parse_link_request(VALID_REQUEST, token_param=TOKEN_PARAM, max_ttl_seconds=MAX_TTL)
    assert request.target == VALID_REQUEST["target"]


_URL_PIECES = st.sampled_from(
    [
        "/",
        "//",
        "\\",
        "/\\",
        "http:",
        "https:",
        "javascript:",
        "//evil.test",
        "evil.test",
        "@",
        ":",
        "?",
        "#",
        "&",
        "=",
        "%",
        "%2F",
        "%2f",
        "%5C",
        "%5c",
        "%0A",
        "%00",
        "%09",
        "\t",
        "\n",
        "\r",
        "\x00",
        "\x7f",
        " ",
        "a",
        "1",
        ".",
        "..",
        "auto_login",
        "\u3002",
        "\uff0f",
    ]
)
_target_like = st.lists(_URL_PIECES | st.text(max_size=3), max_size=8).map("".join)


@MANY
@given(_target_like | st.text(max_size=40) | targets)
def test_validate_target_never_accepts_a_url_a_host_or_a_control_character(value):
    try:
        accepted = validate_target(value, TOKEN_PARAM)
    except ApiError as e:
        assert (e.status, e.code) == (400, "invalid_target")
        return
    parts = urlsplit(accepted)
    assert not parts.scheme and not parts.netloc
    assert accepted.startswith("/") and not accepted.startswith("//")
    assert "\\" not in accepted
    assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in accepted)
    decoded = unquote(parts.path)
    assert not decoded.startswith("//") and "\\" not in decoded
    assert not any(ord(c) < 0x20 for c in decoded)


# -- the HTTP app ---------------------------------------------------------------------


def _write_routes(app) -> list[tuple[str, str]]:
    """Every POST and PATCH route of the app, path parameters filled in."""
    routes = []
    for rule in app.url_map.iter_rules():
        for method in sorted(rule.methods & {"POST", "PATCH"}):
            path = rule.rule
            for name in rule.arguments:
                path = path.replace(f"<path:{name}>", "42").replace(f"<{name}>", "42")
            routes.append((method, path))
    return routes


_FIELDS = [
    "token",
    "client",
    "items",
    "text",
    "content_type",
    "reason",
    "auto_login_enabled",
    "token_ttl_seconds",
    "max_token_ttl_seconds",
    *VALID_REQUEST,
]
_any_bodies = json_values | st.dictionaries(
    st.sampled_from(_FIELDS) | st.text(max_size=8), json_values, max_size=4
)
_raw_bodies = st.sampled_from(
    [
        b"",
        b"{",
        b"[1,2",
        b'{"token": NaN}',
        b'{"a": Infinity}',
        b"\xff\xfe",
        b"null",
        b'{"token": "\\ud800"}',
        b"[" * 100_000,
        b'{"a":' * 50_000,
        b'{"items": [' + b"{}," * 999 + b"{}]}",
    ]
) | st.binary(max_size=200)


def _plausible_bodies(path: str, token: str) -> st.SearchStrategy:
    """Bodies close to what ``path`` expects, so that the deeper code runs too."""
    if path == "/v1/links":
        return perturbed_requests()
    if path == "/v1/links/batch":
        return st.builds(lambda items: {"items": items}, st.lists(perturbed_requests(), max_size=4))
    if path == "/v1/tokens/verify":
        tokens = st.sampled_from([token, token[:-1], token + "x", ""]) | st.text(max_size=50)
        clients = st.fixed_dictionaries(
            {},
            optional={
                "ip": st.text(max_size=70) | json_values,
                "user_agent": st.text(max_size=600) | json_values,
                "other": json_values,
            },
        )
        return st.fixed_dictionaries(
            {"token": tokens | json_values}, optional={"client": clients | json_values}
        )
    if path == "/v1/scrub":
        texts = st.sampled_from(
            [
                f"see {PORTAL}/t?auto_login={token} now",
                f'<a href="{PORTAL}/?auto_login={token}&amp;a=1">',
            ]
        )
        return st.fixed_dictionaries(
            {"text": texts | st.text(max_size=200) | json_values},
            optional={
                "content_type": st.sampled_from(["text/plain", "text/html", "x"]) | json_values
            },
        )
    if path == "/v1/admin/settings":
        return st.fixed_dictionaries(
            {},
            optional={
                "auto_login_enabled": st.booleans() | json_values,
                "token_ttl_seconds": st.integers(min_value=0, max_value=MAX_TTL + 10) | json_values,
                "max_token_ttl_seconds": st.integers(),
            },
        )
    if path == "/v1/admin/epoch/bump" or path.endswith("/revoke"):
        return st.fixed_dictionaries({"reason": st.text(max_size=600) | json_values})
    return _any_bodies


def _check_answer(response) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code >= 400:
        assert response.mimetype == "application/problem+json"
        problem = response.json
        assert problem["status"] == response.status_code and isinstance(problem["code"], str)
    else:
        assert 200 <= response.status_code < 300
        assert response.mimetype == "application/json"


@settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_json_body_on_every_write_route_gets_no_5xx(sqlite_app, data):
    routes = _write_routes(sqlite_app)
    assert ("POST", "/v1/tokens/verify") in routes and ("PATCH", "/v1/admin/settings") in routes
    method, path = data.draw(st.sampled_from(routes), label="route")
    client = sqlite_app.test_client()
    kind = data.draw(st.sampled_from(["plausible", "any", "raw"]), label="kind")
    if kind == "raw":
        body = data.draw(_raw_bodies, label="raw body")
        response = client.open(
            path, method=method, data=body, content_type="application/json", headers=auth("ops-key")
        )
    else:
        store = sqlite_app.extensions["store"]
        token, _ = issue_token(
            "42", store.token_state("42"), target="/t", ring=RING, ttl=3600, now=utcnow()
        )
        strategy = _plausible_bodies(path, token) if kind == "plausible" else _any_bodies
        body = data.draw(strategy, label="body")
        response = client.open(path, method=method, json=body, headers=auth("ops-key"))
    event(f"{method} {path} -> {response.status_code}")
    _check_answer(response)
