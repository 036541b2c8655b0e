"""Console sign-in: API key to session, CSRF tokens, idle timeout, sign-out.

The session is Flask's signed cookie (signed with ``SECRET_KEY``, never with a
token key). It holds the admin key's *name*, when the admin was last seen
(for the idle timeout), and the CSRF token: never the key itself. It is HttpOnly,
SameSite=Strict, scoped to ``/admin``, and Secure whenever the request came
over https (``request.is_secure``; behind a TLS-terminating proxy set
``CONSOLE_TRUSTED_PROXIES`` so the proxy's ``X-Forwarded-Proto`` counts).
"""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import Any

from flask import (
    Flask,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from werkzeug.exceptions import Forbidden

from service import ratelimit
from service.clock import utcnow
from service.console import bp
from service.console.display import duration
from service.errors import ApiError
from service.tenancy import match_api_key

__all__ = ["ConsoleSessionInterface", "CsrfError", "csrf_token"]

log = logging.getLogger("service.console")

#: Endpoints open without a session (the stylesheet is let through before any check).
PUBLIC = frozenset({"console.signin"})
#: Methods that change something and so must carry the CSRF token.
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_FIELD = "csrf_token"


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, Secure exactly when the request is https."""

    salt = "autologin-console-session"

    def get_cookie_secure(self, app: Flask) -> bool:
        # Decided per request, not by a setting that can be forgotten: over
        # https the cookie is never sent back over plain http.
        return request.is_secure


class CsrfError(Forbidden):
    """A form post without this session's CSRF token."""

    description = (
        "This form was refused: it did not carry this session's security token, so it may "
        "not have come from this console. Reload the page and try again."
    )


@bp.app_template_global()
def csrf_token() -> str:
    """Return this session's CSRF token, creating it on first use."""
    if CSRF_FIELD not in session:
        session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return session[CSRF_FIELD]


def _check_csrf() -> None:
    expected = session.get(CSRF_FIELD)
    presented = request.form.get(CSRF_FIELD, "")
    if not isinstance(expected, str) or not hmac.compare_digest(
        presented.encode("utf-8", "surrogateescape"), expected.encode()
    ):
        log.info(
            "console: %s %s refused: missing or wrong CSRF token", request.method, request.path
        )
        raise CsrfError()


def _is_admin_key(name: str) -> bool:
    keys = current_app.extensions["deployment"].api_keys
    return any(key.name == name and "admin" in key.roles for key in keys)


def _now() -> int:
    return int(utcnow().timestamp())


@bp.before_request
def guard() -> Any:
    """Expire idle sessions, refuse posts without the CSRF token, require sign-in."""
    if request.endpoint == "console.static":
        return None
    name = session.get("key_name")
    if name is not None:
        timeout = current_app.extensions["deployment"].console_idle_timeout_seconds
        idle = _now() - int(session.get("last_seen", 0))
        if idle > timeout:
            session.clear()
            flash(f"You were signed out after {duration(timeout)} without activity.", "info")
            return redirect(url_for("console.signin"))
        if not _is_admin_key(name):
            # The key was removed or lost its role since: its sessions end too.
            session.clear()
            flash("Your API key is no longer an admin key of this service.", "error")
            return redirect(url_for("console.signin"))
        session["last_seen"] = _now()
        g.actor = name
    if request.method in UNSAFE:
        _check_csrf()
    if name is None and request.endpoint not in PUBLIC:
        return redirect(url_for("console.signin"))
    return None


def _refuse(message: str, status: int) -> Any:
    return render_template("console/signin.html", error=message), status


@bp.route("/", methods=["GET", "POST"])
def signin() -> Any:
    """Show the sign-in form; sign in with an admin API key posted in it."""
    if request.method == "GET":
        if g.get("actor"):
            return redirect(url_for("console.settings"))
        return render_template("console/signin.html")

    presented = request.form.get("api_key", "").strip()
    if not presented:
        return _refuse("Enter an admin API key.", 400)
    address = request.remote_addr or "unknown"
    # Counted before the key is checked: over the limit, a right guess is
    # refused like a wrong one, so guessing faster gains nothing.
    try:
        ratelimit.hit("RATE_LIMIT_CONSOLE_SIGNIN", address)
    except ApiError as e:  # hit() raises only its 429, with Retry-After
        retry_after = e.headers["Retry-After"]
        log.warning("console sign-in rate limited for %s", address)
        page, status = _refuse(
            f"Too many sign-in attempts from your address. Try again in {retry_after} seconds.",
            429,
        )
        return page, status, {"Retry-After": retry_after}

    key = match_api_key(presented, current_app.extensions["deployment"].api_keys)
    if key is None:
        log.info("console sign-in refused: unknown key, from %s", address)
        return _refuse("That is not an API key of this service. Check it and try again.", 403)
    if "admin" not in key.roles:
        log.info("console sign-in refused: key %s lacks the admin role", key.name)
        return _refuse("That API key does not have the admin role. Sign in with an admin key.", 403)

    # A fresh session (and CSRF token) at sign-in: nothing planted before survives.
    session.clear()
    now = _now()
    session.update(key_name=key.name, last_seen=now)
    session[CSRF_FIELD] = secrets.token_urlsafe(32)
    log.info("console sign-in: %s from %s", key.name, address)
    return redirect(url_for("console.settings"))


@bp.post("/signout")
def signout() -> Any:
    """End the session."""
    if g.get("actor"):
        log.info("console sign-out: %s", g.actor)
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("console.signin"))
