"""What a verification and an issue read from the embedded store, in one trip each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service.errors import StoreDataError, TenantNotFoundError
from service.store import IssueState, LinkCheck, TokenState
from service.store.sqlite.schema import _TOKEN_STATE, _TOKEN_STATE_AND_KEY

__all__ = ["StateMixin"]


class StateMixin:
    """The reads of :class:`~service.store.sqlite.SqliteStore` that a click and an issue make."""

    def token_state(
        self, user_id: str, key_digest: bytes | None = None, link: LinkCheck | None = None
    ) -> TokenState:
        params: dict[str, Any] = {
            "user": user_id,
            "tenant": self.tenant_id,
            "link": None if link is None else link.link_id,
        }
        with self._guard:
            if key_digest is None:
                row = self._conn().execute(_TOKEN_STATE, params).fetchone()
            else:
                params["digest"] = key_digest
                row = self._conn().execute(_TOKEN_STATE_AND_KEY, params).fetchone()
        if row is None:
            raise TenantNotFoundError(self.tenant_id)
        incarnation, epoch, user_epoch, bind, voided, bound, epoch_id = row[:7]
        if (
            type(incarnation) is not str
            or type(epoch) is not int
            or type(user_epoch) is not int
            or type(epoch_id) is not int
        ):
            raise StoreDataError(f"SQLite store {self.path} has epochs of the wrong shape")
        key = self._key(row[7:]) if len(row) > 7 and row[7] is not None else None
        if (
            link is not None
            and bind
            and bound is None
            and link.device is not None
            and not voided
            and (link.incarnation, link.epoch, link.user_epoch, link.epoch_id)
            == (incarnation, epoch, user_epoch, epoch_id)
        ):
            bound = self._bind(incarnation, link)
        return TokenState(
            incarnation, epoch, user_epoch, key, bool(voided), bool(bind), bound, epoch_id=epoch_id
        )

    def issue_state(self, user_ids: Sequence[str]) -> IssueState:
        unique = list(dict.fromkeys(user_ids))
        with self._guard:
            conn = self._conn()
            # One read transaction so settings and epochs are one snapshot.
            conn.execute("BEGIN")
            try:
                meta = self._meta()
                (epoch_id,) = conn.execute(
                    "SELECT epoch_id FROM tenants WHERE tenant_id = ?", (self.tenant_id,)
                ).fetchone()
                epochs: dict[str, int] = {}
                for start in range(0, len(unique), 900):
                    chunk = unique[start : start + 900]
                    # Only placeholders are joined into the statement, never a value.
                    marks = ",".join("?" * len(chunk))
                    for user_id, epoch in conn.execute(
                        "SELECT user_id, epoch FROM user_epochs"  # noqa: S608
                        f" WHERE tenant = ? AND user_id IN ({marks})",
                        (meta[0], *chunk),
                    ):
                        epochs[user_id] = epoch
            finally:
                conn.execute("COMMIT")
        incarnation, epoch, _, _, _, portal, _, settings = meta
        return IssueState(
            incarnation=incarnation,
            epoch=epoch,
            settings=settings,
            user_epochs={u: epochs.get(u, 0) for u in unique},
            portal_base_url=portal,
            epoch_id=epoch_id,
        )
