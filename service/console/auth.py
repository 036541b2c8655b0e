"""Console sign-in: API key to session, CSRF tokens, idle timeout, the tenant of a page.

Two kinds of admin sign in: a *platform* admin (a key of ``API_KEYS`` with
the admin role), who may act in every tenant, and a *tenant* admin (a tenant
key ``tk.<tenant>.<secret>`` with the admin role, kept in its tenant's
store), who acts in its own tenant only. A tenant's pages live under
``/admin/t/<tenant_id>/``; which tenant a page may act in is decided by
:func:`service.tenancy.acting_tenant`, the same rule as the API's.

The session is Flask's signed cookie (signed with ``SECRET_KEY``, never with a
token key). It holds the admin key's *name* (and, for a tenant key, its
tenant and when the key was made, so a key revoked and made again under the
same name does not carry old sessions), when the admin was last seen (for the
idle timeout), and the CSRF token: never the key itself. Every request checks
that the key is still an admin key (a removed platform key, a revoked tenant
key or a deleted tenant ends the session). The cookie is HttpOnly,
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
from service.errors import ApiError, TenantNotFoundError
from service.store import DEFAULT_TENANT, KeyRecord
from service.tenancy import Caller, acting_tenant, authenticate

__all__ = ["PLATFORM", "ConsoleSessionInterface", "CsrfError", "csrf_token", "home"]

log = logging.getLogger("service.console")

#: Endpoints open without a session (the stylesheet is let through before any check).
PUBLIC = frozenset({"console.signin"})
#: Endpoints of the platform's (managing tenants): a tenant admin gets 403.
PLATFORM = frozenset(
    {
        "console.tenants",
        "console.create_tenant",
        "console.confirm_delete_tenant",
        "console.delete_tenant",
    }
)
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


def _key_record(tenant_id: str, name: str) -> KeyRecord | None:
    """Return tenant ``tenant_id``'s key named ``name`` (``None``: no such key or tenant)."""
    try:
        records = current_app.extensions["store"].tenant(tenant_id).keys()
    except TenantNotFoundError:  # deleted since: its keys went with it
        return None
    return next((record for record in records if record.name == name), None)


def _session_caller() -> Caller | None:
    """Return who this session's key is now, or ``None`` if it is no longer a key."""
    name, tenant_id = session["key_name"], session.get("key_tenant")
    if tenant_id is None:
        keys = current_app.extensions["deployment"].api_keys
        key = next((key for key in keys if key.name == name), None)
        return None if key is None else Caller(key.name, key.roles, None)
    record = _key_record(tenant_id, name)
    # A key revoked and made again under its name is another key: not this session's.
    if record is None or record.created_at.isoformat() != session.get("key_made"):
        return None
    return Caller(record.name, record.roles, tenant_id)


def home(caller: Caller) -> str:
    """Return the tenant a caller's console opens in: its own, or ``default``."""
    return caller.tenant_id or DEFAULT_TENANT


@bp.url_value_preprocessor
def _named_tenant(endpoint: str | None, values: dict[str, Any] | None) -> None:
    """Take the URL's tenant out of the view arguments, for :func:`guard` to check."""
    if values is not None and "tenant_id" in values:
        g.named_tenant = values.pop("tenant_id")


@bp.url_defaults
def _tenant_in_urls(endpoint: str, values: dict[str, Any]) -> None:
    """Let ``url_for`` of a tenant's page default to the tenant this page acts in."""
    if "tenant_id" not in values and current_app.url_map.is_endpoint_expecting(
        endpoint, "tenant_id"
    ):
        caller = g.get("caller")
        values["tenant_id"] = g.get("tenant_id") or (home(caller) if caller else DEFAULT_TENANT)


def _now() -> int:
    return int(utcnow().timestamp())


@bp.before_request
def guard() -> Any:
    """Expire idle sessions, refuse posts without the CSRF token, require sign-in.

    Then settle the tenant a page acts in (``g.tenant_id``, ``g.store``): a
    tenant admin naming any tenant but its own gets the same ``403`` whether
    that tenant exists or not, and never reaches the platform's pages.
    """
    if request.endpoint == "console.static":
        return None
    caller = None
    if "key_name" in session:
        timeout = current_app.extensions["deployment"].console_idle_timeout_seconds
        idle = _now() - int(session.get("last_seen", 0))
        if idle > timeout:
            session.clear()
            flash(f"You were signed out after {duration(timeout)} without activity.", "info")
            return redirect(url_for("console.signin"))
        caller = _session_caller()
        if caller is None or "admin" not in caller.roles:
            # The key was removed, revoked, lost its role or its tenant since:
            # its sessions end too.
            session.clear()
            flash("Your API key is no longer an admin key of this service.", "error")
            return redirect(url_for("console.signin"))
        session["last_seen"] = _now()
        g.caller, g.actor = caller, caller.name
    if request.method in UNSAFE:
        _check_csrf()
    if caller is None:
        return None if request.endpoint in PUBLIC else redirect(url_for("console.signin"))
    if request.endpoint in PLATFORM and caller.tenant_id is not None:
        raise ApiError(403, "forbidden", "only a platform admin manages tenants")
    if "named_tenant" in g:
        root = current_app.extensions["store"]
        tenant_id, info = acting_tenant(caller, g.named_tenant, root)
        if info is not None:
            g.tenant_info = info  # read once: tenancy.tenant_portal() needs no second read
        g.tenant_id, g.store = tenant_id, root.tenant(tenant_id)
    return None


def _refuse(message: str, status: int) -> Any:
    return render_template("console/signin.html", error=message), status


@bp.route("/", methods=["GET", "POST"])
def signin() -> Any:
    """Show the sign-in form; sign in with an admin API key posted in it."""
    if request.method == "GET":
        if g.get("caller"):
            return redirect(url_for("console.settings", tenant_id=home(g.caller)))
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

    deployment = current_app.extensions["deployment"]
    # The API's own lookup: a platform key of API_KEYS, or a tenant key found
    # by digest in its tenant's store.
    key = authenticate(f"Bearer {presented}", deployment.api_keys, current_app.extensions["store"])
    if key is None:
        log.info("console sign-in refused: unknown key, from %s", address)
        return _refuse("That is not an API key of this service. Check it and try again.", 403)
    if "admin" not in key.roles:
        log.info("console sign-in refused: key %s lacks the admin role", key.name)
        return _refuse("That API key does not have the admin role. Sign in with an admin key.", 403)
    made = None
    if key.tenant_id is not None:
        record = _key_record(key.tenant_id, key.name)
        if record is None:  # revoked between the two reads
            return _refuse("That is not an API key of this service. Check it and try again.", 403)
        made = record.created_at.isoformat()

    # A fresh session (and CSRF token) at sign-in: nothing planted before survives.
    session.clear()
    session.update(key_name=key.name, last_seen=_now())
    if key.tenant_id is not None:
        session.update(key_tenant=key.tenant_id, key_made=made)
    session[CSRF_FIELD] = secrets.token_urlsafe(32)
    log.info("console sign-in: %s (%s) from %s", key.name, key.tenant_id or "platform", address)
    return redirect(url_for("console.settings", tenant_id=home(key)))


@bp.post("/signout")
def signout() -> Any:
    """End the session."""
    if g.get("actor"):
        log.info("console sign-out: %s", g.actor)
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("console.signin"))
