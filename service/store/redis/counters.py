"""The rate limiter's counters: one key a window, expiring with it."""

from __future__ import annotations

from service.clock import utcnow
from service.errors import StoreDataError


class _Counters:
    """:class:`~service.store.redis.RedisStore`'s rate-limit counters (a mixin of it)."""

    def _counter(self, key: str) -> str:
        return f"{self._counter_prefix}{{{key}}}"

    def counter_incr(self, key: str, *, expiry_seconds: int, amount: int = 1) -> int:
        """Add ``amount`` to ``key``'s window (a new one expires in ``expiry_seconds``)."""
        with self._guard:
            value = self._counter_script([self._counter(key)], [amount, expiry_seconds])
        return int(value)

    def counter_get(self, key: str) -> int:
        """Return ``key``'s count in its current window (0 when none)."""
        with self._guard:
            value = self.redis.get(self._counter(key))
        try:
            return int(value or 0)
        except ValueError as e:
            raise StoreDataError(f"rate-limit counter {key!r} is not a number") from e

    def counter_expiry(self, key: str) -> float:
        """Return when ``key``'s window ends, in seconds since the Unix epoch."""
        with self._guard:
            ttl_ms = self.redis.pttl(self._counter(key))
        return utcnow().timestamp() + max(int(ttl_ms), 0) / 1000

    def counter_clear(self, key: str) -> None:
        """Forget ``key``'s window."""
        with self._guard:
            self.redis.delete(self._counter(key))
