"""A tenant's pages: Security, the logs and the link preview.

Each lives under ``/admin/t/<tenant_id>/`` and is the same page, from the same
handler and template, for a tenant admin in its own tenant and for a platform
admin in any: :func:`service.console.auth.guard` has settled the tenant, and
the handlers act through ``g.store``, the store's view of it. Every change
calls :mod:`service.admin`, the same functions as the admin API, with the
signed-in key's name as the actor. A successful post redirects
(post/redirect/get) and says what happened; a refused one shows the form
again with the message.

The addresses of the single-tenant console (``/admin/settings`` and so on)
redirect to the same page of the admin's own tenant (``default`` for a
platform admin), a form post with ``307`` so that it is posted there.
"""

from __future__ import annotations

import re
from typing import Any

from flask import current_app, flash, g, redirect, render_template, request, url_for

from service import admin
from service.clock import utcnow
from service.console import bp
from service.console.auth import home
from service.console.display import field_message
from service.errors import ApiError
from service.http import whole_number
from service.links import decide, local_part, parse_link_request
from service.tenancy import tenant_portal

__all__: list[str] = []

#: Audit events per page; the console pages through the newest 500.
PAGE_SIZE = 25
MAX_PAGE = admin.MAX_LIMIT // PAGE_SIZE
SIGNIN_ROWS = 100
_ADDRESS_SEPARATORS = re.compile(r"[\s,]+")
#: A tenant's pages, under /admin/t/<tenant_id>/.
TENANT = "/t/<tenant_id>"
#: The single-tenant console's addresses, now redirected into a tenant.
LEGACY = ("settings", "security", "security/void", "security/revoke", "audit", "signins", "preview")


def _store() -> Any:
    return g.store


def legacy(page: str) -> Any:
    """Send an address of the single-tenant console to that page of the admin's tenant."""
    target = f"{request.script_root}/t/{home(g.caller)}/{page}"
    query = request.query_string.decode("utf-8", "replace")
    if query:
        target += "?" + query
    # 307 keeps a form's method and body: the post lands, CSRF token and all.
    return redirect(target, 307 if request.method == "POST" else 302)


for _page in LEGACY:
    bp.add_url_rule(
        f"/{_page}", "legacy", legacy, defaults={"page": _page}, methods=["GET", "POST"]
    )


def _deployment() -> Any:
    return current_app.extensions["deployment"]


# -- Security: the epoch, voiding every link, revoking one user -------------------


def security_page(
    form: dict[str, str] | None = None, error: str | None = None, status: int = 200
) -> Any:
    """Render the Security page, its forms filled with ``form`` and ``error`` above them."""
    page = render_template(
        "console/security.html",
        epoch=admin.epoch_json(_store().epoch()),
        form=form or {},
        error=error,
    )
    return page, status


@bp.get(f"{TENANT}/security")
def security() -> Any:
    """Show the current epoch and the forms that void links."""
    return security_page()


@bp.get(f"{TENANT}/security/void")
def confirm_void() -> Any:
    """Ask for a reason and a confirmation before voiding every link."""
    return render_template("console/void.html", epoch=admin.epoch_json(_store().epoch()))


@bp.post(f"{TENANT}/security/void")
def void_all() -> Any:
    """Void every outstanding link (bump the global epoch)."""
    reason = request.form.get("reason", "")
    try:
        reason = admin.validate_reason(reason)
    except ApiError as e:
        page = render_template(
            "console/void.html",
            epoch=admin.epoch_json(_store().epoch()),
            reason=reason,
            error=field_message(e.detail),
        )
        return page, 400
    info = admin.bump_epoch(
        _store(), current_app.extensions["metrics"], actor=g.actor, reason=reason, now=utcnow()
    )
    flash(
        f"Every auto-login link sent before now is void (epoch {info.epoch}). "
        "Nobody was signed out.",
        "success",
    )
    return redirect(url_for("console.security"))


@bp.post(f"{TENANT}/security/revoke")
def revoke_user() -> Any:
    """Void every outstanding link of one user."""
    form = {
        "user_id": request.form.get("user_id", "").strip(),
        "reason": request.form.get("reason", ""),
    }
    try:
        user_id = admin.validate_user_id(form["user_id"])
        reason = admin.validate_reason(form["reason"])
    except ApiError as e:
        return security_page(form, field_message(e.detail), 400)
    revoke_every_link(user_id, reason)
    # The user's page: their links, all void now, and their sign-ins.
    return redirect(url_for("console.user", user_id=user_id))


def revoke_every_link(user_id: str, reason: str) -> None:
    """Void every outstanding link of ``user_id`` (as ``POST /v1/admin/users/{id}/revoke``)."""
    admin.revoke_user(
        _store(),
        current_app.extensions["metrics"],
        user_id,
        actor=g.actor,
        reason=reason,
        now=utcnow(),
    )
    flash(f"Every auto-login link of user {user_id} sent before now is void.", "success")


# -- Logs ---------------------------------------------------------------------------


@bp.get(f"{TENANT}/audit")
def audit() -> Any:
    """Show the audit log, newest first, in pages of 25 over the newest 500 events."""
    number = whole_number(request.args.get("page", "1"), 1, MAX_PAGE)
    if number is None:
        raise ApiError(400, "invalid_request", f"There are pages 1 to {MAX_PAGE} of the log.")
    # One more than this page needs tells whether there is a next page.
    limit = min(number * PAGE_SIZE + 1, admin.MAX_LIMIT)
    current_app.extensions["signin_log"].flush()  # prunes both logs when due, as the API does
    events = _store().audit_events(limit=limit)
    rows = events[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
    more = len(events) > number * PAGE_SIZE and number < MAX_PAGE
    return render_template(
        "console/audit.html", events=rows, page=number, more=more, page_size=PAGE_SIZE
    )


@bp.get(f"{TENANT}/signins")
def signins() -> Any:
    """Show the newest sign-ins through links, of all users or one."""
    user_id = request.args.get("user_id", "").strip()
    error = None
    rows = []
    try:
        if user_id:
            admin.validate_user_id(user_id)
        current_app.extensions["signin_log"].flush()
        rows = _store().signins(user_id=user_id or None, limit=SIGNIN_ROWS)
    except ApiError as e:
        error = field_message(e.detail)
    page = render_template(
        "console/signins.html", rows=rows, user_id=user_id, error=error, limit=SIGNIN_ROWS
    )
    return page, 400 if error else 200


# -- Preview --------------------------------------------------------------------------


def _addresses(text: str) -> list[str]:
    return [address for address in _ADDRESS_SEPARATORS.split(text) if address]


@bp.route(f"{TENANT}/preview", methods=["GET", "POST"])
def preview() -> Any:
    """Say whether an email would carry an auto-login link, by POST /v1/links's rules."""
    form = {
        name: request.form.get(name, "")
        for name in ("user_id", "email", "to", "cc", "bcc", "target")
    }
    if request.method == "GET":
        return render_template("console/preview.html", form=form, result=None)
    deployment = _deployment()
    body = {
        "user_id": form["user_id"].strip(),
        "email": form["email"].strip(),
        "recipients": {name: _addresses(form[name]) for name in ("to", "cc", "bcc")},
        "target": form["target"].strip() or "/",
    }
    try:
        link = parse_link_request(
            body, token_param=deployment.token_param, max_ttl_seconds=deployment.max_ttl_seconds
        )
    except ApiError as e:
        page = render_template(
            "console/preview.html", form=form, result=None, error=field_message(e.detail)
        )
        return page, 400
    settings = admin.settings_json(_store().settings(), deployment.max_ttl_seconds)
    # The same rules as POST /v1/links; no token is issued for a preview.
    result = {
        "reason": decide(
            link,
            enabled=settings["auto_login_enabled"],
            role_mailboxes=frozenset(settings["role_mailboxes"]),
        ),
        "url": tenant_portal() + link.target,
        "email": link.email,
        "mailbox": local_part(link.email),
        "recipients": sorted(set(link.recipients)),
        "ttl": settings["token_ttl_seconds"],
    }
    return render_template("console/preview.html", form=form, result=result)
