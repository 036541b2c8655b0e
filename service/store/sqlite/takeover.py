"""Taking over the single-tenant version's store, in place, as the tenant ``default``."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from service.clock import utcnow
from service.errors import StoreDataError
from service.store import DEFAULT_TENANT

__all__ = ["TakeOverMixin"]

log = logging.getLogger("service.store.sqlite")  # the store's one logger (see connection.py)

# The single-tenant version's layout (before tenants): one meta row, user
# epochs keyed by user id alone, logs without a tenant column. Taken over in
# place as the tenant ``default`` by _take_over.
_LEGACY_INDEXES = ("signins_user",)


class TakeOverMixin:
    """The take-over steps that :class:`~service.store.sqlite.SqliteStore` runs as it starts."""

    @staticmethod
    def _take_over(conn: sqlite3.Connection) -> tuple[Any, ...] | None:
        """Move a single-tenant store's tables aside; return its meta row (None: nothing to do).

        Runs inside the creating transaction, so a crash leaves the old store
        whole and the next start takes it over again; once done, the old
        ``meta`` table is gone and nothing here runs again.
        """
        if (
            conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
            ).fetchone()
            is None
        ):
            return None
        meta = conn.execute(
            "SELECT incarnation, epoch, changed_at, changed_by, reason,"
            " auto_login_enabled, token_ttl_seconds FROM meta WHERE id = 1"
        ).fetchone()
        if meta is None:
            raise StoreDataError("the single-tenant store has no meta row")
        conn.execute("ALTER TABLE user_epochs RENAME TO user_epochs_v1")
        for table in ("audit", "signins"):
            conn.execute(f"ALTER TABLE {table} ADD COLUMN tenant TEXT NOT NULL DEFAULT ''")
        for index in _LEGACY_INDEXES:
            conn.execute(f"DROP INDEX IF EXISTS {index}")
        return meta

    @staticmethod
    def _finish_take_over(conn: sqlite3.Connection, meta: tuple[Any, ...]) -> None:
        incarnation, epoch, changed_at, changed_by, reason, enabled, ttl = meta
        created = conn.execute(
            "SELECT MIN(at) FROM audit WHERE action = 'store.create'"
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO tenants (tenant_id, incarnation, portal_base_url, created_at, epoch,"
            " changed_at, changed_by, reason, auto_login_enabled, token_ttl_seconds)"
            " VALUES (?, ?, NULL, ?, ?, ?, ?, ?, ?, ?)",
            (
                DEFAULT_TENANT,
                incarnation,
                created if created is not None else changed_at,
                epoch,
                changed_at,
                changed_by,
                reason,
                enabled,
                ttl,
            ),
        )
        conn.execute(
            "INSERT INTO user_epochs SELECT ?, user_id, epoch, revoked_at FROM user_epochs_v1",
            (incarnation,),
        )
        conn.execute("DROP TABLE user_epochs_v1")
        conn.execute("UPDATE audit SET tenant = ?", (incarnation,))
        conn.execute("UPDATE signins SET tenant = ?", (incarnation,))
        conn.execute("DROP TABLE meta")
        conn.execute(
            "INSERT INTO store_info VALUES ('legacy_before', ?)", (repr(utcnow().timestamp()),)
        )
        log.warning("took over a single-tenant store as tenant %r", DEFAULT_TENANT)
