"""The admin actions and their validators, shared by the admin API and the console.

No Flask request handling here: each function takes the store, the metrics
and plain values, so ``PATCH /v1/admin/settings`` and the console's
General Setting page run the same checks, make the same change and leave the
same audit event (with the caller's API key name as the actor).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from service.clock import isoformat
from service.config import MIN_TTL_SECONDS, Deployment
from service.errors import ApiError
from service.http import whole_number
from service.links import json_integer, validate_user_id
from service.store import EpochInfo, LinkRecord, LinkRevocation, Settings, Store

__all__ = [
    "MAX_LIMIT",
    "MAX_REASON",
    "bump_epoch",
    "expired_before",
    "epoch_json",
    "revoke_user",
    "settings_json",
    "update_settings",
    "validate_limit",
    "validate_reason",
    "validate_settings",
    "validate_user_id",
]

MAX_REASON = 500
#: The most log entries one read returns.
MAX_LIMIT = 500
SETTINGS = ("auto_login_enabled", "token_ttl_seconds", "bind_to_first_device", "role_mailboxes")
#: A role mailbox list's limits.
MAX_ROLE_MAILBOXES = 200
ROLE_MAILBOX = re.compile(r"[a-z0-9._-]{1,64}")
#: A link id: a token's ``jti``.
LINK_ID = re.compile(r"[A-Za-z0-9_-]{16,32}")
LINK_STATUSES = ("active", "revoked", "expired")


def settings_json(
    settings: Settings, max_ttl: int, portal_base_url: str | None = None
) -> dict[str, Any]:
    """Return the contract's JSON shape of the settings (with the tenant's portal, if given)."""
    answer: dict[str, Any] = {
        "auto_login_enabled": settings.auto_login_enabled,
        "token_ttl_seconds": settings.ttl_within(max_ttl),
        "max_token_ttl_seconds": max_ttl,
        "bind_to_first_device": settings.bind_to_first_device,
        "role_mailboxes": list(settings.role_mailboxes),
    }
    if portal_base_url is not None:
        answer["portal_base_url"] = portal_base_url
    return answer


def epoch_json(info: EpochInfo) -> dict[str, Any]:
    """Return the contract's JSON shape of the epoch."""
    return {
        "epoch": info.epoch,
        "changed_at": isoformat(info.changed_at),
        "changed_by": info.changed_by,
        "reason": info.reason,
    }


def validate_settings(body: Any, max_ttl: int) -> dict[str, Any]:
    """Return the validated changes of a settings update, or raise ``invalid_setting``."""

    def refuse(detail: str) -> ApiError:
        return ApiError(400, "invalid_setting", detail)

    if not isinstance(body, Mapping) or not body:
        raise refuse(f"send one or more of {', '.join(SETTINGS)}")
    for name in body:
        if name == "max_token_ttl_seconds":
            raise refuse("max_token_ttl_seconds is deployment config (MAX_TOKEN_TTL_SECONDS)")
        if name == "portal_base_url":
            raise refuse(
                "portal_base_url is read-only here: a platform admin moves a tenant's portal "
                "(PATCH /v1/admin/tenants/{tenant_id})"
            )
        if name not in SETTINGS:
            raise refuse(f"{name}: is not a setting")
    changes: dict[str, Any] = {}
    if "auto_login_enabled" in body:
        if not isinstance(body["auto_login_enabled"], bool):
            raise refuse("auto_login_enabled: must be true or false")
        changes["auto_login_enabled"] = body["auto_login_enabled"]
    if "token_ttl_seconds" in body:
        ttl = json_integer(body["token_ttl_seconds"])
        if ttl is None:
            raise refuse("token_ttl_seconds: must be a whole number of seconds")
        if not MIN_TTL_SECONDS <= ttl <= max_ttl:
            raise refuse(f"token_ttl_seconds: must be between {MIN_TTL_SECONDS} and {max_ttl}")
        changes["token_ttl_seconds"] = ttl
    if "bind_to_first_device" in body:
        if not isinstance(body["bind_to_first_device"], bool):
            raise refuse("bind_to_first_device: must be true or false")
        changes["bind_to_first_device"] = body["bind_to_first_device"]
    if "role_mailboxes" in body:
        changes["role_mailboxes"] = validate_role_mailboxes(body["role_mailboxes"])
    return changes


def validate_role_mailboxes(value: Any) -> tuple[str, ...]:
    """Return a role mailbox list (sorted, each name once), or raise ``invalid_setting``."""
    if not isinstance(value, list) or len(value) > MAX_ROLE_MAILBOXES:
        raise ApiError(
            400,
            "invalid_setting",
            f"role_mailboxes: must be a list of at most {MAX_ROLE_MAILBOXES} local parts",
        )
    for i, name in enumerate(value):
        if not isinstance(name, str) or not ROLE_MAILBOX.fullmatch(name):
            raise ApiError(
                400,
                "invalid_setting",
                f"role_mailboxes[{i}]: must be 1 to 64 of a-z 0-9 . _ - (lower case, "
                "the local part without @ or +tag)",
            )
    return tuple(sorted(set(value)))


def validate_reason(value: Any) -> str:
    """Return a stripped reason of 1 to 500 characters, or raise ``invalid_request``."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_REASON:
        raise ApiError(400, "invalid_request", f"reason: must be 1 to {MAX_REASON} characters")
    return value.strip()


def validate_limit(raw: str) -> int:
    """Return a log read's ``limit`` (1 to 500), or raise ``invalid_request``."""
    limit = whole_number(raw, 1, MAX_LIMIT)
    if limit is None:
        raise ApiError(
            400, "invalid_request", f"limit: must be a whole number from 1 to {MAX_LIMIT}"
        )
    return limit


def update_settings(
    store: Store, body: Any, max_ttl: int, *, actor: str, now: datetime
) -> dict[str, Any]:
    """Check and apply a settings change (with its audit event); return the new settings."""
    changes = validate_settings(body, max_ttl)
    return settings_json(store.update_settings(changes, actor=actor, now=now), max_ttl)


def bump_epoch(store: Store, metrics: Any, *, actor: str, reason: str, now: datetime) -> EpochInfo:
    """Void every outstanding token; when this returns, every worker refuses them."""
    info = store.bump_epoch(actor=actor, reason=reason, now=now)
    metrics.epoch_bumps.inc()
    return info


def revoke_user(
    store: Store, metrics: Any, user_id: str, *, actor: str, reason: str, now: datetime
) -> datetime:
    """Void every outstanding token of ``user_id``; return when it happened."""
    store.revoke_user(user_id, actor=actor, reason=reason, now=now)
    metrics.user_revocations.inc()
    return now


def validate_link_id(value: Any) -> str:
    """Return a well-formed link id, or raise ``invalid_request``."""
    if not isinstance(value, str) or not LINK_ID.fullmatch(value):
        raise ApiError(
            400, "invalid_request", "link_id: must be 16 to 32 characters of A-Z a-z 0-9 - _"
        )
    return value


def validate_link_status(value: str | None) -> str | None:
    """Return a ledger ``status`` filter, or raise ``invalid_request``."""
    if value is not None and value not in LINK_STATUSES:
        raise ApiError(400, "invalid_request", f"status: must be {', '.join(LINK_STATUSES)}")
    return value


def link_json(link: LinkRecord) -> dict[str, Any]:
    """Return the contract's JSON shape of a ledger entry."""

    def iso(moment: datetime | None) -> str | None:
        return None if moment is None else isoformat(moment)

    return {
        "link_id": link.link_id,
        "user_id": link.user_id,
        "target": link.target,
        "reference": link.reference,
        "issued_by": link.issued_by,
        "issued_at": isoformat(link.issued_at),
        "expires_at": isoformat(link.expires_at),
        "status": link.status,
        "uses": link.uses,
        "first_used_at": iso(link.first_used_at),
        "last_used_at": iso(link.last_used_at),
        "last_ip": link.last_ip,
        "bound": link.bound,
    }


def expired_before(deployment: Deployment, now: datetime) -> float:
    """Return when (seconds) a link expiring before it is ``expired``: now less the leeway."""
    return now.timestamp() - deployment.leeway_seconds


def revoke_link(
    store: Store,
    metrics: Any,
    deployment: Deployment,
    link_id: str,
    *,
    actor: str,
    reason: str,
    now: datetime,
) -> LinkRevocation:
    """Void one link; when this returns, every worker refuses its token.

    The deployment says whether the ledger is kept (``LINK_LEDGER``) and how
    long a revocation must last (``MAX_TOKEN_TTL_SECONDS``, ``LEEWAY_SECONDS``).
    """
    revocation = store.revoke_link(
        link_id,
        ledger=deployment.link_ledger,
        max_ttl=deployment.max_ttl_seconds,
        leeway=deployment.leeway_seconds,
        actor=actor,
        reason=reason,
        now=now,
    )
    if not revocation.expired:
        metrics.link_revocations.inc()
    return revocation
