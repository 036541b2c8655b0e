"""``/v1/admin/tenants`` and ``/v1/admin/platform/audit``: the platform's own calls.

Only a platform key with the admin role reaches them (a tenant key gets
``403 forbidden``); the checks and changes live in :mod:`service.tenants`.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from service import admin, tenants
from service.clock import isoformat, utcnow
from service.errors import ApiError
from service.http import query_or_body, read_json, require_role
from service.tenancy import validate_tenant_id

bp = Blueprint("tenants", __name__, url_prefix="/v1/admin")


def _json(info: Any) -> dict[str, Any]:
    deployment = current_app.extensions["deployment"]
    return tenants.tenant_json(
        info, deployment_portal=deployment.portal_base_url, max_ttl=deployment.max_ttl_seconds
    )


def _store() -> Any:
    return current_app.extensions["store"]


@bp.post("/tenants")
@require_role("admin", platform_only=True)
def create_tenant() -> Any:
    """Create a tenant: auto-login off, the default lifetime, its own portal address."""
    body = read_json()
    development = current_app.extensions["deployment"].development
    info = tenants.create_tenant(
        _store(), body, development=development, actor=g.actor, now=utcnow()
    )
    return jsonify(_json(info)), 201


@bp.get("/tenants")
@require_role("admin", platform_only=True)
def list_tenants() -> Any:
    """List tenants by id, a page at a time (``after``), optionally by id prefix."""
    limit = admin.validate_limit(request.args.get("limit", "100"))
    found, next_id = tenants.list_tenants(
        _store(),
        current_app.extensions["reaper"],
        after=request.args.get("after"),
        prefix=request.args.get("prefix", ""),
        limit=limit,
    )
    return jsonify({"tenants": [_json(t) for t in found], "next": next_id})


@bp.get("/tenants/<tenant_id>")
@require_role("admin", platform_only=True)
def get_tenant(tenant_id: str) -> Any:
    """Return one tenant."""
    return jsonify(_json(_store().get_tenant(validate_tenant_id(tenant_id))))


@bp.patch("/tenants/<tenant_id>")
@require_role("admin", platform_only=True)
def update_tenant(tenant_id: str) -> Any:
    """Move a tenant's portal address (only a platform admin may)."""
    tenant_id = validate_tenant_id(tenant_id)
    body = read_json()
    unknown = sorted(set(body) - {"portal_base_url", "reason"})
    if unknown:
        raise ApiError(400, "invalid_request", f"{unknown[0]}: cannot be changed here")
    tenants.refuse_default(tenant_id, "moved: its address is the deployment's PORTAL_BASE_URL")
    development = current_app.extensions["deployment"].development
    portal = tenants.validate_portal(body.get("portal_base_url"), development=development)
    reason = admin.validate_reason(body.get("reason"))
    info = _store().update_tenant(tenant_id, portal, actor=g.actor, reason=reason, now=utcnow())
    return jsonify(_json(info))


@bp.delete("/tenants/<tenant_id>")
@require_role("admin", platform_only=True)
def delete_tenant(tenant_id: str) -> Any:
    """Delete a tenant: its tokens and keys stop at once, its data goes in the background."""
    tenant_id = tenants.deletable(tenant_id)  # before the reason, as documented
    tenants.delete_tenant(
        _store(),
        current_app.extensions["reaper"],
        tenant_id,
        actor=g.actor,
        reason=query_or_body("reason"),
        now=utcnow(),
    )
    return Response(status=204)


@bp.get("/platform/audit")
@require_role("admin", platform_only=True)
def platform_audit() -> Any:
    """Return the platform's audit log, newest first."""
    limit = admin.validate_limit(request.args.get("limit", "50"))
    events = _store().platform_audit_events(limit=limit)
    return jsonify(
        {
            "events": [
                {"at": isoformat(e.at), "actor": e.actor, "action": e.action, "detail": e.detail}
                for e in events
            ]
        }
    )
