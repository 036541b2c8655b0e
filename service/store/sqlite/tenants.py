"""The embedded store's tenants: their rows, creation, changes, deletion and reaping."""

from __future__ import annotations

import secrets
import sqlite3
from datetime import datetime

from service.clock import from_seconds
from service.errors import ConflictError, TenantNotFoundError
from service.store import DEFAULT_TENANT, TenantInfo
from service.store.sqlite.rows import _settings, _ts
from service.store.sqlite.schema import _REAP_TABLES, _SETTINGS_COLUMNS

__all__ = ["TenantsMixin"]


class TenantsMixin:
    """The tenants of :class:`~service.store.sqlite.SqliteStore` (the platform's calls)."""

    @staticmethod
    def _exists(conn: sqlite3.Connection, tenant_id: str) -> bool:
        row = conn.execute("SELECT 1 FROM tenants WHERE tenant_id = ?", (tenant_id,)).fetchone()
        return row is not None

    def _insert_tenant(
        self, conn: sqlite3.Connection, tenant_id: str, portal: str | None, now: datetime
    ) -> str:
        incarnation = secrets.token_urlsafe(9)
        reason = "store created" if tenant_id == DEFAULT_TENANT else "tenant created"
        conn.execute(
            "INSERT INTO tenants (tenant_id, incarnation, portal_base_url, created_at, epoch,"
            " changed_at, changed_by, reason, auto_login_enabled, token_ttl_seconds)"
            " VALUES (?, ?, ?, ?, 1, ?, 'system', ?, ?, ?)",
            (
                tenant_id,
                incarnation,
                portal,
                _ts(now),
                _ts(now),
                reason,
                int(self.defaults.auto_login_enabled),
                self.defaults.token_ttl_seconds,
            ),
        )
        return incarnation

    def _tenant_row(self, conn: sqlite3.Connection, tenant_id: str) -> TenantInfo:
        row = conn.execute(
            "SELECT portal_base_url, created_at, "  # noqa: S608 (fixed column names)
            + _SETTINGS_COLUMNS
            + " FROM tenants WHERE tenant_id = ?",
            (tenant_id,),
        ).fetchone()
        if row is None:
            raise TenantNotFoundError(tenant_id)
        return TenantInfo(tenant_id, row[0], from_seconds(row[1]), _settings(*row[2:]))

    def create_tenant(
        self, tenant_id: str, portal_base_url: str, *, actor: str, reason: str, now: datetime
    ) -> TenantInfo:
        with self._write() as conn:
            if self._exists(conn, tenant_id):
                raise ConflictError("tenant_exists", f"a tenant {tenant_id!r} exists already")
            incarnation = self._insert_tenant(conn, tenant_id, portal_base_url, now)
            detail = {"tenant_id": tenant_id, "portal_base_url": portal_base_url, "reason": reason}
            self._audit(conn, incarnation, now, actor, "tenant.create", detail)
            self._platform_audit(conn, now, actor, "tenant.create", detail)
            return self._tenant_row(conn, tenant_id)

    def get_tenant(self, tenant_id: str) -> TenantInfo:
        with self._guard:
            return self._tenant_row(self._conn(), tenant_id)

    def list_tenants(self, *, after: str | None, prefix: str, limit: int) -> list[TenantInfo]:
        # Keyset paging on the primary key: a page costs its own rows, never
        # the tenants before it. The prefix is a range, not a LIKE pattern.
        with self._guard:
            rows = (
                self._conn()
                .execute(
                    "SELECT tenant_id, portal_base_url, created_at, "  # noqa: S608 (fixed names)
                    + _SETTINGS_COLUMNS
                    + " FROM tenants WHERE tenant_id > ?"
                    " AND tenant_id >= ? AND tenant_id < ? ORDER BY tenant_id LIMIT ?",
                    (after or "", prefix, prefix + "\uffff", limit),
                )
                .fetchall()
            )
        return [TenantInfo(r[0], r[1], from_seconds(r[2]), _settings(*r[3:])) for r in rows]

    def update_tenant(
        self, tenant_id: str, portal_base_url: str, *, actor: str, reason: str, now: datetime
    ) -> TenantInfo:
        with self._write() as conn:
            row = conn.execute(
                "UPDATE tenants SET portal_base_url = ? WHERE tenant_id = ? RETURNING incarnation",
                (portal_base_url, tenant_id),
            ).fetchone()
            if row is None:
                raise TenantNotFoundError(tenant_id)
            detail = {"tenant_id": tenant_id, "portal_base_url": portal_base_url, "reason": reason}
            self._audit(conn, row[0], now, actor, "tenant.update", detail)
            self._platform_audit(conn, now, actor, "tenant.update", detail)
            return self._tenant_row(conn, tenant_id)

    def delete_tenant(self, tenant_id: str, *, actor: str, reason: str, now: datetime) -> None:
        with self._write() as conn:
            row = conn.execute(
                "DELETE FROM tenants WHERE tenant_id = ? RETURNING incarnation", (tenant_id,)
            ).fetchone()
            if row is None:
                raise TenantNotFoundError(tenant_id)
            # The tenant is gone in this one transaction: its tokens' incarnation
            # matches no tenant, its keys are found through no tenant. Its rows
            # go later, a few at a time (reap), keyed by the old incarnation, so
            # a tenant made again under the id never sees or loses them.
            conn.execute("INSERT INTO trash VALUES (?, ?, ?)", (row[0], tenant_id, _ts(now)))
            detail = {"tenant_id": tenant_id, "reason": reason}
            self._platform_audit(conn, now, actor, "tenant.delete", detail)

    def reap(self, *, budget: int) -> bool:
        with self._guard:
            row = self._conn().execute("SELECT incarnation FROM trash LIMIT 1").fetchone()
        if row is None:
            return False
        incarnation = row[0]
        for table, column in _REAP_TABLES:
            with self._write() as conn:
                # Only fixed table and column names are formatted in, never a value.
                removed = conn.execute(
                    f"DELETE FROM {table} WHERE tenant = ? AND {column} IN"  # noqa: S608
                    f" (SELECT {column} FROM {table} WHERE tenant = ? LIMIT ?)",
                    (incarnation, incarnation, budget),
                ).rowcount
            if removed:
                return True
        with self._write() as conn:
            conn.execute("DELETE FROM trash WHERE incarnation = ?", (incarnation,))
        with self._guard:
            return self._conn().execute("SELECT 1 FROM trash LIMIT 1").fetchone() is not None
