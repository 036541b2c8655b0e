"""``/v1/admin``: settings, epochs, revocation, audit and sign-in logs."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, jsonify, request

from service.clock import isoformat, utcnow
from service.errors import ApiError
from service.http import read_json, require_role
from service.store import EpochInfo, Settings
from service.tokens import USER_ID

bp = Blueprint("admin", __name__, url_prefix="/v1/admin")

MIN_TTL_SECONDS = 60
MAX_REASON = 500


@bp.before_request
@require_role("admin")
def _admin_only() -> None:
    """Every call here needs the admin role."""


def settings_json(settings: Settings) -> dict[str, Any]:
    """Return the contract's JSON shape of the settings."""
    max_ttl = current_app.extensions["deployment"].max_ttl_seconds
    return {
        "auto_login_enabled": settings.auto_login_enabled,
        # A lifetime saved under a higher ceiling is never used above today's.
        "token_ttl_seconds": min(settings.token_ttl_seconds, max_ttl),
        "max_token_ttl_seconds": max_ttl,
    }


def epoch_json(info: EpochInfo) -> dict[str, Any]:
    """Return the contract's JSON shape of the epoch."""
    return {
        "epoch": info.epoch,
        "changed_at": isoformat(info.changed_at),
        "changed_by": info.changed_by,
        "reason": info.reason,
    }


def validate_settings(body: Any) -> dict[str, Any]:
    """Return the validated changes of a settings update, or raise ``invalid_setting``."""
    max_ttl = current_app.extensions["deployment"].max_ttl_seconds

    def refuse(detail: str) -> ApiError:
        return ApiError(400, "invalid_setting", detail)

    if not isinstance(body, dict) or not body:
        raise refuse("send one or both of auto_login_enabled and token_ttl_seconds")
    for name in body:
        if name == "max_token_ttl_seconds":
            raise refuse("max_token_ttl_seconds is deployment config (MAX_TOKEN_TTL_SECONDS)")
        if name not in ("auto_login_enabled", "token_ttl_seconds"):
            raise refuse(f"{name}: is not a setting")
    changes: dict[str, Any] = {}
    if "auto_login_enabled" in body:
        if not isinstance(body["auto_login_enabled"], bool):
            raise refuse("auto_login_enabled: must be true or false")
        changes["auto_login_enabled"] = body["auto_login_enabled"]
    if "token_ttl_seconds" in body:
        ttl = body["token_ttl_seconds"]
        if not isinstance(ttl, int) or isinstance(ttl, bool):
            raise refuse("token_ttl_seconds: must be a whole number of seconds")
        if not MIN_TTL_SECONDS <= ttl <= max_ttl:
            raise refuse(f"token_ttl_seconds: must be between {MIN_TTL_SECONDS} and {max_ttl}")
        changes["token_ttl_seconds"] = ttl
    return changes


def validate_reason(value: Any) -> str:
    """Return a stripped reason of 1 to 500 characters, or raise ``invalid_request``."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_REASON:
        raise ApiError(400, "invalid_request", f"reason: must be 1 to {MAX_REASON} characters")
    return value.strip()


def _limit() -> int:
    raw = request.args.get("limit", "50")
    # isascii: str.isdigit() also accepts digits such as "²" that int() refuses.
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 500:
        raise ApiError(400, "invalid_request", "limit: must be a whole number from 1 to 500")
    return int(raw)


def _user_id(value: str) -> str:
    if not USER_ID.fullmatch(value):
        raise ApiError(
            400, "invalid_request", "user_id: must be 1 to 128 of A-Z a-z 0-9 . _ : @ + -"
        )
    return value


@bp.get("/settings")
def get_settings() -> Any:
    """Return the current settings."""
    return jsonify(settings_json(current_app.extensions["store"].settings()))


@bp.patch("/settings")
def update_settings() -> Any:
    """Change the switch or the default lifetime, for every worker at once."""
    changes = validate_settings(read_json())
    settings = current_app.extensions["store"].update_settings(changes, actor=g.actor, now=utcnow())
    return jsonify(settings_json(settings))


@bp.get("/epoch")
def get_epoch() -> Any:
    """Return the global epoch and its last change."""
    return jsonify(epoch_json(current_app.extensions["store"].epoch()))


@bp.post("/epoch/bump")
def bump_epoch() -> Any:
    """Void every outstanding token; when this returns, every worker refuses them."""
    reason = validate_reason(read_json().get("reason"))
    info = current_app.extensions["store"].bump_epoch(actor=g.actor, reason=reason, now=utcnow())
    current_app.extensions["metrics"].epoch_bumps.inc()
    return jsonify(epoch_json(info))


@bp.post("/users/<path:user_id>/revoke")
def revoke_user(user_id: str) -> Any:
    """Void every outstanding token of one user."""
    user_id = _user_id(user_id)
    reason = validate_reason(read_json().get("reason"))
    now = utcnow()
    current_app.extensions["store"].revoke_user(user_id, actor=g.actor, reason=reason, now=now)
    current_app.extensions["metrics"].user_revocations.inc()
    return jsonify({"user_id": user_id, "revoked_at": isoformat(now)})


@bp.get("/signins")
def signins() -> Any:
    """Return the sign-in log, newest first, of one user or all."""
    limit = _limit()
    user_id = request.args.get("user_id")
    if user_id is not None:
        user_id = _user_id(user_id)
    rows = current_app.extensions["store"].signins(user_id=user_id, limit=limit)
    return jsonify(
        {
            "signins": [
                {
                    "at": isoformat(s.at),
                    "user_id": s.user_id,
                    "outcome": s.outcome,
                    "ip": s.ip,
                    "user_agent": s.user_agent,
                }
                for s in rows
            ]
        }
    )


@bp.get("/audit")
def audit() -> Any:
    """Return the audit log, newest first."""
    events = current_app.extensions["store"].audit_events(limit=_limit())
    return jsonify(
        {
            "events": [
                {"at": isoformat(e.at), "actor": e.actor, "action": e.action, "detail": e.detail}
                for e in events
            ]
        }
    )
