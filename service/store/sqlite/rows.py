"""Values between SQLite and the store: a moment as seconds, a tenant row's settings."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from service.errors import StoreDataError
from service.store import Settings

__all__ = ["_settings", "_ts"]


def _settings(enabled: Any, ttl: Any, bind: Any, roles: Any) -> Settings:
    """Return the settings of a tenant row's four settings columns, or raise StoreDataError."""
    if not (isinstance(enabled, int) and isinstance(ttl, int) and isinstance(bind, int)):
        raise StoreDataError("a tenant row has settings of the wrong shape")
    if roles is None:
        return Settings(bool(enabled), ttl, bool(bind))
    try:
        names = json.loads(roles)
    except ValueError as e:
        raise StoreDataError(f"a tenant row has unreadable role mailboxes: {e}") from e
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise StoreDataError("a tenant row has role mailboxes of the wrong shape")
    return Settings(bool(enabled), ttl, bool(bind), tuple(names))


def _ts(moment: datetime) -> float:
    return moment.timestamp()
