"""How a call finds its tenant: the one place that decides it.

Every request under ``/v1`` acts in one tenant. The API key says who calls
(a *platform* key from ``API_KEYS``, or a *tenant* key kept in the store),
the path may name a tenant (``/v1/tenants/{tenant_id}/...``), and
:func:`authorize` turns both into ``g.tenant_id`` and ``g.store``, a view of
the store acting in that tenant, in the contract's order of checks:

1. no key, or an unknown one: ``401 unauthorized``;
2. a key without the role, or a tenant key naming any tenant but its own
   (existing or not, well-formed or not): ``403 forbidden``;
3. a platform key naming a malformed id: ``400 invalid_request``;
4. a tenant that does not exist: ``404 tenant_not_found``;
5. then the body, read by the view.

Views never look at tenant ids themselves: they use :func:`store`, and the
store keys everything by the tenant it was bound to.

A tenant key's text begins with its tenant (``tk.acme.<secret>``), so
finding it costs one read of that tenant's keys, never a global index.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flask import current_app, g, request

from service.clock import utcnow
from service.config import ApiKey
from service.errors import ApiError
from service.store import DEFAULT_TENANT, KeyRecord, Store, TenantInfo
from service.transport import TENANT_ID

__all__ = [
    "DEFAULT_TENANT",
    "TENANT_ID",
    "Caller",
    "acting_tenant",
    "authorize",
    "authenticate",
    "find_api_key",
    "key_digest",
    "limit_identity",
    "match_api_key",
    "new_tenant_key",
    "path_tenant",
    "portal_base_url",
    "store",
    "tenant_caller",
    "tenant_info",
    "tenant_key",
    "tenant_portal",
    "validate_tenant_id",
]

#: The start of every tenant key's text; ``.`` is in no tenant id.
TENANT_KEY_PREFIX = "tk."
#: How often a tenant key's ``last_used_at`` is written, per key and process.
TOUCH_EVERY_SECONDS = 60.0
#: The WSGI environ key where the URL's tenant waits for :func:`authorize`.
_PATH_TENANT = "autologin.path_tenant"


@dataclass(frozen=True)
class Caller:
    """Who calls: a key's name and roles, and its tenant (``None``: a platform key)."""

    name: str
    roles: frozenset[str]
    tenant_id: str | None


def validate_tenant_id(value: Any, field: str = "tenant_id") -> str:
    """Return ``value`` if it is a tenant id, else raise ``400 invalid_request``."""
    if not isinstance(value, str) or not TENANT_ID.fullmatch(value):
        raise ApiError(
            400,
            "invalid_request",
            f"{field}: must be 1 to 63 of a-z 0-9 -, neither starting nor ending with -",
        )
    return value


def new_tenant_key(tenant_id: str) -> str:
    """Return the text of a new key of ``tenant_id`` (shown once, kept as a digest)."""
    return f"{TENANT_KEY_PREFIX}{tenant_id}.{secrets.token_urlsafe(32)}"


class _Touches:
    """When this process last wrote each tenant key's ``last_used_at``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.last: dict[tuple[str, bytes], float] = {}

    def due(self, tenant_id: str, digest: bytes) -> bool:
        now = time.monotonic()
        with self.lock:
            if self.pid != os.getpid():
                self.pid, self.last = os.getpid(), {}
            # By digest, not name: a key revoked and made again under its
            # name is another key, whose first use is written at once.
            if now - self.last.get((tenant_id, digest), -TOUCH_EVERY_SECONDS) < TOUCH_EVERY_SECONDS:
                return False
            if len(self.last) > 100_000:  # thousands of tenants: never grow without end
                self.last.clear()
            self.last[(tenant_id, digest)] = now
            return True


_touches = _Touches()


def _bearer(header: str) -> str | None:
    """Return the key an ``Authorization: Bearer`` header presents, if any."""
    scheme, _, presented = header.partition(" ")
    presented = presented.strip()
    return presented if scheme.lower() == "bearer" and presented else None


def key_digest(presented: str) -> bytes:
    """Return the SHA-256 digest by which every key is known."""
    return hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()


def _platform_key(digest: bytes, api_keys: Iterable[ApiKey]) -> ApiKey | None:
    found = None
    # Compare against every key, in constant time each, without stopping early.
    for key in api_keys:
        if hmac.compare_digest(digest, key.digest):
            found = key
    return found


def match_api_key(presented: str, api_keys: Iterable[ApiKey]) -> ApiKey | None:
    """Return the platform key (of ``API_KEYS``) whose digest matches ``presented``, if any."""
    return _platform_key(key_digest(presented), api_keys)


def find_api_key(header: str, api_keys: Iterable[ApiKey]) -> ApiKey | None:
    """Return the platform key an ``Authorization: Bearer`` header presents, if any."""
    presented = _bearer(header)
    return None if presented is None else match_api_key(presented, api_keys)


def tenant_key(header: str) -> tuple[str, bytes] | None:
    """Return the tenant and digest of a tenant key a header presents (unchecked), if any.

    The tenant comes from the key's own text (``tk.acme.<secret>``): finding
    it costs no read of any index.
    """
    presented = _bearer(header)
    if presented is None or not presented.startswith(TENANT_KEY_PREFIX):
        return None
    tenant_id, dot, _ = presented[len(TENANT_KEY_PREFIX) :].partition(".")
    if not dot or not TENANT_ID.fullmatch(tenant_id):
        return None
    return tenant_id, key_digest(presented)


def tenant_caller(
    tenant_id: str, digest: bytes, record: KeyRecord | None, view: Store
) -> Caller | None:
    """Return the caller a tenant key found in its store is (``None``: unknown key).

    Records the key's use (``last_used_at``) at most once a minute per key and process.
    """
    if record is None or not hmac.compare_digest(digest, record.digest):
        return None
    if _touches.due(tenant_id, digest):
        view.touch_key(record.name, utcnow())
    return Caller(record.name, record.roles, tenant_id)


def authenticate(header: str, api_keys: tuple[ApiKey, ...], root: Store) -> Caller | None:
    """Return who an ``Authorization: Bearer`` header presents, if anybody.

    Platform keys are held in memory; a tenant key is looked up in its
    tenant's store by digest (a revoked key, or one of a deleted tenant, is
    found nowhere: unknown at once on every worker and host).
    """
    key = find_api_key(header, api_keys)
    if key is not None:
        return Caller(key.name, key.roles, None)
    found = tenant_key(header)
    if found is None:
        return None
    tenant_id, digest = found
    view = root.tenant(tenant_id)
    return tenant_caller(tenant_id, digest, view.find_key(digest), view)


def path_tenant(values: dict[str, Any] | None) -> None:
    """Take the URL's ``tenant_id`` out of the view arguments (a url_value_preprocessor)."""
    if values is not None and "tenant_id" in values:
        request.environ[_PATH_TENANT] = values.pop("tenant_id")


def acting_tenant(caller: Caller, named: str | None, root: Store) -> tuple[str, TenantInfo | None]:
    """Return the tenant ``caller`` acts in when ``named`` (``None``: none named), and its info.

    The checks after the key's own (steps 2 to 4 of the module's order): a
    tenant key naming any tenant but its own is ``403 forbidden``, the same
    whether that tenant exists or not; a platform key naming a malformed id
    is ``400 invalid_request``, one that does not exist ``404
    tenant_not_found``. The info is read only when a platform key names a
    tenant other than ``default``; shared by the API and the admin console.
    """
    if caller.tenant_id is not None:
        if named is not None and named != caller.tenant_id:
            # The same answer whether that tenant exists or not: a tenant
            # learns nothing about the others.
            raise ApiError(403, "forbidden", "this API key acts in its own tenant only")
        return caller.tenant_id, None
    if named is None:
        return DEFAULT_TENANT, None
    tenant_id = validate_tenant_id(named)
    if tenant_id == DEFAULT_TENANT:  # default always exists
        return tenant_id, None
    return tenant_id, root.get_tenant(tenant_id)  # TenantNotFoundError: 404 before the body


def authorize(*roles: str, platform_only: bool = False) -> Caller:
    """Check the caller and the tenant of this request in the contract's order.

    Sets ``g.caller``, ``g.actor`` (the key's name, for audit events),
    ``g.tenant_id`` and ``g.store`` (the store acting in that tenant).
    :param platform_only: a call of the platform's (managing tenants): no tenant key.
    """
    extensions = current_app.extensions
    root: Store = extensions["store"]
    caller = authenticate(
        request.headers.get("Authorization", ""), extensions["deployment"].api_keys, root
    )
    if caller is None:
        raise ApiError(
            401,
            "unauthorized",
            "send a known API key as Authorization: Bearer <key>",
            headers={"WWW-Authenticate": 'Bearer realm="autologin"'},
        )
    if not caller.roles.intersection(roles):
        raise ApiError(403, "forbidden", f"this API key lacks the role {' or '.join(roles)}")
    if caller.tenant_id is not None and platform_only:
        raise ApiError(403, "forbidden", "only a platform key may manage tenants")
    tenant_id, info = acting_tenant(caller, request.environ.get(_PATH_TENANT), root)
    if info is not None:
        g.tenant_info = info  # kept for the call, which may need the portal address
    g.caller, g.actor, g.tenant_id = caller, caller.name, tenant_id
    g.store = root.tenant(tenant_id)
    return caller


def store() -> Store:
    """Return the store acting in this request's tenant (after :func:`authorize`)."""
    return g.store


def limit_identity() -> tuple[str, str]:
    """Return what rate limits count this request by: its tenant and its key."""
    caller: Caller = g.caller
    kind = "platform" if caller.tenant_id is None else "tenant"
    return g.tenant_id, f"{kind}:{caller.name}"


def portal_base_url(configured: str | None) -> str:
    """Return a tenant's portal address: its own, else the deployment's ``PORTAL_BASE_URL``."""
    return configured or current_app.extensions["deployment"].portal_base_url


def tenant_info() -> TenantInfo:
    """Return this request's tenant, read once per request."""
    info: TenantInfo | None = g.get("tenant_info")
    if info is None:
        info = g.tenant_info = store().tenant_info()
    return info


def tenant_portal() -> str:
    """Return this request's tenant's portal address.

    ``default``'s is the deployment's ``PORTAL_BASE_URL`` (no call moves it),
    known without the store: what needs only the address works while the
    store is down.
    """
    if g.tenant_id == DEFAULT_TENANT:
        return portal_base_url(None)
    return portal_base_url(tenant_info().portal_base_url)
