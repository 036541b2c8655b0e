"""Managing tenants and their API keys: the checks, the changes, the answers, the reaper.

Shared by the platform API (``/v1/admin/tenants``), the keys API and the
admin console, the way :mod:`service.admin` is for settings and epochs: no
Flask request handling here, only the store and plain values.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from service.admin import validate_reason
from service.clock import isoformat
from service.config import ROLES, check_portal_base_url
from service.errors import ApiError, ConfigError
from service.reaper import Reaper
from service.store import DEFAULT_TENANT, KeyRecord, Store, TenantInfo
from service.tenancy import new_tenant_key, validate_tenant_id

__all__ = [
    "KEY_NAME",
    "Reaper",
    "create_key",
    "create_tenant",
    "deletable",
    "delete_tenant",
    "key_json",
    "list_tenants",
    "refuse_default",
    "tenant_json",
    "validate_key_name",
    "validate_portal",
    "validate_prefix",
    "validate_roles",
]

log = logging.getLogger("service.tenants")

#: Names of tenant API keys.
KEY_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _invalid(detail: str) -> ApiError:
    return ApiError(400, "invalid_request", detail)


def validate_portal(value: Any, *, development: bool) -> str:
    """Return a tenant's portal address, or raise ``400 invalid_request`` saying why."""
    try:
        return check_portal_base_url(value, development)
    except ConfigError as e:
        detail = str(e).replace("PORTAL_BASE_URL", "portal_base_url")
        raise _invalid(detail.split(" (in $SERVICE_CONFIG")[0]) from None


def validate_key_name(value: Any) -> str:
    """Return a key name (1 to 64 of ``A-Z a-z 0-9 . _ -``), or raise ``invalid_request``."""
    if not isinstance(value, str) or not KEY_NAME.fullmatch(value):
        raise _invalid("name: must be 1 to 64 of A-Z a-z 0-9 . _ -")
    return value


def validate_roles(value: Any) -> frozenset[str]:
    """Return a non-empty set of known roles, or raise ``invalid_request``."""
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(r, str) and r in ROLES for r in value)
    ):
        raise _invalid(f"roles: must be a non-empty list of {', '.join(sorted(ROLES))}")
    return frozenset(value)


def tenant_json(info: TenantInfo, *, deployment_portal: str, max_ttl: int) -> dict[str, Any]:
    """Return the contract's JSON shape of one tenant."""
    return {
        "tenant_id": info.tenant_id,
        "portal_base_url": info.portal_base_url or deployment_portal,
        "created_at": isoformat(info.created_at),
        "auto_login_enabled": info.settings.auto_login_enabled,
        "token_ttl_seconds": info.settings.ttl_within(max_ttl),
    }


def key_json(record: KeyRecord) -> dict[str, Any]:
    """Return a key as listed: never the key or its digest."""
    return {
        "name": record.name,
        "roles": sorted(record.roles),
        "created_at": isoformat(record.created_at),
        "last_used_at": isoformat(record.last_used_at) if record.last_used_at else None,
    }


def create_key(
    store: Store, body: Mapping[str, Any], *, actor: str, reason: str, now: datetime
) -> dict[str, Any]:
    """Make a key of ``store``'s tenant; return it with its text, shown this once."""
    name = validate_key_name(body.get("name"))
    roles = validate_roles(body.get("roles"))
    text = new_tenant_key(store.tenant_id)
    digest = hashlib.sha256(text.encode()).digest()
    record = store.create_key(name, digest, roles, actor=actor, reason=reason, now=now)
    answer = key_json(record)
    del answer["last_used_at"]
    answer["key"] = text
    return answer


def refuse_default(tenant_id: str, what: str) -> None:
    """Raise ``400 invalid_request`` for ``default``, which cannot be ``what``."""
    if tenant_id == DEFAULT_TENANT:
        raise _invalid(f"tenant_id: the tenant {DEFAULT_TENANT!r} cannot be {what}")


def validate_prefix(value: Any) -> str:
    """Return a tenant id prefix to search by (``""``: all), or raise ``invalid_request``."""
    if not isinstance(value, str) or not all(
        c.isascii() and (c.islower() or c.isdigit() or c == "-") for c in value
    ):
        raise _invalid("prefix: must be a-z 0-9 - only")
    if len(value) > 63:
        raise _invalid("prefix: at most 63 characters")
    return value


def create_tenant(
    store: Store, body: Mapping[str, Any], *, development: bool, actor: str, now: datetime
) -> TenantInfo:
    """Check a new tenant's id, portal address and reason; create it (both audit logs)."""
    tenant_id = validate_tenant_id(body.get("tenant_id"))
    portal = validate_portal(body.get("portal_base_url"), development=development)
    reason = validate_reason(body.get("reason"))
    return store.create_tenant(tenant_id, portal, actor=actor, reason=reason, now=now)


def list_tenants(
    store: Store, reaper: Reaper, *, after: str | None, prefix: str, limit: int
) -> tuple[list[TenantInfo], str | None]:
    """Return a page of tenants by id (after ``after``, ids starting ``prefix``) and its ``next``.

    ``next`` is the last id of a full page (pass it as ``after``), else ``None``.
    """
    if after is not None:
        after = validate_tenant_id(after, "after")
    prefix = validate_prefix(prefix)
    reaper.kick()  # a listing is a platform admin's look: finish any interrupted delete
    found = store.list_tenants(after=after, prefix=prefix, limit=limit)
    return found, found[-1].tenant_id if len(found) == limit else None


def deletable(tenant_id: Any) -> str:
    """Return ``tenant_id`` if it is a tenant id other than ``default``, else raise ``400``."""
    tenant_id = validate_tenant_id(tenant_id)
    refuse_default(tenant_id, "deleted")
    return tenant_id


def delete_tenant(
    store: Store, reaper: Reaper, tenant_id: str, *, actor: str, reason: Any, now: datetime
) -> None:
    """Delete a tenant: its tokens and keys stop at once, its data goes in the background."""
    tenant_id = deletable(tenant_id)
    reason = validate_reason(reason)
    store.delete_tenant(tenant_id, actor=actor, reason=reason, now=now)
    reaper.kick()
