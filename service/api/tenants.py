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
    tenant_id = validate_tenant_id(body.get("tenant_id"))
    development = current_app.extensions["deployment"].development
    portal = tenants.validate_portal(body.get("portal_base_url"), development=development)
    reason = admin.validate_reason(body.get("reason"))
    info = _store().create_tenant(tenant_id, portal, actor=g.actor, reason=reason, now=utcnow())
    return jsonify(_json(info)), 201


@bp.get("/tenants")
@require_role("admin", platform_only=True)
def list_tenants() -> Any:
    """List tenants by id, a page at a time (``after``), optionally by id prefix."""
    limit = admin.validate_limit(request.args.get("limit", "100"))
    after = request.args.get("after")
    if after is not None:
        after = validate_tenant_id(after, "after")
    prefix = request.args.get("prefix", "")
    if prefix and not all(c.isascii() and (c.islower() or c.isdigit() or c == "-") for c in prefix):
        raise ApiError(400, "invalid_request", "prefix: must be a-z 0-9 - only")
    if len(prefix) > 63:
        raise ApiError(400, "invalid_request", "prefix: at most 63 characters")
    current_app.extensions["reaper"].kick()
    found = _store().list_tenants(after=after, prefix=prefix, limit=limit)
    more = len(found) == limit
    return jsonify(
        {"tenants": [_json(t) for t in found], "next": found[-1].tenant_id if more else None}
    )


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
    tenant_id = validate_tenant_id(tenant_id)
    tenants.refuse_default(tenant_id, "deleted")
    reason = admin.validate_reason(query_or_body("reason"))
    _store().delete_tenant(tenant_id, actor=g.actor, reason=reason, now=utcnow())
    current_app.extensions["reaper"].kick()
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
