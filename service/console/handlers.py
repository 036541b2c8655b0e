"""Every console failure as a page with a message: never a stack trace or JSON."""

from __future__ import annotations

from typing import Any

from flask import render_template, request
from werkzeug.exceptions import HTTPException

from service.console import bp
from service.console.display import field_message
from service.errors import ApiError, StoreError
from service.http import allow_header, log_server_error, log_store_error

__all__: list[str] = []

_TITLES = {
    400: "Bad request",
    403: "Refused",
    404: "Page not found",
    405: "Not allowed",
    413: "Too large",
    429: "Too many attempts",
    500: "Something went wrong",
    503: "Store unavailable",
}
_MESSAGES = {
    400: "The request could not be understood.",
    404: "There is no such page in the admin console.",
    413: "What you sent is over 1 MiB.",
    500: "Something went wrong on our side; it has been logged. Please try again.",
}


def _page(status: int, message: str, headers: dict[str, str] | None = None) -> Any:
    title = _TITLES.get(status, "Error")
    page = render_template("console/error.html", title=title, message=message, status=status)
    return page, status, headers or {}


@bp.app_errorhandler(ApiError)
def api_error(e: ApiError) -> Any:
    """Show a refusal of the shared code (validation, rate limit) as a message."""
    return _page(e.status, field_message(e.detail), e.headers)


@bp.app_errorhandler(StoreError)
def store_error(e: StoreError) -> Any:
    """Show that the store is down; nothing was changed."""
    log_store_error(e)
    return _page(
        503,
        "The store that holds the settings and logs cannot be reached, so nothing was "
        "read or changed. Try again in a moment.",
        {"Retry-After": "1"},
    )


@bp.app_errorhandler(HTTPException)
def http_error(e: HTTPException) -> Any:
    """Show 403 (a missing CSRF token), 404, 405, 413 and the rest as pages of the console."""
    status = e.code or 500
    if status >= 500:
        log_server_error(e)
        return _page(500, _MESSAGES[500])
    if status == 405:
        message = f"This page cannot be opened with {request.method}."
    else:
        message = _MESSAGES.get(status, e.description or _MESSAGES[400])
    return _page(status, message, allow_header(e))
