"""``/v1/admin/keys``: a tenant's own API keys, made, listed and revoked by its admins."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify

from service import admin, tenants
from service.clock import utcnow
from service.http import query_or_body, read_json, require_role
from service.tenancy import path_tenant, store

bp = Blueprint("keys", __name__, url_prefix="/v1/admin/keys")
bp.url_value_preprocessor(lambda _endpoint, values: path_tenant(values))


@bp.before_request
@require_role("admin")
def _admin_only() -> None:
    """Every call here needs the admin role, in the call's tenant."""


@bp.post("")
def create_key() -> Any:
    """Make a key of this tenant; its text is in this answer and nowhere else."""
    body = read_json()
    reason = admin.validate_reason(body.get("reason"))
    answer = tenants.create_key(store(), body, actor=g.actor, reason=reason, now=utcnow())
    return jsonify(answer), 201


@bp.get("")
def list_keys() -> Any:
    """List this tenant's keys: names, roles, when made and last used."""
    return jsonify({"keys": [tenants.key_json(k) for k in store().keys()]})


@bp.delete("/<name>")
def revoke_key(name: str) -> Any:
    """Revoke a key: unknown on every worker and host when this returns."""
    name = tenants.validate_key_name(name)
    reason = admin.validate_reason(query_or_body("reason"))
    store().revoke_key(name, actor=g.actor, reason=reason, now=utcnow())
    return Response(status=204)
