"""Issue and verify login tokens: pure functions, no Flask.

A token is a compact JWS signed with the active key of a :class:`KeyRing`.
Its claims bind it to one user, one lifetime, one purpose, one target and the
store's state at issue time (incarnation, global epoch, user epoch). The
signature and every claim are checked here; whether the epochs are still
current is checked by :func:`check_epochs` against a fresh store read, after
the signature has been verified, so nothing in a forged token is ever
believed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from binascii import a2b_base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import Any, NamedTuple

from jwt.algorithms import HMACAlgorithm
from jwt.utils import base64url_decode, base64url_encode

from service.clock import utcnow
from service.errors import (
    ApiError,
    BadSignatureError,
    BoundElsewhereError,
    ExpiredTokenError,
    MalformedTokenError,
    RevokedTokenError,
)
from service.store import EPOCH_VALUES, LinkCheck, TokenState
from service.transport import DEVICE_ID

__all__ = [
    "LEGACY_PURPOSE",
    "PURPOSE",
    "REQUIRED_CLAIMS",
    "Claims",
    "KeyRing",
    "DEVICE_ID",
    "check_device",
    "check_epochs",
    "device_hash",
    "link_check",
    "check_tenant",
    "issue_token",
    "longest_token",
    "tenant_claim",
    "verify_token",
]

#: The purpose claim of tokens issued before tenants (``default``'s, see
#: :func:`check_tenant`): a token minted by the same keys for anything else
#: is not a login link (it does the job of itsdangerous' salt). Since
#: tenants, each tenant's tokens have a purpose of their own, a 12-character
#: digest of the tenant id (:func:`tenant_claim`), as long as this one: a
#: token of one tenant is minted for another purpose as far as every other
#: tenant is concerned, and tokens are no longer than before, so every
#: deployment that started before starts again.
LEGACY_PURPOSE = "portal-login"
#: The length of a tenant's purpose claim.
TENANT_CLAIM_CHARS = 12
#: Every claim is required on decode; a token missing any one is invalid.
REQUIRED_CLAIMS = ("iss", "aud", "sub", "iat", "exp", "jti", "pur", "sid", "ep", "uep", "tgt")
#: A longer input is refused before it is parsed.
MAX_TOKEN_LENGTH = 4096
#: The contract's bound on a token: at most this many characters for a user
#: id and a target of the lengths below, so that a link fits in any email.
CONTRACT_TOKEN_CHARS = 512
CONTRACT_USER_ID_CHARS = 36
CONTRACT_TARGET_CHARS = 64
USER_ID = re.compile(r"[A-Za-z0-9._:@+\-]{1,128}")
#: A compact JWS: three base64url segments. Anything else is refused before
#: a byte of it is decoded (JWE has five, unsecured JWS ends in a dot).
_COMPACT = re.compile(rb"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_WHITESPACE = re.compile(r"\s")
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))
_REQUIRED = frozenset(REQUIRED_CLAIMS)
_URLSAFE = bytes.maketrans(b"-_", b"+/")
_HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
#: The header fields a token of this service may carry. jku, x5u, jwk, x5c
#: and crit would ask the verifier to fetch or trust keys or understand
#: extensions: a token that carries them is refused, never followed.
_HEADER_FIELDS = frozenset({"alg", "kid", "typ"})


@cache
def _header_segment(algorithm: str, kid: str, typ: bool = False) -> bytes:
    # Byte for byte what PyJWT's jwt.encode writes for the same header
    # (with ``headers={"typ": None}``): no "typ", which is optional (RFC 7519
    # 5.1) and costs 16 of the token's 512 characters that the epoch
    # identity needs. ``typ``: the header of tokens issued before, with it.
    header = {"alg": algorithm, "kid": kid, **({"typ": "JWT"} if typ else {})}
    return base64url_encode(json.dumps(header, separators=(",", ":"), sort_keys=True).encode())


@dataclass(frozen=True)
class KeyRing:
    """The signing keys: one active signer, every key verifies (rotation).

    Everything that does not change between calls is prepared once here:
    PyJWT's HMAC algorithm object, each key checked by its ``prepare_key``
    (which refuses PEM, SSH and JWK material), and the exact header segment
    this service writes for each key id.
    """

    keys: Mapping[str, bytes]
    active_key_id: str
    algorithm: str
    issuer: str
    audience: str
    max_ttl_seconds: int
    leeway_seconds: int
    _hmac: HMACAlgorithm = field(init=False, repr=False, compare=False)
    _prepared: dict[str, bytes] = field(init=False, repr=False, compare=False)
    _headers: dict[bytes, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.algorithm not in _HASHES:
            raise ValueError(f"algorithm {self.algorithm!r} is not one of {sorted(_HASHES)}")
        if self.active_key_id not in self.keys:
            raise ValueError(f"active key id {self.active_key_id!r} is not a key id")
        hmac_alg = HMACAlgorithm(_HASHES[self.algorithm])
        # prepare_key raises InvalidKeyError for key material that is not an
        # HMAC secret; create_app turns that into a ConfigError at start-up.
        prepared = {kid: hmac_alg.prepare_key(secret) for kid, secret in self.keys.items()}
        headers = {
            _header_segment(self.algorithm, kid, typ): kid
            for kid in self.keys
            for typ in (True, False)
        }
        object.__setattr__(self, "_hmac", hmac_alg)
        object.__setattr__(self, "_prepared", prepared)
        object.__setattr__(self, "_headers", headers)

    @property
    def active_header(self) -> bytes:
        """The header segment of tokens signed now."""
        return _header_segment(self.algorithm, self.active_key_id)


class Claims(NamedTuple):
    """The checked claims of a genuine token (a named tuple: built on every click)."""

    user_id: str
    issued_at: int
    expires_at: int
    token_id: str
    incarnation: str
    epoch: int
    user_epoch: int
    target: str
    key_id: str
    #: The tenant's digest from the purpose claim (:func:`tenant_claim`);
    #: ``None`` in a token issued before tenants existed.
    tenant: str | None = None
    #: The global epoch's random identity (claim ``eid``; 0 in a token
    #: issued before epochs had one): see :func:`check_epochs`.
    epoch_id: int = 0


@lru_cache(maxsize=4096)  # bounded: a platform key may name any well-formed id
def tenant_claim(tenant_id: str) -> str:
    """Return the purpose claim of ``tenant_id``'s tokens: 12 base64url characters of SHA-256.

    A digest rather than the id, so that a token stays within the contract's
    512 characters whatever the id's length (up to 63); 72 bits, so that no
    two of even millions of tenants share one by chance.
    """
    return base64url_encode(hashlib.sha256(tenant_id.encode()).digest()[:9]).decode("ascii")


def longest_token(ring: KeyRing) -> int:
    """Return how long ``ring``'s tokens get for the contract's longest user id and target.

    The parts that grow are taken at their longest: a global epoch of seven
    digits, a random epoch identity and user epoch at their largest, the
    longest lifetime, times of ten digits (until the year 2286).
    """
    # The stores' incarnations are 12 characters.
    state = TokenState("x" * 12, 9_999_999, EPOCH_VALUES[1] - 1, epoch_id=EPOCH_VALUES[1] - 1)
    token, _ = issue_token(
        "u" * CONTRACT_USER_ID_CHARS,
        state,
        target="/" + "t" * (CONTRACT_TARGET_CHARS - 1),
        ring=ring,
        ttl=ring.max_ttl_seconds,
        now=datetime(2286, 1, 1, tzinfo=UTC),
    )
    return len(token)


def issue_token(
    user_id: str,
    state: TokenState,
    *,
    target: str,
    ring: KeyRing,
    ttl: int,
    now: datetime,
    tenant_id: str = "default",
) -> tuple[str, Claims]:
    """Issue a login token for ``user_id`` of ``tenant_id`` bound to the store ``state``.

    :param ttl: lifetime in seconds; never above the ring's maximum.
    :param now: the issue time; passed in so tests can assert exact claims.
    """
    if not 0 < ttl <= ring.max_ttl_seconds:
        raise ValueError(f"ttl {ttl} is outside 1 .. {ring.max_ttl_seconds}")
    iat = int(now.timestamp())
    claims = Claims(
        user_id=user_id,
        issued_at=iat,
        expires_at=iat + ttl,
        token_id=new_link_id(iat),
        incarnation=state.incarnation,
        epoch=state.epoch,
        user_epoch=state.user_epoch,
        target=target,
        key_id=ring.active_key_id,
        tenant=tenant_claim(tenant_id),
        epoch_id=state.epoch_id,
    )
    payload = {
        "iss": ring.issuer,
        "aud": ring.audience,
        "sub": user_id,
        "iat": claims.issued_at,
        "exp": claims.expires_at,
        "jti": claims.token_id,
        "pur": claims.tenant,
        "sid": claims.incarnation,
        "ep": claims.epoch,
        "uep": claims.user_epoch,
        "eid": claims.epoch_id,
        "tgt": target,
    }
    # What jwt.encode does, minus the per-call work: the header segment and
    # the prepared key come from the ring, the signature from PyJWT's own
    # HMAC algorithm object. The result is a standard JWS (tests decode it
    # with jwt.decode).
    body = base64url_encode(_COMPACT_JSON.encode(payload).encode())
    signing_input = ring.active_header + b"." + body
    # hmac.digest with PyJWT's hash: the one-shot C path of what
    # HMACAlgorithm.sign computes through a Python-level hmac object.
    signature = hmac.digest(ring._prepared[ring.active_key_id], signing_input, ring._hmac.hash_alg)
    return (signing_input + b"." + base64url_encode(signature)).decode("ascii"), claims


class _RandomPool(threading.local):
    """Random bytes drawn from the kernel 3 KiB at a time, per thread and process."""

    def __init__(self) -> None:
        self.pid = 0
        self.buffer = b""
        self.offset = 0


_random = _RandomPool()


def new_link_id(iat: int) -> str:
    """A link id: the issue second (4 bytes) and 64 random bits, 16 base64url characters.

    Unique per token (n ids issued in one second share one with a chance of
    about n**2 / 2**65: one in 10**12 at 6,000 a second), short enough for
    the 512-character budget.
    The leading second is no secret (the token's ``iat`` says as much) and
    makes a batch's ids neighbours: SQLite's ledger inserts them into a few
    pages of its primary key instead of one random page each.
    """
    # secrets.token_bytes per token is one getrandom() call each: a batch of
    # 1000 links paid more for its ids than for its signatures. Same CSPRNG,
    # drawn in bulk; a forked worker never reuses its parent's bytes.
    pool = _random
    if pool.pid != os.getpid() or pool.offset + 8 > len(pool.buffer):
        pool.buffer, pool.offset, pool.pid = secrets.token_bytes(3072), 0, os.getpid()
    chunk = pool.buffer[pool.offset : pool.offset + 8]
    pool.offset += 8
    return base64url_encode((iat & 0xFFFFFFFF).to_bytes(4, "big") + chunk).decode("ascii")


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    claims = dict(pairs)
    if len(claims) != len(pairs):
        raise MalformedTokenError("duplicate claim")
    return claims


def _key_id(header_segment: bytes, ring: KeyRing) -> str:
    """Return the key id of a header this service would accept, else raise."""
    kid = ring._headers.get(header_segment)
    if kid is not None:
        return kid  # the exact header this service writes: nothing to parse
    try:
        header = json.loads(base64url_decode(header_segment))
    except (ValueError, TypeError, RecursionError) as e:
        raise MalformedTokenError("header is not JSON") from e
    if not isinstance(header, dict):
        raise MalformedTokenError("header is not an object")
    if not _HEADER_FIELDS.issuperset(header):
        raise MalformedTokenError("header field not allowed")
    if header.get("alg") != ring.algorithm:
        raise MalformedTokenError("algorithm not allowed")
    if header.get("typ", "JWT") != "JWT":
        raise MalformedTokenError("typ not allowed")
    kid = header.get("kid")
    # Only key ids we hold: the kid is looked up in a dict, never used as a
    # path, a query or a URL.
    if not isinstance(kid, str) or kid not in ring._prepared:
        raise MalformedTokenError("unknown key id")
    return kid


def _claims(payload: Mapping[str, Any], kid: str, ring: KeyRing) -> Claims:
    """Check every claim but exp; raise ``MalformedTokenError``."""
    if not _REQUIRED.issubset(payload):
        missing = sorted(_REQUIRED.difference(payload))
        raise MalformedTokenError(f"{missing[0]} claim missing")
    if payload["iss"] != ring.issuer:
        raise MalformedTokenError("wrong issuer")
    if payload["aud"] != ring.audience:
        raise MalformedTokenError("wrong audience")
    pur = payload["pur"]
    if pur == LEGACY_PURPOSE:
        tenant = None
    elif type(pur) is str and len(pur) == TENANT_CLAIM_CHARS:
        tenant = pur
    else:
        raise MalformedTokenError("token minted for another purpose")
    sub, iat, exp = payload["sub"], payload["iat"], payload["exp"]
    ep, uep = payload["ep"], payload["uep"]
    jti, sid, tgt = payload["jti"], payload["sid"], payload["tgt"]
    if type(sub) is not str or not USER_ID.fullmatch(sub):
        raise MalformedTokenError("sub is not a user id")
    # type() is not int: a bool (True == 1) or a float is not a whole number here.
    if type(iat) is not int or type(exp) is not int or type(ep) is not int or type(uep) is not int:
        raise MalformedTokenError("iat, exp, ep and uep must be whole numbers")
    if iat < 0 or ep < 0 or uep < 0 or not 0 < exp - iat <= ring.max_ttl_seconds:
        raise MalformedTokenError("negative claim, or lifetime above the configured maximum")
    if type(jti) is not str or type(sid) is not str or type(tgt) is not str:
        raise MalformedTokenError("jti, sid and tgt must be strings")
    if not jti or not sid or not tgt.startswith("/"):
        raise MalformedTokenError("empty jti or sid, or a target that is not a path")
    eid = payload.get("eid", 0)  # none in a token issued before epoch identities
    if type(eid) is not int or eid < 0:
        raise MalformedTokenError("eid must be a whole number")
    return Claims(sub, iat, exp, jti, sid, ep, uep, tgt, kid, tenant, eid)


def _b64decode(segment: bytes) -> bytes:
    # The alphabet was checked by _COMPACT already; the stdlib's
    # urlsafe_b64decode does the same in several Python-level steps.
    return a2b_base64(segment.translate(_URLSAFE) + b"=" * (-len(segment) % 4))


def verify_token(
    token: Any,
    ring: KeyRing,
    *,
    tenant_id: str | None = None,
    legacy_before: float | None = None,
) -> Claims:
    """Verify ``token``'s signature and every claim; return its claims.

    The checks are those of ``jwt.decode(token, key, algorithms=[alg],
    audience=..., issuer=..., leeway=..., options={"require": [...],
    "strict_aud": True})`` plus this service's own, in an order that never
    believes an unsigned byte: shape, header, signature (PyJWT's HMAC
    algorithm object, constant-time compare), then claims, then expiry last,
    so that only a token of this service, audience and purpose is ever called
    expired. The per-call work PyJWT repeats (key preparation, header
    parsing, option merging) is done once, in the :class:`KeyRing`.
    The epochs are not checked here: see :func:`check_epochs`.

    :param tenant_id: the tenant the token must belong to (:func:`check_tenant`,
        with ``legacy_before``), checked before expiry, so that another
        tenant's token is never called expired here; ``None``: any tenant.
    """
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise MalformedTokenError("not a token of acceptable length")
    # A compact JWS is ASCII; refusing anything else first also keeps lone
    # surrogates (which no codec encodes) from escaping as a UnicodeError.
    if not token.isascii():
        raise MalformedTokenError("not ASCII")
    raw = token.encode("ascii")
    if not _COMPACT.fullmatch(raw):
        raise MalformedTokenError("not a compact JWS")
    header_segment, payload_segment, signature_segment = raw.split(b".")
    kid = _key_id(header_segment, ring)
    try:
        signature = _b64decode(signature_segment)
    except ValueError as e:
        raise MalformedTokenError("signature is not base64url") from e
    signing_input = raw[: len(header_segment) + 1 + len(payload_segment)]
    if not ring._hmac.verify(signing_input, ring._prepared[kid], signature):
        raise BadSignatureError("signature does not match")
    try:
        text = _b64decode(payload_segment).decode("utf-8")
        payload = json.loads(text)
        # Duplicate claims: in compact JSON every key is followed by '":', so
        # as many '":' as top-level keys proves there is no duplicate; anything
        # else (whitespace, nesting, a '":' inside a value) is parsed again
        # with a hook that counts every pair.
        if type(payload) is dict and (
            text.count('":') != len(payload) or _WHITESPACE.search(text) is not None
        ):
            payload = json.loads(text, object_pairs_hook=_refuse_duplicates)
    except (ValueError, TypeError, RecursionError) as e:
        raise MalformedTokenError("payload is not JSON") from e
    if not isinstance(payload, dict):
        raise MalformedTokenError("payload is not an object")
    claims = _claims(payload, kid, ring)
    if tenant_id is not None:
        check_tenant(claims, tenant_id, legacy_before)
    now = utcnow().timestamp()
    leeway = ring.leeway_seconds
    # API.md: expired only when *past* exp plus the leeway, so a token is
    # still good at exactly exp + leeway; issued in the future is invalid.
    if claims.issued_at > now + leeway:
        raise MalformedTokenError("issued in the future")
    if "nbf" in payload and (type(payload["nbf"]) is not int or payload["nbf"] > now + leeway):
        raise MalformedTokenError("not yet valid")
    if now > claims.expires_at + leeway:
        raise ExpiredTokenError(
            "token expired",
            user_id=claims.user_id,
            expired_at=claims.expires_at,
            incarnation=claims.incarnation,
            link_id=claims.token_id,
        )
    return claims


#: The purpose claim of the ``default`` tenant's tokens.
PURPOSE = tenant_claim("default")


def check_tenant(claims: Claims, tenant_id: str, legacy_before: float | None) -> None:
    """Raise ``MalformedTokenError`` unless ``claims`` belong to ``tenant_id``.

    A token of another tenant is as good as a forgery here: ``token_invalid``,
    nothing believed. A token without the claim was issued by the version
    before tenants: it is ``default``'s, and only if it was issued before
    this version took the store over (``legacy_before``), so no token made
    since can leave the claim out to pass in any tenant.
    """
    if claims.tenant is None:
        if tenant_id != "default" or legacy_before is None or claims.issued_at > legacy_before:
            raise MalformedTokenError("no tenant claim")
    elif claims.tenant != tenant_claim(tenant_id):
        raise MalformedTokenError("token of another tenant")


def check_epochs(claims: Claims, state: TokenState) -> None:
    """Raise ``RevokedTokenError`` unless ``claims`` match the store ``state``.

    ``!=`` rather than ``<``: an epoch from the "future" (a store restored
    from an old backup) is no more trustworthy than an old one. The global
    epoch's number is checked with its random identity (``eid``), and user
    epochs are random after a revocation: a bump or a revocation that a
    Redis failover lost (after tokens were issued under it) gives its number
    back, but the next one draws a new identity, so those tokens stay void.
    A token or store without an identity has 0 (until the next bump).
    """
    checks = (
        ("store", claims.incarnation, state.incarnation),
        ("global", claims.epoch, state.epoch),
        ("global", claims.epoch_id, state.epoch_id),
        ("user", claims.user_epoch, state.user_epoch),
    )
    for scope, token_epoch, current_epoch in checks:
        if token_epoch != current_epoch:
            raise RevokedTokenError(
                f"{scope} epoch changed",
                user_id=claims.user_id,
                scope=scope,
                token_epoch=token_epoch,
                current_epoch=current_epoch,
                incarnation=claims.incarnation,
                link_id=claims.token_id,
            )
    if state.link_revoked:
        raise RevokedTokenError(
            "link voided",
            user_id=claims.user_id,
            scope="link",
            token_epoch=claims.token_id,
            current_epoch="voided",
            incarnation=claims.incarnation,
            link_id=claims.token_id,
        )


def device_hash(secret: bytes, device: str) -> str:
    """Return the keyed hash the store keeps of a device id (never the id itself).

    HMAC-SHA256 under the deployment's secret, 128 bits in base64url: the
    store, a backup or a log of it cannot be turned back into the cookie.
    """
    digest = hmac.digest(secret, b"device:" + device.encode("ascii"), hashlib.sha256)
    return base64url_encode(digest[:16]).decode("ascii")


def link_check(claims: Claims, device: str | None) -> LinkCheck:
    """Return what the store needs to read ``claims``' link state (and bind it to ``device``)."""
    return LinkCheck(
        claims.token_id,
        claims.incarnation,
        claims.epoch,
        claims.user_epoch,
        device,
        claims.expires_at,
        claims.epoch_id,
    )


def check_device(claims: Claims, state: TokenState, device: str | None) -> None:
    """Refuse a current token whose link is bound to another browser.

    Call after :func:`check_epochs`. While the tenant binds links to their
    first browser, a verification must say which browser clicked (``device``,
    the keyed hash): without it, ``400 invalid_request``, so a portal that
    does not send it fails loudly instead of dropping the protection.
    """
    if not state.bind_to_first_device:
        return
    if device is None:
        raise ApiError(
            400,
            "invalid_request",
            "client.device: is required while bind_to_first_device is on",
        )
    if state.bound_device is not None and state.bound_device != device:
        raise BoundElsewhereError(
            "link bound to another browser",
            user_id=claims.user_id,
            incarnation=claims.incarnation,
            link_id=claims.token_id,
        )
