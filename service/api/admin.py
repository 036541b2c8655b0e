"""``/v1/admin``: settings, epochs, revocation, audit and sign-in logs.

The checks and the changes themselves live in :mod:`service.admin`, shared
with the admin console; this blueprint only translates HTTP to them and back.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, jsonify, request

from service import admin
from service.clock import isoformat, utcnow
from service.errors import LinkNotFoundError
from service.http import read_json, require_role
from service.tenancy import path_tenant, store, tenant_info, tenant_portal

bp = Blueprint("admin", __name__, url_prefix="/v1/admin")
bp.url_value_preprocessor(lambda _endpoint, values: path_tenant(values))


@bp.before_request
@require_role("admin")
def _admin_only() -> None:
    """Every call here needs the admin role."""


def _max_ttl() -> int:
    return current_app.extensions["deployment"].max_ttl_seconds


@bp.get("/settings")
def get_settings() -> Any:
    """Return the current settings."""
    info = tenant_info()
    return jsonify(admin.settings_json(info.settings, _max_ttl(), tenant_portal()))


@bp.patch("/settings")
def update_settings() -> Any:
    """Change the switch or the default lifetime, for every worker at once."""
    # The store applies the change and its audit event atomically.
    answer = admin.update_settings(store(), read_json(), _max_ttl(), actor=g.actor, now=utcnow())
    answer["portal_base_url"] = tenant_portal()  # no settings change moves it
    return jsonify(answer)


@bp.get("/epoch")
def get_epoch() -> Any:
    """Return the global epoch and its last change."""
    return jsonify(admin.epoch_json(store().epoch()))


@bp.post("/epoch/bump")
def bump_epoch() -> Any:
    """Void every outstanding token; when this returns, every worker refuses them."""
    reason = admin.validate_reason(read_json().get("reason"))
    info = admin.bump_epoch(
        store(),
        current_app.extensions["metrics"],
        actor=g.actor,
        reason=reason,
        now=utcnow(),
    )
    return jsonify(admin.epoch_json(info))


@bp.post("/users/<user_id:user_id>/revoke")
def revoke_user(user_id: str) -> Any:
    """Void every outstanding token of one user."""
    user_id = admin.validate_user_id(user_id)
    reason = admin.validate_reason(read_json().get("reason"))
    revoked_at = admin.revoke_user(
        store(),
        current_app.extensions["metrics"],
        user_id,
        actor=g.actor,
        reason=reason,
        now=utcnow(),
    )
    return jsonify({"user_id": user_id, "revoked_at": isoformat(revoked_at)})


@bp.get("/signins")
def signins() -> Any:
    """Return the sign-in log, newest first, of one user or all."""
    limit = admin.validate_limit(request.args.get("limit", "50"))
    user_id = request.args.get("user_id")
    if user_id is not None:
        user_id = admin.validate_user_id(user_id)
    # Entries of this process still in the write-behind buffer are written first.
    current_app.extensions["signin_log"].flush()
    rows = store().signins(user_id=user_id, limit=limit)
    return jsonify(
        {
            "signins": [
                {
                    "at": isoformat(s.at),
                    "user_id": s.user_id,
                    "outcome": s.outcome,
                    "ip": s.ip,
                    "user_agent": s.user_agent,
                    "link_id": s.link_id,
                }
                for s in rows
            ]
        }
    )


@bp.get("/audit")
def audit() -> Any:
    """Return the audit log, newest first."""
    limit = admin.validate_limit(request.args.get("limit", "50"))
    current_app.extensions["signin_log"].flush()  # also prunes both logs when due
    events = store().audit_events(limit=limit)
    return jsonify(
        {
            "events": [
                {"at": isoformat(e.at), "actor": e.actor, "action": e.action, "detail": e.detail}
                for e in events
            ]
        }
    )


@bp.get("/links")
def links() -> Any:
    """Return a page of the ledger of links, newest first."""
    limit = admin.validate_limit(request.args.get("limit", "50"))
    user_id = request.args.get("user_id")
    if user_id is not None:
        user_id = admin.validate_user_id(user_id)
    status = admin.validate_link_status(request.args.get("status"))
    after = request.args.get("after")
    if after is not None:
        after = admin.validate_link_id(after)
    # The uses of this process's clicks still in the buffer count too.
    current_app.extensions["signin_log"].flush(prune=False)
    # An ``after`` that is not in the ledger (gone past its expiry plus a
    # day, or never there): 404 link_not_found, the store says so.
    page, following = store().links(
        user_id=user_id, status=status, after=after, limit=limit, expired_before=_expired()
    )
    return jsonify({"links": [admin.link_json(link) for link in page], "next": following})


@bp.get("/links/<link_id>")
def get_link(link_id: str) -> Any:
    """Return one link of the ledger."""
    link_id = admin.validate_link_id(link_id)
    current_app.extensions["signin_log"].flush(prune=False)
    link = store().link(link_id, expired_before=_expired())
    if link is None:
        raise LinkNotFoundError(link_id)
    return jsonify(admin.link_json(link))


@bp.post("/links/<link_id>/revoke")
def revoke_link(link_id: str) -> Any:
    """Void one link: its token is refused everywhere, every other link still works."""
    link_id = admin.validate_link_id(link_id)
    reason = admin.validate_reason(read_json().get("reason"))
    revocation = admin.revoke_link(
        store(),
        current_app.extensions["metrics"],
        current_app.extensions["deployment"],
        link_id,
        actor=g.actor,
        reason=reason,
        now=utcnow(),
    )
    # expired: the link could not be used any more; nothing was stored for it.
    return jsonify(
        {
            "link_id": link_id,
            "revoked_at": isoformat(revocation.revoked_at),
            "expired": revocation.expired,
        }
    )


def _expired() -> float:
    return admin.expired_before(current_app.extensions["deployment"], utcnow())
