"""The embedded store's logs: audit events, the platform's audit, sign-ins, and pruning."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from itertools import chain
from typing import Any

from service.clock import from_seconds, utcnow
from service.errors import StoreDataError
from service.store import LEDGER_GRACE_SECONDS, AuditEvent, Signin
from service.store.sqlite.rows import _ts
from service.store.sqlite.schema import _INSERT_SIGNINS, _SIGNIN_CHUNKS, _USE_LINK

__all__ = ["LogsMixin"]


class LogsMixin:
    """The logs of a :class:`~service.store.sqlite.SqliteStore`, written and read."""

    @staticmethod
    def _audit(
        conn: sqlite3.Connection,
        tenant: str,
        now: datetime,
        actor: str,
        action: str,
        detail: Mapping[str, Any],
    ) -> None:
        conn.execute(
            "INSERT INTO audit (tenant, at, actor, action, detail) VALUES (?, ?, ?, ?, ?)",
            (tenant, _ts(now), actor, action, json.dumps(dict(detail), sort_keys=True)),
        )

    @staticmethod
    def _platform_audit(
        conn: sqlite3.Connection, now: datetime, actor: str, action: str, detail: Mapping[str, Any]
    ) -> None:
        conn.execute(
            "INSERT INTO platform_audit (at, actor, action, detail) VALUES (?, ?, ?, ?)",
            (_ts(now), actor, action, json.dumps(dict(detail), sort_keys=True)),
        )

    def record_signins(self, signins: Sequence[Signin], incarnation: str | None = None) -> None:
        with self._write(log=True) as conn:
            row = conn.execute(
                "SELECT incarnation FROM tenants WHERE tenant_id = ?", (self.tenant_id,)
            ).fetchone()
            if row is None or incarnation not in (None, row[0]):
                return  # the tenant the clicks were of is gone, and its log with it
            tenant = row[0]
            rows = [
                (tenant, _ts(s.at), s.user_id, s.outcome, s.ip, s.user_agent, s.link_id)
                for s in signins
            ]
            start = 0
            for size in _SIGNIN_CHUNKS:
                while len(rows) - start >= size:
                    chunk = rows[start : start + size]
                    conn.execute(_INSERT_SIGNINS[size], tuple(chain.from_iterable(chunk)))
                    start += size
            # The ledger counts the successful uses of each link.
            uses = [
                {"at": _ts(s.at), "ip": s.ip, "tenant": tenant, "link": s.link_id}
                for s in signins
                if s.outcome == "ok" and s.link_id is not None
            ]
            if uses:
                conn.executemany(_USE_LINK, uses)

    def signins(self, *, user_id: str | None, limit: int) -> list[Signin]:
        with self._guard:
            conn = self._conn()
            incarnation = self._incarnation(conn)
            # By the click's own time (to the microsecond), whichever worker wrote it first.
            if user_id is None:
                rows = conn.execute(
                    "SELECT at, user_id, outcome, ip, user_agent, link_id FROM signins"
                    " WHERE tenant = ? ORDER BY at DESC, id DESC LIMIT ?",
                    (incarnation, limit),
                )
            else:
                rows = conn.execute(
                    "SELECT at, user_id, outcome, ip, user_agent, link_id FROM signins"
                    " WHERE tenant = ? AND user_id = ? ORDER BY at DESC, id DESC LIMIT ?",
                    (incarnation, user_id, limit),
                )
            return [
                Signin(from_seconds(at), u, o, ip, ua, link)
                for at, u, o, ip, ua, link in rows.fetchall()
            ]

    def audit_events(self, *, limit: int) -> list[AuditEvent]:
        with self._guard:
            conn = self._conn()
            rows = conn.execute(
                "SELECT at, actor, action, detail FROM audit WHERE tenant = ?"
                " ORDER BY id DESC LIMIT ?",
                (self._incarnation(conn), limit),
            ).fetchall()
        return self._events(rows)

    @staticmethod
    def _events(rows: list[Any]) -> list[AuditEvent]:
        events = []
        for at, actor, action, detail in rows:
            try:
                parsed = json.loads(detail)
            except ValueError as e:
                raise StoreDataError(f"audit event with unreadable detail: {e}") from e
            events.append(AuditEvent(from_seconds(at), actor, action, parsed))
        return events

    def platform_audit_events(self, *, limit: int) -> list[AuditEvent]:
        with self._guard:
            rows = (
                self._conn()
                .execute(
                    "SELECT at, actor, action, detail FROM platform_audit ORDER BY id DESC LIMIT ?",
                    (limit,),
                )
                .fetchall()
            )
        return self._events(rows)

    def prune(self, *, before: datetime, tenants: Sequence[str] = ()) -> None:
        # Every tenant's old entries at once: the tables are shared, the
        # deletes use the time indexes.
        with self._write() as conn:
            conn.execute("DELETE FROM audit WHERE at < ?", (_ts(before),))
            conn.execute("DELETE FROM signins WHERE at < ?", (_ts(before),))
            conn.execute("DELETE FROM platform_audit WHERE at < ?", (_ts(before),))
            now = utcnow().timestamp()
            conn.execute("DELETE FROM counters WHERE expires_at < ?", (now,))
            conn.execute("DELETE FROM links WHERE expires_at < ?", (now - LEDGER_GRACE_SECONDS,))
            conn.execute("DELETE FROM voided_links WHERE keep_until < ?", (now,))
            conn.execute("DELETE FROM bindings WHERE keep_until < ?", (now,))
