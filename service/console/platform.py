"""The platform admin's Tenants page: list, search, create, delete (with a confirmation).

Only a platform admin reaches these pages (:data:`service.console.auth.PLATFORM`);
a tenant admin gets ``403``. Each change runs :mod:`service.tenants`, the
same code as ``/v1/admin/tenants``, with the same checks and audit events
(in the platform's log and the tenant's own).
"""

from __future__ import annotations

from typing import Any

from flask import current_app, flash, g, redirect, render_template, request, url_for

from service import tenants
from service.clock import utcnow
from service.console import bp
from service.console.display import field_message
from service.errors import ApiError
from service.store import DEFAULT_TENANT

__all__: list[str] = []

#: Tenants per page of the list.
PAGE_SIZE = 25


def _root() -> Any:
    return current_app.extensions["store"]


def _tenants_page(
    form: dict[str, str] | None = None, error: str | None = None, status: int = 200
) -> Any:
    after = request.args.get("after") or None
    prefix = request.args.get("prefix", "").strip()
    rows: list[Any] = []
    next_id = None
    try:
        rows, next_id = tenants.list_tenants(
            _root(), current_app.extensions["reaper"], after=after, prefix=prefix, limit=PAGE_SIZE
        )
    except ApiError as e:  # a search the API would refuse too
        error, status = field_message(e.detail), 400
    deployment = current_app.extensions["deployment"]
    page = render_template(
        "console/tenants.html",
        tenants=[
            tenants.tenant_json(
                info,
                deployment_portal=deployment.portal_base_url,
                max_ttl=deployment.max_ttl_seconds,
            )
            for info in rows
        ],
        prefix=prefix,
        after=after,
        next_id=next_id,
        form=form or {},
        error=error,
        default=DEFAULT_TENANT,
    )
    return page, status


@bp.get("/tenants", endpoint="tenants")
def list_tenants() -> Any:
    """List the tenants by id, a page at a time, optionally those whose id starts with a prefix."""
    return _tenants_page()


@bp.post("/tenants")
def create_tenant() -> Any:
    """Create a tenant (auto-login off, the default lifetime) with its portal address."""
    form = {
        name: request.form.get(name, "").strip()
        for name in ("tenant_id", "portal_base_url", "reason")
    }
    try:
        info = tenants.create_tenant(
            _root(),
            form,
            development=current_app.extensions["deployment"].development,
            actor=g.actor,
            now=utcnow(),
        )
    except ApiError as e:
        if e.status >= 500:
            raise
        return _tenants_page(form, field_message(e.detail), e.status)
    flash(
        f"Tenant {info.tenant_id} created. Auto-login links are off there until an admin "
        "turns them on.",
        "success",
    )
    return redirect(url_for("console.tenants", prefix=info.tenant_id))


def _confirm_page(reason: str = "", error: str | None = None) -> Any:
    info = g.store.tenant_info()
    deployment = current_app.extensions["deployment"]
    tenant = tenants.tenant_json(
        info, deployment_portal=deployment.portal_base_url, max_ttl=deployment.max_ttl_seconds
    )
    page = render_template("console/tenant_delete.html", tenant=tenant, reason=reason, error=error)
    return page, 400 if error else 200


def _refuse_default() -> None:
    # The same refusal as DELETE /v1/admin/tenants/default, before anything is shown.
    tenants.deletable(g.tenant_id)


@bp.get("/tenants/<tenant_id>/delete")
def confirm_delete_tenant() -> Any:
    """Say what deleting a tenant does and ask for a reason before doing it."""
    _refuse_default()
    return _confirm_page()


@bp.post("/tenants/<tenant_id>/delete")
def delete_tenant() -> Any:
    """Delete a tenant: its links and keys stop at once, its data goes in the background."""
    _refuse_default()
    reason = request.form.get("reason", "")
    tenant_id = g.tenant_id
    try:
        tenants.delete_tenant(
            _root(),
            current_app.extensions["reaper"],
            tenant_id,
            actor=g.actor,
            reason=reason,
            now=utcnow(),
        )
    except ApiError as e:
        if e.status != 400:  # gone meanwhile (404): the error page says so
            raise
        return _confirm_page(reason, field_message(e.detail))
    g.tenant_id = None  # it is gone: this page acts in no tenant any more
    flash(
        f"Tenant {tenant_id} deleted: its links and API keys stopped working, and its id is "
        "free again.",
        "success",
    )
    return redirect(url_for("console.tenants"))
