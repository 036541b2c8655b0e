"""The :class:`SqliteStore`: opening and creating the store, and one tenant's row.

The tenant's settings, epochs and user revocations are here; the other
concerns are the mixins it is made of (see :mod:`service.store.sqlite`).
"""

from __future__ import annotations

import copy
import json
import sqlite3
import threading
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from service.clock import from_seconds, utcnow
from service.errors import (
    ConfigError,
    StoreDataError,
    StoreUnavailableError,
    TenantNotFoundError,
)
from service.store import (
    DEFAULT_TENANT,
    EpochInfo,
    Settings,
    TenantInfo,
    fresh_epoch_value,
)
from service.store.sqlite.connection import ConnectionsMixin, _Guard
from service.store.sqlite.counters import CountersMixin
from service.store.sqlite.keys import KeysMixin
from service.store.sqlite.ledger import LedgerMixin
from service.store.sqlite.logs import LogsMixin
from service.store.sqlite.rows import _settings, _ts
from service.store.sqlite.schema import (
    _ADDED_COLUMNS,
    _BACKFILLS,
    _LATE_SCHEMA,
    _META,
    _SCHEMA,
    _SETTING_UPDATES,
)
from service.store.sqlite.state import StateMixin
from service.store.sqlite.takeover import TakeOverMixin
from service.store.sqlite.tenants import TenantsMixin

__all__ = ["SqliteStore"]


class SqliteStore(
    StateMixin,
    TenantsMixin,
    KeysMixin,
    LedgerMixin,
    LogsMixin,
    CountersMixin,
    TakeOverMixin,
    ConnectionsMixin,
):
    """The :class:`~service.store.Store` on one SQLite file, acting in one tenant."""

    def __init__(self, path: str, *, defaults: Settings, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout
        self.defaults = defaults
        self.tenant_id = DEFAULT_TENANT
        self.legacy_before: float | None = None
        self._local = threading.local()
        self._guard = _Guard(path)
        self._create()

    def tenant(self, tenant_id: str) -> SqliteStore:
        """Return a view of this store acting in ``tenant_id``; it shares the connections."""
        if tenant_id == self.tenant_id:
            return self
        view = copy.copy(self)
        view.tenant_id = tenant_id
        return view

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        defaults: Settings,
        instance_path: str | None = None,
        sqlite_timeout_seconds: float = 5.0,
        **_ignored: Any,
    ) -> SqliteStore:
        """Open the store named ``sqlite:////abs/path.db`` or ``sqlite:///rel/path.db``.

        A relative path is taken relative to the instance folder, as
        Flask-SQLAlchemy does, so a development store never lands in the
        current directory by accident.
        """
        if not url.startswith("sqlite:///"):
            raise ConfigError(
                f"STORE_URL {url!r} is not a SQLite URL; write sqlite:////abs/path.db "
                "or sqlite:///relative/path.db"
            )
        raw = url[len("sqlite:///") :]
        if not raw or raw == ":memory:" or raw.startswith("file:"):
            raise ConfigError(
                "STORE_URL must name a SQLite file: an in-memory store would give each "
                "worker its own epoch"
            )
        path = Path(raw)
        if not path.is_absolute():
            path = Path(instance_path or ".") / path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"STORE_URL: cannot create folder {path.parent}: {e}") from e
        try:
            return cls(str(path), defaults=defaults, timeout=sqlite_timeout_seconds)
        except StoreUnavailableError as e:
            raise ConfigError(f"STORE_URL: cannot open SQLite store {path}: {e}") from e
        except StoreDataError as e:
            raise ConfigError(f"STORE_URL: {path} is not a store of this service: {e}") from e

    def _create(self) -> None:
        with self._guard:
            conn = self._conn()
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreUnavailableError(f"cannot switch {self.path} to WAL mode")
        with self._write() as conn:
            legacy = self._take_over(conn)
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            for table, column, kind in _ADDED_COLUMNS:
                # Fixed names only, never a value: the list _ADDED_COLUMNS.
                columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                if column not in columns:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                    if (table, column) in _BACKFILLS:
                        conn.execute(_BACKFILLS[table, column])
            for statement in _LATE_SCHEMA:
                conn.execute(statement)
            if legacy is not None:
                self._finish_take_over(conn, legacy)
            if not self._exists(conn, DEFAULT_TENANT):
                now = utcnow()
                incarnation = self._insert_tenant(conn, DEFAULT_TENANT, None, now)
                self._audit(
                    conn, incarnation, now, "system", "store.create", {"incarnation": incarnation}
                )
            row = conn.execute(
                "SELECT value FROM store_info WHERE name = 'legacy_before'"
            ).fetchone()
        self.legacy_before = float(row[0]) if row else None
        self._meta()  # check the shape of an existing store now, not on the first click

    # -- reads -----------------------------------------------------------

    def _meta(self) -> tuple[Any, ...]:
        """Return the tenant's row: incarnation, epoch, its change, portal, creation, settings."""
        with self._guard:
            row = self._conn().execute(_META, (self.tenant_id,)).fetchone()
        if row is None:
            raise TenantNotFoundError(self.tenant_id)
        incarnation, epoch, changed_at, changed_by, reason, portal, created = row[:7]
        if not (
            isinstance(incarnation, str)
            and isinstance(epoch, int)
            and isinstance(changed_at, int | float)
            and isinstance(created, int | float)
            and (portal is None or isinstance(portal, str))
        ):
            raise StoreDataError(f"SQLite store {self.path} has a tenant row of the wrong shape")
        return (*row[:7], _settings(*row[7:]))

    def _incarnation(self, conn: sqlite3.Connection) -> str:
        row = conn.execute(
            "SELECT incarnation FROM tenants WHERE tenant_id = ?", (self.tenant_id,)
        ).fetchone()
        if row is None:
            raise TenantNotFoundError(self.tenant_id)
        return row[0]

    def settings(self) -> Settings:
        meta = self._meta()
        return meta[7]

    def tenant_info(self) -> TenantInfo:
        meta = self._meta()
        return TenantInfo(self.tenant_id, meta[5], from_seconds(meta[6]), meta[7])

    def epoch(self) -> EpochInfo:
        _, epoch, changed_at, changed_by, reason, _, _, _ = self._meta()
        return EpochInfo(epoch, from_seconds(changed_at), changed_by, reason)

    def ping(self) -> str | None:
        self._meta()
        return None

    # -- writes ----------------------------------------------------------

    def update_settings(self, changes: Mapping[str, Any], *, actor: str, now: datetime) -> Settings:
        with self._write() as conn:
            incarnation = self._incarnation(conn)
            for name, value in changes.items():
                # A fixed statement per setting: an unknown name is a KeyError,
                # never a column name written into SQL.
                stored = json.dumps(list(value)) if name == "role_mailboxes" else int(value)
                conn.execute(_SETTING_UPDATES[name], (stored, self.tenant_id))
            self._audit(conn, incarnation, now, actor, "settings.update", dict(changes))
            # Read in the same transaction: what was written, not a later change.
            return self.settings()

    def bump_epoch(self, *, actor: str, reason: str, now: datetime) -> EpochInfo:
        with self._write() as conn:
            row = conn.execute(
                "UPDATE tenants SET epoch = epoch + 1, epoch_id = ?, changed_at = ?,"
                " changed_by = ?, reason = ? WHERE tenant_id = ? RETURNING epoch, incarnation",
                (fresh_epoch_value(), _ts(now), actor, reason, self.tenant_id),
            ).fetchone()
            if row is None:
                raise TenantNotFoundError(self.tenant_id)
            self._audit(conn, row[1], now, actor, "epoch.bump", {"epoch": row[0], "reason": reason})
        return EpochInfo(row[0], now, actor, reason)

    def revoke_user(self, user_id: str, *, actor: str, reason: str, now: datetime) -> int:
        with self._write() as conn:
            incarnation = self._incarnation(conn)
            old = conn.execute(
                "SELECT epoch FROM user_epochs WHERE tenant = ? AND user_id = ?",
                (incarnation, user_id),
            ).fetchone()
            # A fresh random value, not epoch + 1: never one a token had before.
            row = conn.execute(
                "INSERT INTO user_epochs (tenant, user_id, epoch, revoked_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (tenant, user_id) DO UPDATE SET epoch = excluded.epoch,"
                " revoked_at = excluded.revoked_at RETURNING epoch",
                (incarnation, user_id, fresh_epoch_value(old and old[0]), _ts(now)),
            ).fetchone()
            self._audit(
                conn,
                incarnation,
                now,
                actor,
                "user.revoke",
                {"user_id": user_id, "user_epoch": row[0], "reason": reason},
            )
        return int(row[0])
