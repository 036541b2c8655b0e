"""Rate limits counted in the store, so every worker and host counts together.

The bookkeeping is the ``limits`` library (the engine of Flask-Limiter) with
a fixed window; its storage is :class:`StoreStorage`, a ``limits`` backend
over the service's own store (SQLite or Redis), so a limit holds across
workers and hosts without a second database. Flask-Limiter's own request
hooks are not used: they would read a counter on every request, and a
successful verification must cost exactly one store read.

Three limits:

- link requests per issuer key (``POST /v1/links`` and its batch);
- failed verifications per clicking client (``client.ip``) and per portal
  key: counted only when a verification fails, and checked only then, so a
  successful sign-in costs no extra store round trip. Over the limit, a
  failure answers ``429`` instead of its ``401`` code, which also stops an
  attacker from learning why a guessed token failed;
- console sign-in attempts per address (see :func:`hit`).
"""

from __future__ import annotations

import math
from typing import Any

from flask import Flask, current_app
from limits import RateLimitItem, parse
from limits.storage import Storage
from limits.strategies import FixedWindowRateLimiter

from service.clock import utcnow
from service.errors import ApiError, ConfigError, StoreError

__all__ = ["StoreStorage", "hit", "init_app", "parse_limit"]


class StoreStorage(Storage):
    """A ``limits`` storage over a :class:`~service.store.Store`."""

    STORAGE_SCHEME = ["autologin-store"]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: Any):
        super().__init__(uri, wrap_exceptions)
        self.store = options["store"]

    @property
    def base_exceptions(self) -> type[Exception]:
        return StoreError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self.store.counter_incr(key, expiry_seconds=int(expiry), amount=amount)

    def get(self, key: str) -> int:
        return self.store.counter_get(key)

    def get_expiry(self, key: str) -> float:
        return self.store.counter_expiry(key)

    def check(self) -> bool:
        try:
            self.store.ping()
        except StoreError:
            return False
        return True

    def reset(self) -> int | None:
        return None  # never wipe every counter of a shared store

    def clear(self, key: str) -> None:
        self.store.counter_clear(key)


def parse_limit(value: Any, setting: str) -> RateLimitItem:
    """Parse ``"30 per minute"``; raise ``ConfigError`` naming ``setting``."""
    try:
        return parse(str(value))
    except ValueError as e:
        raise ConfigError(f"{setting} is {value!r}; write it like '30 per minute'") from e


def hit(setting: str, *identifiers: str) -> None:
    """Count one event against the limit named by ``setting``; raise 429 when over."""
    limiter: FixedWindowRateLimiter = current_app.extensions["rate_limiter"]
    if limiter is None:
        return
    item = current_app.extensions["rate_limits"][setting]
    if limiter.hit(item, setting, *identifiers):
        return
    # Only the window's end is needed: one read, not get_window_stats()'s two.
    reset = limiter.storage.get_expiry(item.key_for(setting, *identifiers))
    retry_after = max(1, math.ceil(reset - utcnow().timestamp()))
    raise ApiError(
        429,
        "rate_limited",
        f"too many requests; try again in {retry_after} seconds",
        headers={"Retry-After": str(retry_after)},
    )


def init_app(app: Flask, store: Any) -> None:
    """Prepare the limits from the ``RATE_LIMIT_*`` settings over ``store``."""
    limits = {
        name: parse_limit(app.config.get(name), name)
        for name in (
            "RATE_LIMIT_LINKS_PER_KEY",
            "RATE_LIMIT_VERIFY_FAILURES_PER_CLIENT",
            "RATE_LIMIT_VERIFY_FAILURES_PER_KEY",
            "RATE_LIMIT_CONSOLE_SIGNIN",
        )
    }
    enabled = app.config.get("RATE_LIMITS_ENABLED", True)
    if not isinstance(enabled, bool):
        raise ConfigError("RATE_LIMITS_ENABLED must be true or false")
    app.extensions["rate_limits"] = limits
    app.extensions["rate_limiter"] = (
        FixedWindowRateLimiter(StoreStorage(store=store)) if enabled else None
    )
