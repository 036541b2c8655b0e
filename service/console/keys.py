"""A tenant's API keys page: list, make (the key shown once), revoke.

The same page for a tenant admin in its own tenant and a platform admin in
any (``/admin/t/<tenant_id>/keys``), running the keys API's own code
(:func:`service.tenants.create_key`, the store's ``revoke_key``) with the
same checks and audit events. A new key's text is in the answer to the post
that made it and nowhere else: not in a redirect, a flashed message, the
session or a log line.
"""

from __future__ import annotations

from typing import Any

from flask import flash, g, redirect, render_template, request, url_for

from service import admin, tenants
from service.clock import utcnow
from service.config import ROLES
from service.console import bp
from service.console.display import field_message
from service.console.pages import TENANT
from service.errors import ApiError

__all__: list[str] = []

#: The roles a key may have, in the order the form offers them.
ROLE_ORDER = tuple(sorted(ROLES, key=("issuer", "portal", "admin").index))


def _keys_page(
    form: dict[str, Any] | None = None,
    error: str | None = None,
    status: int = 200,
    made: dict[str, Any] | None = None,
) -> Any:
    page = render_template(
        "console/keys.html",
        keys=[tenants.key_json(record) for record in g.store.keys()],
        roles=ROLE_ORDER,
        form=form or {"roles": []},
        error=error,
        made=made,
    )
    return page, status


@bp.get(f"{TENANT}/keys")
def keys() -> Any:
    """List this tenant's API keys: names, roles, when made and last used; never a key."""
    return _keys_page()


@bp.post(f"{TENANT}/keys")
def create_key() -> Any:
    """Make a key of this tenant and show its text this once."""
    form = {
        "name": request.form.get("name", "").strip(),
        "roles": request.form.getlist("roles"),
        "reason": request.form.get("reason", ""),
    }
    try:
        reason = admin.validate_reason(form["reason"])
        made = tenants.create_key(
            g.store,
            {"name": form["name"], "roles": form["roles"]},
            actor=g.actor,
            reason=reason,
            now=utcnow(),
        )
    except ApiError as e:
        if e.status >= 500:
            raise
        return _keys_page(form, field_message(e.detail), e.status)
    # Rendered here, not redirected: the key must not travel in a URL or the session.
    return _keys_page(made=made)


@bp.post(f"{TENANT}/keys/revoke")
def revoke_key() -> Any:
    """Revoke a key: unknown on every worker and host when the page comes back."""
    name = request.form.get("name", "")
    try:
        name = tenants.validate_key_name(name)
        reason = admin.validate_reason(request.form.get("reason", ""))
        g.store.revoke_key(name, actor=g.actor, reason=reason, now=utcnow())
    except ApiError as e:
        if e.status >= 500:
            raise
        return _keys_page(error=field_message(e.detail), status=e.status)
    flash(f"The key {name} is revoked: it is an unknown key from now on.", "success")
    return redirect(url_for("console.keys"))
