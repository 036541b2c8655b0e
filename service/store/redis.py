"""The shared store on Redis, for several hosts.

Every key starts with ``key_prefix`` (``autologin:`` by default), so several
deployments can share one Redis::

    {p}meta            hash: incarnation, epoch, changed_at, changed_by, reason,
                       auto_login_enabled (0/1), token_ttl_seconds
    {p}user_epochs     hash: user id -> epoch (absent: 0); O(1) with millions of users
    {p}seq             counter numbering log entries in the order they were written
    {p}audit           sorted set by number: JSON [seq, at, [actor, action, detail]]
    {p}signins         sorted set by number: JSON [seq, at, [user, outcome, ip, ua]]
    {p}signins:<user>  the same members, one user's only (the newest MAX_USER_SIGNINS)
    {p}audit_at, {p}signins_at   sorted sets seq -> at, so prune finds old entries
    {p}rl:<key>        rate-limit counters, expiring with their window

Both logs read newest-written first, as the SQLite store does, and keep at
most ``max_log_entries`` entries besides what ``prune`` drops by time.

Every change is one Lua script (``redis_scripts.py``), which Redis runs with
nothing in between: two admins bumping at once on two hosts get two epochs,
never one, and the audit event is written in the same step. (Redis does not roll back a script
that fails half-way, say on a foreign key of the wrong type; the epoch is
written first, so such a failure can lose an audit event, never a bump.) A
lost bump brings revoked tokens back to life; that is also why production
Redis needs ``appendonly yes`` (and ``appendfsync always`` for power cuts).

When ``{p}meta`` is missing (Redis lost its data, or FLUSHALL), the next call
re-creates the store with a new random incarnation, in one script, so racing
workers agree on one, and tokens of the old incarnation are refused.
Standalone Redis only: prune touches per-user keys it derives itself.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from redis import Redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.connection import ConnectionPool
from redis.exceptions import (
    ClusterDownError,
    ConnectionError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TimeoutError,
    TryAgainError,
)
from redis.retry import Retry

from service.clock import from_seconds, utcnow
from service.errors import ConfigError, StoreDataError, StoreError, StoreUnavailableError
from service.store import AuditEvent, EpochInfo, IssueState, Settings, Signin, TokenState
from service.store import redis_scripts as lua

__all__ = ["RedisStore"]

log = logging.getLogger(__name__)

# Replies that mean "Redis is not serving us now", not "our data has a bad shape".
_UNAVAILABLE = (
    ConnectionError,  # BusyLoadingError (still loading its data) is one too
    TimeoutError,
    ReadOnlyError,
    OutOfMemoryError,
    NoPermissionError,
    TryAgainError,
    ClusterDownError,
)
_UNAVAILABLE_CODES = ("BUSY ", "MISCONF ", "NOREPLICAS ")
_COLUMNS = {"auto_login_enabled": int, "token_ttl_seconds": int}


def _int(value: object) -> int:
    # Stricter than int(): no sign, spaces or underscores in a counter.
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise ValueError(f"not a counter: {value!r}")


class _Guard:
    """Translate redis-py errors into store errors; one instance, no per-call cost."""

    def __init__(self, where: str) -> None:
        self.where = where

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, _t: type[BaseException] | None, e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        if isinstance(e, UnicodeDecodeError):
            raise StoreDataError(f"Redis at {self.where}: undecodable bytes: {e}") from e
        if isinstance(e, OSError):
            # redis-py wraps socket errors in ConnectionError nearly everywhere;
            # one that slips through is the same failure: fail closed, 503.
            raise StoreUnavailableError(f"Redis at {self.where}: {e}") from e
        if not isinstance(e, RedisError):
            return
        error: StoreError
        if isinstance(e, ResponseError) and not (
            isinstance(e, _UNAVAILABLE) or str(e).startswith(_UNAVAILABLE_CODES)
        ):
            error = StoreDataError(f"Redis at {self.where}: {e}")  # WRONGTYPE, not an integer
        else:
            error = StoreUnavailableError(f"Redis at {self.where}: {e}")
        raise error from e


def _bulk(text: str) -> bytes:
    data = text.encode()
    return b"$%d\r\n%b\r\n" % (len(data), data)


class _ClickConnection:
    """The connection a process keeps for the click's epoch read.

    redis-py's way for one command (pool checkout and release, packing,
    its event hooks) costs this machine more CPU than the round trip
    itself. The click's read is always the same script on the same two
    keys, so its request is packed once, and this connection skips the
    pool. It is used only by one thread at a time and only in the process
    that made it; a caller that finds it busy takes the pool's way.
    """

    __slots__ = ("pid", "lock", "connection", "reused")

    def __init__(self, pool: ConnectionPool) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.connection = pool.make_connection()  # connects on first use
        #: True once a request went through: a failure may then mean that
        #: Redis closed the connection meanwhile (a restart), not that it is down.
        self.reused = False

    def call(self, request: bytes) -> Any:
        """Send one packed request and return its reply (a redis-py error is raised)."""
        while True:
            reused, self.reused = self.reused, False
            try:
                self.connection.send_packed_command([request], check_health=False)
                reply = self.connection.read_response()
            except ResponseError:
                self.reused = True  # an error reply (NOSCRIPT, ...): the connection is fine
                raise
            except ConnectionError:
                self.connection.disconnect()
                if reused:
                    continue  # once more, on a new connection; a read is safe to repeat
                raise
            except BaseException:
                # A timeout, or an interruption between request and reply: a
                # reply left on the connection would answer the next request.
                self.connection.disconnect()
                raise
            self.reused = True
            return reply


class RedisStore:
    """The :class:`~service.store.Store` on one (standalone) Redis."""

    def __init__(
        self,
        client: Redis,
        *,
        defaults: Settings,
        key_prefix: str = "autologin:",
        where: str = "redis",
        max_log_entries: int = 1_000_000,
    ) -> None:
        #: The redis-py client; its pool resets itself in a forked child.
        self.redis = client
        self.defaults = defaults
        self.key_prefix = key_prefix
        self._guard = _Guard(where)
        p = key_prefix
        self._meta_key, self._user_epochs = f"{p}meta", f"{p}user_epochs"
        self._audit, self._signins, self._seq = f"{p}audit", f"{p}signins", f"{p}seq"
        self._audit_keys = [self._meta_key, self._seq, self._audit, f"{p}audit_at"]
        self._token_keys = [self._meta_key, self._user_epochs]
        self._revoke_keys = [*self._audit_keys, self._user_epochs]
        self._user_signins = f"{p}signins:"  # + user id

        def script(text: str) -> Script:
            text = text.replace("MAX_LOG", str(max_log_entries))
            return client.register_script(text.replace("MAX_USER", str(lua.MAX_USER_SIGNINS)))

        self._create_script = script(lua.AUDIT + lua.CREATE)
        self._bump_script = script(lua.AUDIT + lua.BUMP)
        self._revoke_script = script(lua.AUDIT + lua.REVOKE)
        self._settings_script = script(lua.AUDIT + lua.SETTINGS)
        self._token_script = script(lua.TOKEN_STATE)
        self._issue_script = script(lua.ISSUE_STATE)
        self._signins_script = script(lua.SIGNINS)
        self._prune_script = script(lua.PRUNE)
        self._counter_script = script(lua.COUNTER_INCR)
        self._counter_prefix = f"{p}rl:"
        # EVALSHA <sha> 2 meta user_epochs <user id>: all but the user id, packed once.
        self._token_request = b"*6\r\n" + b"".join(
            map(_bulk, ("EVALSHA", self._token_script.sha, "2", *self._token_keys))
        )
        self._click = _ClickConnection(client.connection_pool)
        with self._guard:
            if self._create():
                log.info("created a new store under %r in Redis at %s", p, where)
        self._meta()  # check the shape of an existing store now, not on the first click

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        defaults: Settings,
        redis_socket_timeout_seconds: float = 0.5,
        redis_connect_timeout_seconds: float = 0.5,
        key_prefix: str = "autologin:",
        redis_max_log_entries: int = 1_000_000,
        **_ignored: Any,
    ) -> RedisStore:
        """Open (and on first use create) the store at ``redis://[:password@]host:port/db``."""
        parts = urlsplit(url)
        secret = parts.password

        def redact(text: str) -> str:
            if not secret:
                return text
            return text.replace(quote(secret, safe=""), "***").replace(secret, "***")

        # redis-py lets query parameters override the keyword arguments below:
        # only the TLS ones may come from the URL, and the database number of a
        # unix:// URL, which has no other place for it.
        unix = parts.scheme == "unix"
        for name, _ in parse_qsl(parts.query, keep_blank_values=True):
            if not (name.startswith("ssl_") or (unix and name == "db")):
                raise ConfigError(
                    f"STORE_URL sets {name!r}; only ssl_* parameters (and db in a unix:// URL) "
                    "may be in the URL (timeouts: REDIS_SOCKET_TIMEOUT_SECONDS, "
                    "REDIS_CONNECT_TIMEOUT_SECONDS)"
                )
        try:
            client = Redis.from_url(
                url,
                socket_timeout=redis_socket_timeout_seconds,
                socket_connect_timeout=redis_connect_timeout_seconds,
                # No retries: a dead Redis answers within one timeout, and a write
                # whose reply was lost is not run twice. A connection that Redis
                # closed (restart) is replaced when it leaves the pool, so no
                # health-check PING is needed either: it would cost a round trip.
                retry=Retry(NoBackoff(), 0),
                health_check_interval=0,
                # RESP2 works with every Redis, and keeps redis-py's RESP3-only
                # "maintenance notifications" from relaxing our timeouts to 10 s.
                protocol=2,
                decode_responses=True,
            )
        except ValueError as e:  # from None: the parse error may quote the URL
            raise ConfigError(
                f"STORE_URL {redact(url)!r} is not a valid Redis URL ({redact(str(e))}); "
                "write redis://[:password@]host:port/db"
            ) from None
        kw = client.connection_pool.connection_kwargs
        where = kw.get("path") or f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}"
        try:
            return cls(
                client,
                defaults=defaults,
                key_prefix=key_prefix,
                where=where,
                max_log_entries=redis_max_log_entries,
            )
        except StoreUnavailableError as e:
            client.close()
            reason = redact(str(e.__cause__ or e))
            raise ConfigError(f"STORE_URL: cannot reach Redis at {where}: {reason}") from e
        except StoreDataError as e:
            client.close()
            raise ConfigError(
                f"STORE_URL: Redis at {where} holds keys under {key_prefix!r} that are not "
                f"a store of this service: {redact(str(e))}"
            ) from e

    # -- creation and reads ---------------------------------------------

    def _create(self) -> bool:
        now = utcnow().timestamp()
        d = self.defaults
        args = [secrets.token_urlsafe(9), now, int(d.auto_login_enabled), d.token_ttl_seconds]
        return bool(self._create_script([*self._audit_keys, self._user_epochs], args))

    def _recreate(self) -> None:
        # The meta hash is gone after start: the data was lost (a restart
        # without persistence, FLUSHALL). A new incarnation voids every token.
        if self._create():
            log.warning("Redis store %r was lost: new incarnation", self.key_prefix)

    def _run(self, script: Script, keys: list[str], args: Sequence[Any]) -> Any:
        # A script answers nil when the meta hash is gone: the store was lost.
        with self._guard:
            result = script(keys, args)
            if result is None:
                self._recreate()
                result = script(keys, args)
        if result is None:
            raise StoreDataError(f"{self._meta_key} vanished right after it was created")
        return result

    def _meta(self) -> tuple[str, int, datetime, str, str, bool, int]:
        with self._guard:
            raw = self.redis.hgetall(self._meta_key)
            if not raw:
                self._recreate()
                raw = self.redis.hgetall(self._meta_key)
        return self._parse_meta(raw)

    def _parse_meta(self, raw: Mapping[str, str]) -> tuple[str, int, datetime, str, str, bool, int]:
        try:
            return (
                raw["incarnation"],
                _int(raw["epoch"]),
                from_seconds(float(raw["changed_at"])),
                raw["changed_by"],
                raw["reason"],
                bool(_int(raw["auto_login_enabled"])),
                _int(raw["token_ttl_seconds"]),
            )
        except (KeyError, ValueError, OverflowError) as e:
            raise StoreDataError(f"{self._meta_key} has the wrong shape: {e!r}") from e

    def token_state(self, user_id: str) -> TokenState:
        """Read the incarnation, the global epoch and ``user_id``'s epoch at once."""
        reply = None
        click = self._click
        if click.pid != os.getpid():  # forked: the parent's connection is not ours
            click = self._click = _ClickConnection(self.redis.connection_pool)
        if click.lock.acquire(blocking=False):
            try:
                with self._guard:
                    try:
                        reply = click.call(self._token_request + _bulk(user_id))
                    except NoScriptError:
                        pass  # Redis restarted or flushed its scripts: the pool's way loads it
            finally:
                click.lock.release()
        if reply is None:  # busy, no script, or the store was lost: the pool's way handles each
            reply = self._run(self._token_script, self._token_keys, (user_id,))
        incarnation, epoch, user_epoch = reply
        try:
            if incarnation is None:
                raise ValueError("no incarnation")
            user_epoch = 0 if user_epoch is None else _int(user_epoch)
            return TokenState(incarnation, _int(epoch), user_epoch)
        except ValueError as e:
            raise StoreDataError(f"{self.key_prefix} epochs have the wrong shape: {e}") from e

    def issue_state(self, user_ids: Sequence[str]) -> IssueState:
        """Read everything issuing links for ``user_ids`` needs at once."""
        unique = list(dict.fromkeys(user_ids))
        flat, epochs = self._run(self._issue_script, self._token_keys, unique)
        meta = dict(zip(flat[::2], flat[1::2], strict=True))
        incarnation, epoch, _, _, _, enabled, ttl = self._parse_meta(meta)
        try:
            users = {u: 0 if e is None else _int(e) for u, e in zip(unique, epochs, strict=True)}
        except ValueError as e:
            raise StoreDataError(f"{self._user_epochs} has the wrong shape: {e}") from e
        return IssueState(incarnation, epoch, Settings(enabled, ttl), users)

    def settings(self) -> Settings:
        """Read the current settings."""
        meta = self._meta()
        return Settings(meta[5], meta[6])

    def epoch(self) -> EpochInfo:
        """Read the global epoch and its last change."""
        _, epoch, changed_at, changed_by, reason, _, _ = self._meta()
        return EpochInfo(epoch, changed_at, changed_by, reason)

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
        key = self._signins if user_id is None else self._user_signins + user_id
        rows = self._log(key, limit)
        try:
            signins = [Signin(from_seconds(at), u, o, ip, ua) for _, at, (u, o, ip, ua) in rows]
        except (TypeError, ValueError, OverflowError) as e:
            raise StoreDataError(f"{key} holds an entry of the wrong shape: {e}") from e
        # Newest click first: workers write their buffered entries in batches,
        # so the order written can differ from the order clicked by a few ms.
        # (A stable sort keeps the order written for entries of the same time.)
        return sorted(signins, key=lambda s: s.at, reverse=True)

    def audit_events(self, *, limit: int) -> list[AuditEvent]:
        """Return up to ``limit`` audit events, newest first."""
        rows = self._log(self._audit, limit)
        try:
            return [AuditEvent(from_seconds(at), a, act, d) for _, at, (a, act, d) in rows]
        except (TypeError, ValueError, OverflowError) as e:
            raise StoreDataError(f"{self._audit} holds an entry of the wrong shape: {e}") from e

    def ping(self) -> None:
        """Return if the store answers with a well-formed meta hash, else raise."""
        self._meta()

    # -- writes -----------------------------------------------------------

    def update_settings(self, changes: Mapping[str, Any], *, actor: str, now: datetime) -> Settings:
        """Apply validated ``changes`` atomically, audit them, return the new settings."""
        pairs = [x for name, value in changes.items() for x in (name, _COLUMNS[name](value))]
        detail = json.dumps(dict(changes), sort_keys=True)
        args = [now.timestamp(), actor, detail, *pairs]
        enabled, ttl = self._run(self._settings_script, self._audit_keys, args)
        try:
            return Settings(bool(_int(enabled)), _int(ttl))
        except ValueError as e:
            raise StoreDataError(f"{self._meta_key} has the wrong shape: {e}") from e

    def bump_epoch(self, *, actor: str, reason: str, now: datetime) -> EpochInfo:
        """Raise the global epoch by one atomically, audit it, return the new one."""
        at = now.timestamp()
        epoch = self._run(self._bump_script, self._audit_keys, (at, actor, reason))
        return EpochInfo(int(epoch), from_seconds(at), actor, reason)

    def revoke_user(self, user_id: str, *, actor: str, reason: str, now: datetime) -> int:
        """Raise ``user_id``'s epoch by one atomically, audit it, return the new one."""
        args = (user_id, now.timestamp(), actor, reason)
        return int(self._run(self._revoke_script, self._revoke_keys, args))

    def record_signins(self, signins: Sequence[Signin]) -> None:
        """Append entries to the sign-in log: one round trip per ``SIGNIN_BATCH`` entries."""
        keys = [self._seq, self._signins, f"{self._signins}_at"]
        args: list[Any] = []
        for s in signins:
            entry = json.dumps([s.user_id, s.outcome, s.ip, s.user_agent])
            args += (s.at.timestamp(), entry, s.user_id)
        step = 3 * lua.SIGNIN_BATCH
        with self._guard:
            for i in range(0, len(args), step):
                self._signins_script(keys, [self._user_signins, *args[i : i + step]])

    def prune(self, *, before: datetime) -> None:
        """Drop audit and sign-in entries older than ``before``."""
        # In batches, so that one script never blocks Redis for long.
        before_ts = f"({before.timestamp()!r}"
        with self._guard:
            for log_key, user_prefix in ((self._audit, ""), (self._signins, self._user_signins)):
                keys, args = [log_key, f"{log_key}_at"], [before_ts, lua.PRUNE_BATCH, user_prefix]
                while self._prune_script(keys, args) == lua.PRUNE_BATCH:
                    pass

    def counter_incr(self, key: str, *, expiry_seconds: int, amount: int = 1) -> int:
        """Add ``amount`` to ``key``'s window (a new one expires in ``expiry_seconds``)."""
        with self._guard:
            value = self._counter_script([self._counter_prefix + key], [amount, expiry_seconds])
        return int(value)

    def counter_get(self, key: str) -> int:
        """Return ``key``'s count in its current window (0 when none)."""
        with self._guard:
            value = self.redis.get(self._counter_prefix + key)
        try:
            return int(value or 0)
        except ValueError as e:
            raise StoreDataError(f"rate-limit counter {key!r} is not a number") from e

    def counter_expiry(self, key: str) -> float:
        """Return when ``key``'s window ends, in seconds since the Unix epoch."""
        with self._guard:
            ttl_ms = self.redis.pttl(self._counter_prefix + key)
        return utcnow().timestamp() + max(int(ttl_ms), 0) / 1000

    def counter_clear(self, key: str) -> None:
        """Forget ``key``'s window."""
        with self._guard:
            self.redis.delete(self._counter_prefix + key)

    def close(self) -> None:
        """Release connections held by this process."""
        if self._click.pid == os.getpid():
            self._click.connection.disconnect()
        self.redis.close()
