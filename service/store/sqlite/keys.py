"""The embedded store's tenant API keys: kept as digests, never as keys."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from service.clock import from_seconds
from service.errors import ConflictError, KeyNotFoundError
from service.store import KeyRecord
from service.store.sqlite.rows import _ts

__all__ = ["KeysMixin"]


class KeysMixin:
    """The API keys of the tenant a :class:`~service.store.sqlite.SqliteStore` acts in."""

    @staticmethod
    def _key(row: tuple[Any, ...]) -> KeyRecord:
        name, digest, roles, created, used = row
        return KeyRecord(
            name,
            bytes(digest),
            frozenset(json.loads(roles)),
            from_seconds(created),
            None if used is None else from_seconds(used),
        )

    def create_key(
        self,
        name: str,
        digest: bytes,
        roles: frozenset[str],
        *,
        actor: str,
        reason: str,
        now: datetime,
    ) -> KeyRecord:
        with self._write() as conn:
            incarnation = self._incarnation(conn)
            taken = conn.execute(
                "SELECT 1 FROM tenant_keys WHERE tenant = ? AND name = ?", (incarnation, name)
            ).fetchone()
            if taken is not None:
                raise ConflictError("key_exists", f"this tenant has a key named {name!r}")
            conn.execute(
                "INSERT INTO tenant_keys VALUES (?, ?, ?, ?, ?, NULL)",
                (incarnation, name, digest, json.dumps(sorted(roles)), _ts(now)),
            )
            detail = {
                "tenant_id": self.tenant_id,
                "name": name,
                "roles": sorted(roles),
                "reason": reason,
            }
            self._audit(conn, incarnation, now, actor, "key.create", detail)
            self._platform_audit(conn, now, actor, "key.create", detail)
        return KeyRecord(name, digest, roles, now, None)

    def keys(self) -> list[KeyRecord]:
        with self._guard:
            conn = self._conn()
            rows = conn.execute(
                "SELECT name, digest, roles, created_at, last_used_at FROM tenant_keys"
                " WHERE tenant = ? ORDER BY name",
                (self._incarnation(conn),),
            ).fetchall()
        return [self._key(row) for row in rows]

    def find_key(self, digest: bytes) -> KeyRecord | None:
        with self._guard:
            row = (
                self._conn()
                .execute(
                    "SELECT k.name, k.digest, k.roles, k.created_at, k.last_used_at"
                    " FROM tenants t JOIN tenant_keys k ON k.tenant = t.incarnation"
                    " WHERE t.tenant_id = ? AND k.digest = ?",
                    (self.tenant_id, digest),
                )
                .fetchone()
            )
        return None if row is None else self._key(row)

    def touch_key(self, name: str, now: datetime) -> None:
        with self._guard:
            self._log_conn().execute(
                "UPDATE tenant_keys SET last_used_at = ? WHERE name = ? AND tenant ="
                " (SELECT incarnation FROM tenants WHERE tenant_id = ?)",
                (_ts(now), name, self.tenant_id),
            )

    def revoke_key(self, name: str, *, actor: str, reason: str, now: datetime) -> None:
        with self._write() as conn:
            incarnation = self._incarnation(conn)
            row = conn.execute(
                "DELETE FROM tenant_keys WHERE tenant = ? AND name = ? RETURNING name",
                (incarnation, name),
            ).fetchone()
            if row is None:
                raise KeyNotFoundError(name)
            detail = {"tenant_id": self.tenant_id, "name": name, "reason": reason}
            self._audit(conn, incarnation, now, actor, "key.revoke", detail)
            self._platform_audit(conn, now, actor, "key.revoke", detail)
