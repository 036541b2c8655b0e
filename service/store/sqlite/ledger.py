"""The embedded store's ledger: the links issued, their revocations and device bindings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from service.clock import from_seconds
from service.errors import LinkNotFoundError
from service.store import (
    LEDGER_CLEANUP_EXTRA,
    LEDGER_GRACE_SECONDS,
    LinkCheck,
    LinkRecord,
    LinkRevocation,
)
from service.store.sqlite.rows import _ts
from service.store.sqlite.schema import (
    _CLEANUPS,
    _INSERT_LINK,
    _LINK_SELECT,
    _USER_LINK_SELECT,
)

__all__ = ["LedgerMixin"]


class LedgerMixin:
    """The ledger of the tenant a :class:`~service.store.sqlite.SqliteStore` acts in."""

    def _bind(self, incarnation: str, link: LinkCheck) -> str:
        """Bind a current link to its first device; return the device it is bound to.

        Of two first uses at once exactly one binds: the insert is ignored
        when a binding exists, and both read back the one that was kept.
        """
        with self._write() as conn:
            conn.execute(
                "INSERT INTO bindings (tenant, link_id, device, keep_until) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (tenant, link_id) DO NOTHING",
                (incarnation, link.link_id, link.device, link.expires_at + LEDGER_GRACE_SECONDS),
            )
            row = conn.execute(
                "SELECT device FROM bindings WHERE tenant = ? AND link_id = ?",
                (incarnation, link.link_id),
            ).fetchone()
        return row[0]

    def record_links(self, links: Sequence[LinkRecord], incarnation: str, now: datetime) -> None:
        rows = [
            (
                incarnation,
                link.link_id,
                link.user_id,
                link.target,
                link.reference,
                link.issued_by,
                _ts(link.issued_at),
                _ts(link.expires_at),
                link.epoch,
                link.user_epoch,
                link.epoch_id,
                int(link.issued_at.timestamp() // 3600),
            )
            for link in links
        ]
        # On the log's connection (no fsync per commit), like the sign-in log: a
        # power cut may lose the newest entries of the ledger, never a revocation.
        with self._write(log=True) as conn:
            if self._incarnation(conn) != incarnation:
                return  # the tenant was deleted (and made again) since the read
            conn.executemany(_INSERT_LINK, rows)
            # What outlived its link goes a little at a time with each issue,
            # so the ledger stays bounded even where nobody ever clicks.
            cutoff = now.timestamp()
            budget = len(rows) + LEDGER_CLEANUP_EXTRA
            conn.execute(_CLEANUPS[0], (cutoff - LEDGER_GRACE_SECONDS, budget))
            conn.execute(_CLEANUPS[1], (cutoff, budget))
            conn.execute(_CLEANUPS[2], (cutoff, budget))

    def record_link_chunks(
        self, chunks: Iterable[Sequence[LinkRecord]], incarnation: str, now: datetime
    ) -> None:
        # One transaction for the batch: SQLite works in this thread, nothing
        # to overlap with the signing. No token issued (plain links): no write.
        links = [link for chunk in chunks for link in chunk]
        if links:
            self.record_links(links, incarnation, now)

    @staticmethod
    def _link(row: Sequence[Any]) -> LinkRecord:
        (link_id, user_id, target, reference, issued_by, issued_at, expires_at, epoch, user_epoch,
         uses, first, last, ip, status, bound) = row  # fmt: skip
        return LinkRecord(
            link_id,
            user_id,
            target,
            reference,
            issued_by,
            from_seconds(issued_at),
            from_seconds(expires_at),
            epoch,
            user_epoch,
            status,
            uses,
            None if first is None else from_seconds(first),
            None if last is None else from_seconds(last),
            ip,
            bool(bound),
        )

    def links(
        self,
        *,
        user_id: str | None,
        status: str | None,
        after: str | None,
        limit: int,
        expired_before: float,
    ) -> tuple[list[LinkRecord], str | None]:
        params: dict[str, Any] = {
            "tenant": self.tenant_id,
            "expired": expired_before,
            "user": user_id,
            "status": status,
            "limit": limit + 1,
        }
        where = ""
        with self._guard:
            conn = self._conn()
            incarnation = self._incarnation(conn)
            params["inc"] = incarnation
            if after is not None:
                row = conn.execute(
                    "SELECT issued_at FROM links WHERE tenant = ? AND link_id = ?",
                    (incarnation, after),
                ).fetchone()
                if row is None:
                    raise LinkNotFoundError(after)
                params.update(at=row[0], after=after)
                where += " AND (l.issued_at, l.link_id) < (:at, :after)"
            select = _LINK_SELECT if user_id is None else _USER_LINK_SELECT
            query = f"{select}{where} ORDER BY l.issued_at DESC, l.link_id DESC"
            if status is not None:
                # Only fixed SQL is formatted in; every value is a parameter.
                query = f"SELECT * FROM ({query}) WHERE status = :status"  # noqa: S608
            rows = conn.execute(query + " LIMIT :limit", params).fetchall()
        page = [self._link(row) for row in rows[:limit]]
        return page, (page[-1].link_id if len(rows) > limit else None)

    def link(self, link_id: str, *, expired_before: float) -> LinkRecord | None:
        params = {"tenant": self.tenant_id, "expired": expired_before, "link": link_id}
        with self._guard:
            conn = self._conn()
            self._incarnation(conn)  # TenantNotFoundError first
            row = conn.execute(_LINK_SELECT + " AND l.link_id = :link", params).fetchone()
        return None if row is None else self._link(row)

    def revoke_link(
        self,
        link_id: str,
        *,
        ledger: bool,
        max_ttl: int,
        leeway: int,
        actor: str,
        reason: str,
        now: datetime,
    ) -> LinkRevocation:
        at = _ts(now)
        with self._write() as conn:
            incarnation = self._incarnation(conn)
            detail: dict[str, Any] = {"link_id": link_id, "reason": reason}
            if ledger:
                row = conn.execute(
                    "SELECT expires_at, user_id FROM links WHERE tenant = ? AND link_id = ?",
                    (incarnation, link_id),
                ).fetchone()
                if row is None:
                    raise LinkNotFoundError(link_id)
                keep_until = row[0] + leeway
                if keep_until < at:
                    return LinkRevocation(link_id, now, expired=True)  # nothing to store
                detail["user_id"] = row[1]
            else:
                keep_until = at + max_ttl + leeway
            conn.execute(
                "INSERT INTO voided_links (tenant, link_id, revoked_at, keep_until)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (tenant, link_id) DO UPDATE"
                " SET revoked_at = excluded.revoked_at,"
                " keep_until = MAX(keep_until, excluded.keep_until)",
                (incarnation, link_id, at, keep_until),
            )
            self._audit(conn, incarnation, now, actor, "link.revoke", detail)
        return LinkRevocation(link_id, now)
