"""Exceptions of the service, and the one problem+json renderer.

The token errors form a small tree, like itsdangerous' ``exc.py``: callers
catch :class:`TokenError` and the HTTP layer maps each subclass to one of the
three codes of the contract (``token_invalid``, ``token_expired``,
``token_revoked``).
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response

__all__ = [
    "ApiError",
    "BadSignatureError",
    "BoundElsewhereError",
    "ConfigError",
    "ConflictError",
    "ExpiredTokenError",
    "KeyNotFoundError",
    "LinkNotFoundError",
    "MalformedTokenError",
    "RevokedTokenError",
    "StoreDataError",
    "StoreError",
    "StoreNotAcknowledgedError",
    "StoreUnavailableError",
    "TenantNotFoundError",
    "TokenError",
    "problem",
]


class TokenError(Exception):
    """Base class of every reason a link cannot sign anyone in."""

    #: Short reason for logs; never the token itself.
    reason = "invalid"
    #: The contract's code for the portal, the metric and the sign-in log.
    code = "token_invalid"

    #: The user id of a token whose signature checked out, else ``None``.
    #: Only a genuine token's claims are believed.
    user_id: str | None = None
    #: The store (tenant) incarnation a genuine token was issued in, else ``None``:
    #: its sign-in entry belongs to that incarnation's log and no other.
    incarnation: str | None = None
    #: The link id (``jti``) of a genuine token, else ``None``.
    link_id: str | None = None


class MalformedTokenError(TokenError):
    """Not a JWT of this service: bad shape, algorithm, audience, claims."""

    reason = "malformed"


class BadSignatureError(TokenError):
    """The signature does not match any key this service holds."""

    reason = "bad_signature"


class ExpiredTokenError(TokenError):
    """A genuine token past its expiry plus the configured leeway."""

    reason = "expired"
    code = "token_expired"

    def __init__(
        self,
        message: str,
        *,
        user_id: str,
        expired_at: int,
        incarnation: str,
        link_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.user_id = user_id
        self.link_id = link_id
        #: The ``exp`` claim (seconds since the epoch) of the genuine token.
        self.expired_at = expired_at
        self.incarnation = incarnation


class RevokedTokenError(TokenError):
    """A genuine token issued before the last epoch bump, global or per user."""

    reason = "revoked"
    code = "token_revoked"

    def __init__(
        self,
        message: str,
        *,
        user_id: str,
        scope: str,
        token_epoch: int | str,
        current_epoch: int | str,
        incarnation: str,
        link_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.user_id = user_id
        self.link_id = link_id
        self.incarnation = incarnation
        #: What voided it: ``"store"``, ``"global"``, ``"user"`` (epochs) or ``"link"``.
        self.scope = scope
        #: The epoch (or store incarnation) the token was issued in.
        self.token_epoch = token_epoch
        #: The current epoch (or store incarnation) in the store.
        self.current_epoch = current_epoch


class BoundElsewhereError(TokenError):
    """A genuine, current token whose link is bound to another browser."""

    reason = "bound_elsewhere"
    code = "token_bound_elsewhere"

    def __init__(self, message: str, *, user_id: str, incarnation: str, link_id: str) -> None:
        super().__init__(message)
        self.user_id = user_id
        self.incarnation = incarnation
        self.link_id = link_id


class ConfigError(Exception):
    """A deployment setting is missing or wrong; raised by ``create_app``."""


class StoreError(Exception):
    """Base class of store failures: the epoch could not be checked."""

    #: The problem document's detail (503 store_unavailable).
    detail = "the epoch store cannot be reached; try again shortly"


class StoreUnavailableError(StoreError):
    """The store did not answer (down, timed out, locked, unreadable)."""


class StoreNotAcknowledgedError(StoreUnavailableError):
    """A change may have reached the primary, but was not confirmed by enough replicas."""

    detail = (
        "the change may have been applied, but it was not confirmed in time (by Redis, "
        "or by enough of its replicas to survive a failover); read it back or repeat it"
    )


class StoreDataError(StoreError):
    """The store answered with data of the wrong shape (someone else wrote there)."""


class ApiError(Exception):
    """A request the service refuses, rendered as a problem document."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}


class TenantNotFoundError(ApiError):
    """The tenant a call names does not exist (or was deleted)."""

    def __init__(self, tenant_id: str) -> None:
        super().__init__(404, "tenant_not_found", f"no tenant {tenant_id!r}")
        #: The id asked for (well-formed: it was validated first).
        self.tenant_id = tenant_id


class ConflictError(ApiError):
    """A tenant or a key of that name exists already (``tenant_exists``, ``key_exists``)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(409, code, detail)


class KeyNotFoundError(ApiError):
    """The tenant has no API key of that name."""

    def __init__(self, name: str) -> None:
        super().__init__(404, "key_not_found", f"this tenant has no key named {name!r}")


class LinkNotFoundError(ApiError):
    """The tenant's ledger has no link of that id."""

    def __init__(self, link_id: str) -> None:
        super().__init__(404, "link_not_found", f"this tenant has no link {link_id!r}")


_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Render an RFC 9457 problem document."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    response = Response(
        json.dumps(body, separators=(",", ":")), status=status, mimetype="application/problem+json"
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
