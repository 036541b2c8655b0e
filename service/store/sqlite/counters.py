"""The embedded store's rate-limit counters: one row a key, a window each."""

from __future__ import annotations

from service.clock import utcnow
from service.store.sqlite.schema import _COUNTER_INCR

__all__ = ["CountersMixin"]


class CountersMixin:
    """The counters of a :class:`~service.store.sqlite.SqliteStore`, shared by its tenants."""

    def counter_incr(self, key: str, *, expiry_seconds: int, amount: int = 1) -> int:
        now = utcnow().timestamp()
        with self._guard:
            row = (
                self._log_conn()
                .execute(_COUNTER_INCR, (key, amount, now, expiry_seconds))
                .fetchone()
            )
        return int(row[0])

    def _counter(self, key: str) -> tuple[int, float]:
        now = utcnow().timestamp()
        with self._guard:
            row = (
                self._conn()
                .execute(
                    "SELECT value, expires_at FROM counters WHERE key = ? AND expires_at > ?",
                    (key, now),
                )
                .fetchone()
            )
        return (int(row[0]), float(row[1])) if row else (0, now)

    def counter_get(self, key: str) -> int:
        return self._counter(key)[0]

    def counter_expiry(self, key: str) -> float:
        return self._counter(key)[1]

    def counter_clear(self, key: str) -> None:
        with self._guard:
            self._conn().execute("DELETE FROM counters WHERE key = ?", (key,))
