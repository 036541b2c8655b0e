"""HTTP plumbing shared by the blueprints: JSON bodies, API keys, problem answers."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.routing import PathConverter

from service.clock import from_seconds, isoformat
from service.errors import (
    ApiError,
    BoundElsewhereError,
    ExpiredTokenError,
    RevokedTokenError,
    StoreDataError,
    StoreError,
    TokenError,
    problem,
)
from service.tenancy import authorize

__all__ = [
    "STRICT_JSON",
    "allow_header",
    "init_app",
    "log_server_error",
    "log_store_error",
    "query_or_body",
    "read_json",
    "require_role",
    "whole_number",
]

log = logging.getLogger("service")
F = TypeVar("F", bound=Callable[..., Any])

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


#: More digits than any count this service accepts; int() of a longer string
#: is refused by Python itself (over 4300 digits), which would be a 500.
_MAX_DIGITS = 18


def whole_number(raw: str, low: int, high: int) -> int | None:
    """Return ``raw`` as an int from ``low`` to ``high``, or ``None`` if it is anything else.

    Only ASCII digits (``str.isdigit`` also takes "²", which ``int`` refuses),
    and never so many that ``int`` itself fails.
    """
    if not (raw.isascii() and raw.isdigit()) or len(raw) > _MAX_DIGITS:
        return None
    value = int(raw)
    return value if low <= value <= high else None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


#: RFC 8259 JSON: no NaN or Infinity. One decoder for every body: json.loads
#: with an option builds a decoder and its scanner on every call.
STRICT_JSON = json.JSONDecoder(parse_constant=_refuse_constant)


def read_json() -> dict[str, Any]:
    """Return the request body as a JSON object, or raise ``invalid_json``."""
    data = request.get_data(cache=True)  # werkzeug raises 413 above MAX_CONTENT_LENGTH
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(data) >= limit:
        # A body without Content-Length (chunked) is read up to the limit and no
        # further, silently: whatever follows would be cut off. One byte more
        # from the server tells "exactly the limit" from "over it".
        if request.environ["wsgi.input"].read(1):
            raise RequestEntityTooLarge()
    try:
        # Strict UTF-8 (RFC 8259), decoded here rather than by json.loads,
        # whose byte decoding lets UTF-8-encoded lone surrogates through.
        text = data.decode("utf-8")
        body = STRICT_JSON.decode(text)
    except (ValueError, RecursionError) as e:
        # RecursionError: a deeply nested array is not worth a stack.
        # ValueError covers bad UTF-8, bad syntax and over-long integers.
        raise ApiError(400, "invalid_json", "the body is not valid UTF-8 JSON") from e
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    # JSON may spell a lone UTF-16 surrogate ("\\ud800"); no store can encode
    # it, so refuse it here, once, instead of failing deep inside a write.
    if "\\u" in text and not _encodable(body):
        raise ApiError(400, "invalid_json", "the body holds a lone Unicode surrogate")
    return body


def query_or_body(name: str) -> Any:
    """Return field ``name`` of the query string, else of the JSON body (if any), else ``None``.

    For a ``DELETE``, which may carry its reason either way (``?reason=``,
    or a body that some clients cannot send).
    """
    value = request.args.get(name)
    if value is None and request.get_data(cache=True):
        value = read_json().get(name)
    return value


def _encodable(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def require_role(*roles: str, platform_only: bool = False) -> Callable[[F], F]:
    """Let the view run only for a caller whose API key has one of ``roles``.

    The caller's tenant is settled too (:func:`service.tenancy.authorize`):
    the view reads its store through :func:`service.tenancy.store`.
    """

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            authorize(*roles, platform_only=platform_only)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def log_store_error(e: StoreError) -> None:
    """Log a store failure: wrong-shape data is an error, an outage a warning."""
    if isinstance(e, StoreDataError):
        log.error("store holds data of the wrong shape: %s", e)
    else:
        log.warning("store unavailable: %s", e)


def log_server_error(e: HTTPException) -> None:
    """Log an unexpected error by its type only: its message might quote a request."""
    original = getattr(e, "original_exception", None)
    log.error("unhandled error in %s: %r", request.endpoint, type(original).__name__)


def allow_header(e: HTTPException) -> dict[str, str]:
    """Return the ``Allow`` header of a 405, else nothing."""
    allow = e.get_response().headers.get("Allow") if e.code == 405 else None
    return {"Allow": allow} if allow else {}


def _token_problem(e: TokenError) -> Response:
    # Only a token whose signature checked out can reach expired or revoked;
    # the log gets the precise reason, the caller one of three codes.
    if isinstance(e, ExpiredTokenError):
        at = isoformat(from_seconds(e.expired_at))
        log.info("token refused: expired (user %s)", e.user_id)
        return problem(401, "token_expired", f"the link expired at {at}", title="Token expired")
    if isinstance(e, RevokedTokenError):
        log.info("token refused: revoked, %s epoch changed (user %s)", e.scope, e.user_id)
        return problem(
            401, "token_revoked", "the link was revoked; ask for a new one", title="Token revoked"
        )
    if isinstance(e, BoundElsewhereError):
        log.info("token refused: bound to another browser (user %s)", e.user_id)
        return problem(
            401,
            "token_bound_elsewhere",
            "the link was opened in another browser first; sign in with your password",
            title="Token bound elsewhere",
        )
    log.info("token refused: %s", e.reason)
    return problem(401, "token_invalid", "the link is not valid", title="Token invalid")


class UserIdConverter(PathConverter):
    """Any non-empty path segment run, newlines included.

    The user id is validated by the view, which answers ``400
    invalid_request`` naming the field; werkzeug's ``path`` converter does not
    match a newline and would turn such an id into an undocumented 404.
    """

    regex = "(?s:[^/].*?)"


def init_app(app: Flask) -> None:
    """Register the error handlers that render every failure as problem+json."""
    app.url_map.converters["user_id"] = UserIdConverter

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if request.path.startswith("/v1/"):
            # Links carry tokens, admin answers carry the audit log: no cache
            # between the caller and us may keep a copy.
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(ApiError)
    def api_error(e: ApiError) -> Response:
        return problem(e.status, e.code, e.detail, headers=e.headers)

    app.register_error_handler(TokenError, _token_problem)

    @app.errorhandler(StoreError)
    def store_error(e: StoreError) -> Response:
        log_store_error(e)
        return problem(503, "store_unavailable", e.detail, headers={"Retry-After": "1"})

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Response:
        status = e.code or 500
        if status >= 500:
            log_server_error(e)
            return problem(500, "internal_error", "an unexpected error; it has been logged")
        code = _HTTP_CODES.get(status, "bad_request")
        detail = {
            404: "no such resource",
            405: f"{request.method} is not allowed here",
            413: "the body is over 1 MiB",
        }.get(status, e.description or "bad request")
        return problem(status, code, detail, headers=allow_header(e))
