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

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt

from service.errors import (
    BadSignatureError,
    ExpiredTokenError,
    MalformedTokenError,
    RevokedTokenError,
)
from service.store import TokenState

__all__ = [
    "PURPOSE",
    "REQUIRED_CLAIMS",
    "Claims",
    "KeyRing",
    "check_epochs",
    "issue_token",
    "verify_token",
]

#: The purpose claim: a token minted by the same keys for anything else is
#: not a login link (it does the job of itsdangerous' salt).
PURPOSE = "portal-login"
#: Every claim is required on decode; a token missing any one is invalid.
REQUIRED_CLAIMS = ("iss", "aud", "sub", "iat", "exp", "jti", "pur", "sid", "ep", "uep", "tgt")
#: A longer input is refused before it is parsed.
MAX_TOKEN_LENGTH = 4096
USER_ID = re.compile(r"[A-Za-z0-9._:@+\-]{1,128}")


@dataclass(frozen=True)
class KeyRing:
    """The signing keys: one active signer, every key verifies (rotation)."""

    keys: Mapping[str, bytes]
    active_key_id: str
    algorithm: str
    issuer: str
    audience: str
    max_ttl_seconds: int
    leeway_seconds: int


@dataclass(frozen=True)
class Claims:
    """The checked claims of a genuine token."""

    user_id: str
    issued_at: int
    expires_at: int
    token_id: str
    incarnation: str
    epoch: int
    user_epoch: int
    target: str
    key_id: str


def issue_token(
    user_id: str,
    state: TokenState,
    *,
    target: str,
    ring: KeyRing,
    ttl: int,
    now: datetime,
) -> tuple[str, Claims]:
    """Issue a login token for ``user_id`` bound to the store ``state``.

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
        # 96 random bits: unique per token, short enough for the 512-character budget.
        token_id=secrets.token_urlsafe(12),
        incarnation=state.incarnation,
        epoch=state.epoch,
        user_epoch=state.user_epoch,
        target=target,
        key_id=ring.active_key_id,
    )
    payload = {
        "iss": ring.issuer,
        "aud": ring.audience,
        "sub": user_id,
        "iat": claims.issued_at,
        "exp": claims.expires_at,
        "jti": claims.token_id,
        "pur": PURPOSE,
        "sid": claims.incarnation,
        "ep": claims.epoch,
        "uep": claims.user_epoch,
        "tgt": target,
    }
    token = jwt.encode(
        payload,
        ring.keys[ring.active_key_id],
        algorithm=ring.algorithm,
        headers={"kid": ring.active_key_id},
    )
    return token, claims


def _decode(token: str, key: bytes, ring: KeyRing, *, verify_exp: bool) -> dict[str, Any]:
    return jwt.decode(
        token,
        key,
        algorithms=[ring.algorithm],
        audience=ring.audience,
        issuer=ring.issuer,
        leeway=ring.leeway_seconds,
        options={"require": list(REQUIRED_CLAIMS), "verify_exp": verify_exp, "strict_aud": True},
    )


def _claims(payload: Mapping[str, Any], kid: str, ring: KeyRing) -> Claims:
    """Check the claims PyJWT does not know about; raise ``MalformedTokenError``."""
    sub, iat, exp = payload["sub"], payload["iat"], payload["exp"]
    if payload["pur"] != PURPOSE:
        raise MalformedTokenError("token minted for another purpose")
    if not isinstance(sub, str) or not USER_ID.fullmatch(sub):
        raise MalformedTokenError("sub is not a user id")
    for name in ("iat", "exp", "ep", "uep"):
        value = payload[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise MalformedTokenError(f"{name} is not a whole number")
    if not 0 < exp - iat <= ring.max_ttl_seconds:
        raise MalformedTokenError("lifetime above the configured maximum")
    for name in ("jti", "sid", "tgt"):
        if not isinstance(payload[name], str) or not payload[name]:
            raise MalformedTokenError(f"{name} is not a string")
    if not payload["tgt"].startswith("/"):
        raise MalformedTokenError("target is not a path")
    return Claims(
        user_id=sub,
        issued_at=iat,
        expires_at=exp,
        token_id=payload["jti"],
        incarnation=payload["sid"],
        epoch=payload["ep"],
        user_epoch=payload["uep"],
        target=payload["tgt"],
        key_id=kid,
    )


def verify_token(token: Any, ring: KeyRing) -> Claims:
    """Verify ``token``'s signature and every claim; return its claims.

    PyJWT checks ``exp`` and ``iat`` against its own clock with the ring's
    leeway. The epochs are not checked here: see :func:`check_epochs`.
    """
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise MalformedTokenError("not a token of acceptable length")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as e:
        raise MalformedTokenError(str(e)) from e
    kid = header.get("kid")
    # Only key ids we hold: the kid is looked up in a dict, never used as a
    # path, a query or a URL.
    if not isinstance(kid, str) or kid not in ring.keys:
        raise MalformedTokenError("unknown key id")
    if header.get("alg") != ring.algorithm:
        raise MalformedTokenError("algorithm not allowed")
    key = ring.keys[kid]
    try:
        payload = _decode(token, key, ring, verify_exp=True)
    except jwt.ExpiredSignatureError as e:
        # The signature checked out, but PyJWT looks at exp before aud and
        # iss: decode again without exp so that only a token of this
        # service, audience and purpose is ever called expired.
        try:
            claims = _claims(_decode(token, key, ring, verify_exp=False), kid, ring)
        except jwt.InvalidTokenError as inner:
            raise MalformedTokenError(str(inner)) from e
        raise ExpiredTokenError(
            "token expired", user_id=claims.user_id, expired_at=claims.expires_at
        ) from e
    except jwt.InvalidSignatureError as e:
        raise BadSignatureError(str(e)) from e
    except jwt.InvalidTokenError as e:
        raise MalformedTokenError(str(e)) from e
    return _claims(payload, kid, ring)


def check_epochs(claims: Claims, state: TokenState) -> None:
    """Raise ``RevokedTokenError`` unless ``claims`` match the store ``state``.

    ``!=`` rather than ``<``: an epoch from the "future" (a store restored
    from an old backup) is no more trustworthy than an old one.
    """
    if claims.incarnation != state.incarnation:
        raise RevokedTokenError(
            "token from another store incarnation",
            user_id=claims.user_id,
            scope="store",
            token_epoch=claims.incarnation,
            current_epoch=state.incarnation,
        )
    if claims.epoch != state.epoch:
        raise RevokedTokenError(
            "global epoch changed",
            user_id=claims.user_id,
            scope="global",
            token_epoch=claims.epoch,
            current_epoch=state.epoch,
        )
    if claims.user_epoch != state.user_epoch:
        raise RevokedTokenError(
            "user epoch changed",
            user_id=claims.user_id,
            scope="user",
            token_epoch=claims.user_epoch,
            current_epoch=state.user_epoch,
        )
