"""The logs: a tenant's audit and sign-ins, the platform's audit, and pruning them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from service.clock import from_seconds, utcnow
from service.errors import StoreDataError
from service.store import AuditEvent, Signin
from service.store import redis_scripts as lua
from service.store.redis.layout import _CLEANUP_NAMES, _SIGNIN_NAMES
from service.store.redis.ledger import _ledger_cuts


def _detail(**fields: Any) -> str:
    """Return an audit event's detail as the logs keep it (JSON, keys sorted)."""
    return json.dumps(fields, sort_keys=True)


class _Logs:
    """:class:`~service.store.redis.RedisStore`'s logs (a mixin of it)."""

    def _log(self, key: str, limit: int) -> list[Any]:
        if limit < 1:
            return []
        with self._guard:
            members = self.redis.zrevrange(key, 0, limit - 1)
        try:
            return [json.loads(member) for member in members]
        except ValueError as e:
            raise StoreDataError(f"{key} holds an unreadable entry: {e}") from e

    def signins(self, *, user_id: str | None, limit: int) -> list[Signin]:
        """Return up to ``limit`` sign-ins, newest first, of one user or all."""
        data = self._data()
        key = f"{data}signins" if user_id is None else f"{data}signins:{user_id}"
        rows = self._log(key, limit)
        try:
            # The sets are scored by the click's own time: newest click first,
            # whichever worker's buffer reached Redis first; clicks of the same
            # instant by the order written (a set orders equal scores by text).
            rows.sort(key=lambda row: (row[1], row[0]), reverse=True)
            return [
                Signin(from_seconds(at), u, o, ip, ua, link[0] if link else None)
                for _, at, (u, o, ip, ua, *link) in rows
            ]
        except (TypeError, ValueError, OverflowError) as e:
            raise StoreDataError(f"{key} holds an entry of the wrong shape: {e}") from e

    def _events(self, key: str, limit: int) -> list[AuditEvent]:
        rows = self._log(key, limit)
        try:
            return [AuditEvent(from_seconds(at), a, act, d) for _, at, (a, act, d) in rows]
        except (TypeError, ValueError, OverflowError) as e:
            raise StoreDataError(f"{key} holds an entry of the wrong shape: {e}") from e

    def audit_events(self, *, limit: int) -> list[AuditEvent]:
        """Return up to ``limit`` audit events, newest first."""
        return self._events(f"{self._data()}audit", limit)

    def platform_audit_events(self, *, limit: int) -> list[AuditEvent]:
        """Return up to ``limit`` events of the platform's audit log, newest first."""
        return self._events(self._platform_log[1], limit)

    def _platform_audit(self, at: float, actor: str, action: str, detail: str) -> None:
        with self._guard:
            self._platform_audit_script(self._platform_log, [at, actor, action, detail])

    def record_signins(self, signins: Sequence[Signin], incarnation: str | None = None) -> None:
        """Append entries to the sign-in log: one round trip per ``SIGNIN_BATCH`` entries."""
        args: list[Any] = []
        for s in signins:
            entry = json.dumps([s.user_id, s.outcome, s.ip, s.user_agent, s.link_id])
            used = s.link_id if s.outcome == "ok" and s.link_id is not None else ""
            args += (repr(s.at.timestamp()), entry, s.user_id, used, s.ip or "")
        step = 5 * lua.SIGNIN_BATCH
        with self._guard:
            for i in range(0, len(args), step):
                batch = args[i : i + step]
                users = dict.fromkeys(batch[2::5]) if self._cluster else {}
                names = _SIGNIN_NAMES + tuple(f"signins:{user}" for user in users)
                self._script(self._signins_script, names, [incarnation or "", *batch])

    def prune(self, *, before: datetime, tenants: Sequence[str] = ()) -> None:
        """Drop the log entries older than ``before`` of this tenant and of ``tenants``."""
        # In batches, so that one script never blocks Redis for long.
        before_ts = f"({before.timestamp()!r}"
        with self._guard:
            for view in [self, *(self.tenant(t) for t in tenants if t != self.tenant_id)]:
                for name in ("audit", "signins"):
                    args = [before_ts, lua.PRUNE_BATCH, name]
                    names = (name, f"{name}_at")
                    while view._script(self._prune_script, names, args) == lua.PRUNE_BATCH:
                        pass
                args = [*_ledger_cuts(utcnow()), lua.PRUNE_BATCH]
                while True:
                    removed = view._script(self._clean_ledger_script, _CLEANUP_NAMES, args)
                    if removed == lua.STALE or removed < lua.PRUNE_BATCH:
                        break
            # The platform's log belongs to no tenant: every prune prunes it.
            args = [before_ts, lua.PRUNE_BATCH]
            while self._prune_platform_script(self._platform_log[1:], args) == lua.PRUNE_BATCH:
                pass
