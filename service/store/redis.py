"""The shared store on Redis, for several hosts.

Every key starts with ``key_prefix`` (``autologin:`` by default), so several
deployments can share one Redis. Each tenant's keys share one hash tag, the
tenant id in braces, so a Redis Cluster can spread tenants over its shards
and no script touches two tenants::

    {p}{T}:meta           hash: incarnation, epoch, epoch_id (random, new each bump),
                          changed_at, changed_by, reason,
                          auto_login_enabled (0/1), token_ttl_seconds, created_at,
                          portal_base_url ('' for the deployment's)
    {p}{T}:<inc>:user_epochs  hash: user id -> epoch (absent: 0; random at each
                          revocation, never +1), "\\n" -> <inc>
    {p}{T}:<inc>:seq      counter numbering log entries in the order they were written
    {p}{T}:<inc>:audit    sorted set by number: JSON [seq, at, [actor, action, detail]]
    {p}{T}:<inc>:signins  sorted set by click time: JSON [seq, at, [user, outcome, ip, ua, link]]
    {p}{T}:<inc>:signins:<user>   the same members, one user's only
    {p}{T}:<inc>:signin_users     set of the users who have such a set (for deletion)
    {p}{T}:<inc>:audit_at, :signins_at   sorted sets seq -> at, so prune finds old entries
    {p}{T}:<inc>:links    hash: link id -> JSON [user, target, reference, issued_by,
                          issued_at, expires_at, epoch, user_epoch, uses, first_used_at,
                          last_used_at, last_ip]: the ledger
    {p}{T}:<inc>:links_at, :links_exp   sorted sets of link ids by issue and expiry time
    {p}{T}:<inc>:links_by_user  sorted set, score 0, of "<user>\\0<issued_at>\\0<link id>"
                          (issued_at as %017.6f): each user's links by issue time,
                          one lexicographic range per user
    {p}{T}:<inc>:voided, :bound   hashes: link id -> when voided / the device hash it is
                          bound to; :voided_exp, :bound_exp: link id by when it may go
    {p}{T}:<inc>:keys     hash: key name -> JSON {digest, roles, created_at}
    {p}{T}:<inc>:digests  hash: hex SHA-256 digest -> key name; :used name -> last use

Everything but the meta hash is keyed by the tenant's incarnation: deleting
a tenant deletes its meta hash (one step), and the rest is removed later in
bounded steps (:meth:`RedisStore.reap`) without ever touching a tenant made
again under the same id, whose incarnation differs. The few keys of no
tenant have the hash tag ``{_platform}`` (not a tenant id: ids have no
underscore)::

    {p}{_platform}:tenants          sorted set of every tenant id (score 0: by id)
    {p}{_platform}:trash            set of "<tenant> <inc>" whose keys are still to remove
    {p}{_platform}:seq, :audit, :audit_at   the platform's audit log
    {p}{_platform}:info             hash: layout, legacy_before
    {p}rl:{<key>}                   rate-limit counters, expiring with their window

Both logs read newest-written first, as the SQLite store does, and keep at
most ``max_log_entries`` entries besides what ``prune`` drops by time.

Every change is one Lua script (``redis_scripts.py``), which Redis runs with
nothing in between: two admins bumping at once on two hosts get two epochs,
never one, and the audit event is written in the same step. Behind Sentinel
or on a Cluster (``redis_urls.py``), a change that voids or admits tokens
also waits for ``REDIS_MIN_REPLICAS_ACK`` replicas (:meth:`RedisStore._change`). A lost bump
brings revoked tokens back to life; that is also why production Redis needs
``appendonly yes`` (and ``appendfsync always`` for power cuts).

When the default tenant's meta hash is missing (Redis lost its data, or
FLUSHALL), the next call re-creates it with a new random incarnation, in one
script, so racing workers agree on one, and tokens of the old incarnation
are refused. Another tenant whose meta hash is gone does not exist.

A store written by the single-tenant version (``{p}meta``, ``{p}user_epochs``
and the logs, no hash tags) is taken over as the tenant ``default`` on the
first start: its keys are renamed into the layout above, its incarnation and
epochs kept, so its tokens keep verifying.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from json.encoder import encode_basestring_ascii
from types import TracebackType
from typing import Any

from redis import Redis
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.connection import ConnectionPool
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ConnectionError,
    MovedError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TimeoutError,
    TryAgainError,
)

from service.clock import from_seconds, utcnow
from service.errors import (
    ConfigError,
    ConflictError,
    KeyNotFoundError,
    LinkNotFoundError,
    StoreDataError,
    StoreError,
    StoreNotAcknowledgedError,
    StoreUnavailableError,
    TenantNotFoundError,
)
from service.store import (
    DEFAULT_ROLE_MAILBOXES,
    DEFAULT_TENANT,
    LEDGER_CLEANUP_EXTRA,
    LEDGER_GRACE_SECONDS,
    AuditEvent,
    EpochInfo,
    IssueState,
    KeyRecord,
    LinkCheck,
    LinkRecord,
    LinkRevocation,
    Settings,
    Signin,
    TenantInfo,
    TokenState,
    fresh_epoch_value,
)
from service.store import redis_scripts as lua
from service.store.redis_urls import parse_store_url

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
#: Tenants whose incarnation a process remembers (on a Cluster, see _declared).
_MAX_CACHED_INCARNATIONS = 100_000
_UNAVAILABLE_CODES = ("BUSY ", "MISCONF ", "NOREPLICAS ")
#: How each setting is written into the meta hash.
_COLUMNS = {
    "auto_login_enabled": int,
    "token_ttl_seconds": int,
    "bind_to_first_device": int,
    "role_mailboxes": lambda names: json.dumps(list(names)),
}
#: Ledger entries one page call looks at, at most (a filter that matches few
#: answers a short page with ``next`` rather than scan the whole ledger).
_LEDGER_SCAN = 5000


#: The single-tenant version's keys (after the prefix), in TAKE_OVER's order.
_LEGACY_KEYS = ("meta", "user_epochs", "seq", "audit", "audit_at", "signins", "signins_at")
#: A tenant incarnation's keys of fixed name (after ``{p}{T}:<inc>:``).
_TENANT_DATA = (
    "user_epochs",
    "seq",
    "audit",
    "audit_at",
    "signins",
    "signins_at",
    "keys",
    "digests",
    "used",
    "links",
    "links_at",
    "links_exp",
    "links_by_user",
    "link_users",  # a tenant's per-user link sets, before links_by_user (layout 2)
    "voided",
    "voided_exp",
    "bound",
    "bound_exp",
)
#: Entries one reaping command removes (a step of the reaper sends several).
_REAP_PER_COMMAND = 50
#: The collections of a deleted tenant that can grow big, shrunk a slice at a time.
_REAP_HASHES = ("user_epochs", "links", "voided", "bound", "keys", "digests", "used")
_REAP_SORTED_SETS = (
    "audit",
    "audit_at",
    "signins",
    "signins_at",
    "links_at",
    "links_exp",
    "links_by_user",
    "voided_exp",
    "bound_exp",
)
# The data keys each script touches (after ``{p}{T}:<inc>:``), declared on a Cluster.
_STATE = ("user_epochs",)
_AUDITED = ("user_epochs", "seq", "audit", "audit_at")
_KEY_NAMES = ("keys", "digests", "used")
_SIGNIN_NAMES = ("seq", "signins", "signins_at", "signin_users", "links")
_LINK_STATE_NAMES = ("voided", "bound", "bound_exp")
_LEDGER_NAMES = ("links", "links_at", "links_exp", "links_by_user")
_CLEANUP_NAMES = _LEDGER_NAMES + ("voided", "voided_exp", "bound", "bound_exp")
#: A ledger record's JSON: one encoder for every record (json.dumps with
#: separators makes a new one a call).
_COMPACT = json.JSONEncoder(separators=(",", ":"))
#: Whether a script's run is a change to WAIT for: never, always, or as its reply says.
Change = bool | Callable[[Any], bool]


def _detail(**fields: Any) -> str:
    """Return an audit event's detail as the logs keep it (JSON, keys sorted)."""
    return json.dumps(fields, sort_keys=True)


def _glob_escape(text: str) -> str:
    """Return ``text`` as a SCAN MATCH pattern matching itself alone."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


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
        if isinstance(e, OSError | RedisClusterException):
            # redis-py wraps socket errors in ConnectionError nearly everywhere;
            # one that slips through is the same failure: fail closed, 503. So
            # is a Cluster with a slot no shard serves (SlotNotCoveredError).
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


def _ledger_cuts(now: datetime) -> tuple[str, str]:
    """Return the ledger cleanup's cuts: entries past expiry plus a day, the rest past their own."""
    at = now.timestamp()
    return f"({at - LEDGER_GRACE_SECONDS!r}", f"({at!r}"


def _by_user(user_id: str, issued_at: float, link_id: str) -> str:
    """Return a link's member of ``links_by_user``, as the scripts' ``by_user`` makes it."""
    return f"{user_id}\0{issued_at:017.6f}\0{link_id}"


def _bound_here(reply: Any) -> bool:
    """Whether a TOKEN_STATE reply made the link's first binding (a change to WAIT for)."""
    return type(reply) is list and len(reply) > 4 and reply[4] == 2


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


class _Clicks:
    """The click connection of this process, shared by every tenant view of a store.

    A view is made per request (:meth:`RedisStore.tenant`); the connection
    must outlive it, or a forked worker would open one a click.
    """

    __slots__ = ("pool", "click")

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.click = _ClickConnection(pool)

    def get(self) -> _ClickConnection:
        """Return this process's click connection (a forked child makes its own, once)."""
        click = self.click
        if click.pid != os.getpid():  # forked: the parent's connection is not ours
            click = self.click = _ClickConnection(self.pool)
        return click


class _ShardClicks:
    """On a Cluster: a click connection per shard primary, chosen by redis-py's slot map.

    The node comes from the cluster client (``get_node_from_key``) on every
    click, never from an address kept here: when redis-py learns that a slot
    moved or a replica was promoted, the next click goes to the new node. A
    node that no longer serves the slot answers ``MOVED`` or ``ASK`` (a
    replica too), and the click then takes redis-py's own way, which follows
    it and updates the map.
    """

    __slots__ = ("pid", "clicks")

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.clicks: dict[str, _ClickConnection] = {}

    def get(self, node: Any) -> _ClickConnection:
        if self.pid != os.getpid():  # forked: the parent's connections are not ours
            self.pid, self.clicks = os.getpid(), {}
        click = self.clicks.get(node.name)
        if click is None:
            click = self.clicks[node.name] = _ClickConnection(node.redis_connection.connection_pool)
        return click

    def close(self) -> None:
        if self.pid == os.getpid():
            for click in self.clicks.values():
                click.connection.disconnect()


class RedisStore:
    """The :class:`~service.store.Store` on Redis (one, Sentinel's primary or a Cluster).

    :param min_replicas_ack: replicas that must hold a change before it is
        acknowledged (``REDIS_MIN_REPLICAS_ACK``, see :meth:`_change`).
    :param wait_seconds: the longest wait for them (``REDIS_SOCKET_TIMEOUT_SECONDS``).
    """

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        defaults: Settings,
        key_prefix: str = "autologin:",
        where: str = "redis",
        max_log_entries: int = 1_000_000,
        min_replicas_ack: int = 0,
        wait_seconds: float = 0.5,
    ) -> None:
        #: The redis-py client; its pool resets itself in a forked child.
        self.redis = client
        self.defaults = defaults
        self.key_prefix = key_prefix
        self.legacy_before: float | None = None
        self.min_replicas_ack = min_replicas_ack
        # WAIT's own bound: half the socket timeout its reply must arrive in,
        # the other half for the script and the way there and back.
        self._wait_ms = max(1, int(wait_seconds * 500))
        self._where = where
        self._guard = _Guard(where)
        #: A Cluster: every script declares the keys it touches (see redis_scripts).
        self._cluster = isinstance(client, RedisCluster)
        #: tenant id -> incarnation last seen (Cluster only; shared by the views).
        self._incarnations: dict[str, str] = {}
        #: The replicas' shortfall last logged (see ping), shared by the views.
        self._short: list[str | None] = [None]
        p = key_prefix
        platform = f"{p}{{_platform}}:"
        self._tenants_key, self._trash_key, self._info_key = (
            f"{platform}tenants",
            f"{platform}trash",
            f"{platform}info",
        )
        self._platform_log = [f"{platform}seq", f"{platform}audit", f"{platform}audit_at"]

        def script(text: str) -> Script:
            text = text.replace("MAX_LOG", str(max_log_entries))
            return client.register_script(text.replace("MAX_USER", str(lua.MAX_USER_SIGNINS)))

        self._create_script = script(lua.CREATE)
        self._bump_script = script(lua.BUMP)
        self._revoke_script = script(lua.REVOKE)
        self._settings_script = script(lua.SETTINGS)
        self._token_script = script(lua.TOKEN_STATE)
        self._issue_script = script(lua.ISSUE_STATE)
        self._signins_script = script(lua.SIGNINS)
        self._prune_script = script(lua.PRUNE)
        self._prune_platform_script = script(lua.PRUNE_PLATFORM)
        self._counter_script = script(lua.COUNTER_INCR)
        self._update_tenant_script = script(lua.UPDATE_TENANT)
        self._delete_tenant_script = script(lua.DELETE_TENANT)
        self._platform_audit_script = script(lua.PLATFORM_AUDIT)
        self._create_key_script = script(lua.CREATE_KEY)
        self._revoke_key_script = script(lua.REVOKE_KEY)
        self._find_key_script = script(lua.FIND_KEY)
        self._take_over_script = script(lua.TAKE_OVER)
        self._record_links_script = script(lua.RECORD_LINKS)
        self._clean_ledger_script = script(lua.CLEAN_LEDGER)
        self._links_script = script(lua.LINKS_PAGE)
        self._link_script = script(lua.LINK)
        self._revoke_link_script = script(lua.REVOKE_LINK)
        # "{p}rl:{<key>}": each window its own hash tag, so that on a Cluster
        # the counters spread over the shards and no command spans two slots.
        self._counter_prefix = f"{p}rl:"
        # EVALSHA <sha> 1 <meta> <base> and the script's 8 arguments: the
        # first three packed once, the meta key and base per tenant view.
        self._token_head = b"*14\r\n" + b"".join(
            map(_bulk, ("EVALSHA", self._token_script.sha, "1"))
        )
        # The hand-made click connection goes to one fixed address: only on one
        # Redis. Behind Sentinel or on a Cluster the click's read takes
        # redis-py's way, which follows the current primary or the slot's shard.
        plain = not self._cluster and type(client.connection_pool) is ConnectionPool
        self._clicks = _Clicks(client.connection_pool) if plain else None
        self._shard_clicks = _ShardClicks() if self._cluster else None
        self._bind(DEFAULT_TENANT)
        with self._guard:
            self._take_over()
            if self._create():
                log.info("created a new store under %r in Redis at %s", p, where)
            self.redis.zadd(self._tenants_key, {DEFAULT_TENANT: 0})
        self._meta()  # check the shape of an existing store now, not on the first click

    def _bind(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self._base = f"{self.key_prefix}{{{tenant_id}}}:"
        self._meta_key = f"{self._base}meta"
        self._meta_keys = [self._meta_key]
        self._token_request = self._token_head + _bulk(self._meta_key) + _bulk(self._base)

    @property
    def _click(self) -> _ClickConnection:
        """This process's click connection (one Redis only)."""
        if self._clicks is None:
            raise AttributeError("no click connection behind Sentinel or on a Cluster")
        return self._clicks.get()

    def tenant(self, tenant_id: str) -> RedisStore:
        """Return a view of this store acting in ``tenant_id``; it shares the connections."""
        if tenant_id == self.tenant_id:
            return self
        view = copy.copy(self)
        view._bind(tenant_id)
        return view

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
        redis_min_replicas_ack: int = 0,
        **_ignored: Any,
    ) -> RedisStore:
        """Open (and on first use create) the store at a Redis, Sentinel or Cluster URL."""
        target = parse_store_url(
            url,
            socket_timeout=redis_socket_timeout_seconds,
            connect_timeout=redis_connect_timeout_seconds,
        )
        client, where, redact = target.client, target.where, target.redact
        try:
            return cls(
                client,
                defaults=defaults,
                key_prefix=key_prefix,
                where=where,
                max_log_entries=redis_max_log_entries,
                min_replicas_ack=redis_min_replicas_ack,
                wait_seconds=redis_socket_timeout_seconds,
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

    def _take_over(self) -> None:
        """Take a single-tenant store over as ``default``, once; read when it happened."""
        info = self.redis.hgetall(self._info_key)
        if info.get("layout") not in ("2", "3"):
            p = self.key_prefix
            incarnation = self.redis.hget(f"{p}meta", "incarnation")
            if incarnation is not None:
                base = f"{self._base}{incarnation}:"
                # The per-user sign-in sets first, a few at a time (renaming is
                # safe to repeat: a renamed key no longer matches); then the
                # rest in one script, the meta hash last, so a crash part-way
                # leaves a store that the next start takes over again.
                pattern = _glob_escape(f"{p}signins:") + "*"
                for key in self.redis.scan_iter(match=pattern, count=1000):
                    self.redis.sadd(f"{base}signin_users", key[len(p) + len("signins:") :])
                    self.redis.rename(key, base + key[len(p) :])
                old = [f"{p}{name}" for name in _LEGACY_KEYS]
                keys = [*old, self._meta_key, self._info_key, self._tenants_key]
                now = repr(utcnow().timestamp())
                if self._take_over_script(keys, [base, now]):
                    log.warning("took over a single-tenant store as tenant %r", DEFAULT_TENANT)
            else:
                self.redis.hsetnx(self._info_key, "layout", "3")
            info = self.redis.hgetall(self._info_key)
        if info.get("layout") == "2":  # written by the version before links_by_user
            self._index_links_by_user()
            self.redis.hset(self._info_key, "layout", "3")
        try:
            legacy = info.get("legacy_before")
            self.legacy_before = None if legacy is None else float(legacy)
        except ValueError as e:
            raise StoreDataError(f"{self._info_key} has the wrong shape: {e}") from e

    def _index_links_by_user(self) -> None:
        """Layout 2 to 3: move every tenant's per-user link sets into its ``links_by_user``.

        Layout 2 kept a sorted set of link ids per user (``links:<user>``,
        listed in ``link_users``). Each user's set is copied, then deleted and
        struck from the list, so a start that stops part-way leaves only sets
        that the next start moves (copying one twice adds nothing). Once, on
        the first start of this version: bounded by the ledgers' size.
        """
        pattern = _glob_escape(self.key_prefix) + "{*}:*:link_users"
        moved = 0
        for users_key in self.redis.scan_iter(match=pattern, count=1000):
            data = users_key[: -len("link_users")]
            for user in self.redis.sscan_iter(users_key, count=500):
                key = f"{data}links:{user}"
                pairs = self.redis.zrange(key, 0, -1, withscores=True)
                if pairs:
                    members = {_by_user(user, at, link_id): 0 for link_id, at in pairs}
                    self.redis.zadd(f"{data}links_by_user", members)
                    moved += len(members)
                self.redis.delete(key)
                self.redis.srem(users_key, user)
            self.redis.delete(users_key)
        if moved:
            log.warning("indexed %d links of the ledger by user in the new layout", moved)

    def _create(
        self,
        *,
        tenant: bool = False,
        portal: str = "",
        actor: str = "system",
        detail: str = "{}",
        now: float | None = None,
    ) -> bool:
        now = utcnow().timestamp() if now is None else now
        d = self.defaults
        incarnation = secrets.token_urlsafe(9)
        args = [
            incarnation,
            now,
            int(d.auto_login_enabled),
            d.token_ttl_seconds,
            portal,
            "tenant" if tenant else "store",
            actor,
            detail,
        ]
        # Declared on a Cluster: the user epochs it checks, the keys it makes.
        made = [f"{self._base}{incarnation}:{name}" for name in _AUDITED]
        reply = self._script(self._create_script, _STATE, args, change=tenant, extra=made)
        if reply == lua.STALE:
            raise StoreUnavailableError(f"{self._meta_key} changed during its creation")
        self._incarnations.pop(self.tenant_id, None)
        return bool(reply)

    def _recreate(self) -> None:
        # The meta hash (of default) or the user epochs are gone after start: the
        # data was lost (a restart without persistence, FLUSHALL, an eviction).
        # A new incarnation voids every token.
        if self._create():
            log.warning(
                "Redis store %r tenant %r was lost: new incarnation",
                self.key_prefix,
                self.tenant_id,
            )

    def _lost(self, reply: Any) -> None:
        """Handle a script's ``NO_TENANT`` or ``LOST`` answer: re-create, or raise."""
        if reply == lua.NO_TENANT and self.tenant_id != DEFAULT_TENANT:
            raise TenantNotFoundError(self.tenant_id)
        self._recreate()

    def _run(
        self, script: Script, args: Sequence[Any], names: Sequence[str] = (), change: Change = False
    ) -> Any:
        """Run a per-tenant script: re-create a lost ``default``, or raise.

        :param names: the tenant's data keys the script touches (declared on a Cluster).
        :param change: it voids or admits tokens (always, or when this function
            of its reply says so): see :meth:`_change`.
        """
        with self._guard:
            result = self._script(script, names, args, change)
            if result in (lua.NO_TENANT, lua.LOST):
                self._lost(result)
                result = self._script(script, names, args, change)
        if result in (lua.NO_TENANT, lua.LOST, lua.STALE):
            raise StoreDataError(f"{self._meta_key} vanished right after it was created")
        return result

    def _declared(self, names: Sequence[str], extra: Sequence[str] = ()) -> list[str]:
        """Return a per-tenant script's KEYS: its meta hash, on a Cluster its data keys too.

        On a Cluster the data keys are named with the incarnation this process
        last saw (one read the first time, then remembered); a script that
        finds another answers ``STALE`` and :meth:`_script` reads it again.
        """
        if not self._cluster or not (names or extra):
            return self._meta_keys
        incarnation = self._incarnations.get(self.tenant_id)
        if incarnation is None:
            incarnation = self.redis.hget(self._meta_key, "incarnation") or "-"
            if len(self._incarnations) >= _MAX_CACHED_INCARNATIONS:
                self._incarnations.clear()
            self._incarnations[self.tenant_id] = incarnation
        data = f"{self._base}{incarnation}:"
        return [self._meta_key, *(data + name for name in names), *extra]

    def _script(
        self,
        script: Script,
        names: Sequence[str],
        args: Sequence[Any],
        change: Change = False,
        extra: Sequence[str] = (),
    ) -> Any:
        """Run a per-tenant script once (twice when its declared keys were stale)."""
        for _ in range(2):
            keys = self._declared(names, extra)
            if change is not False and self.min_replicas_ack:
                result = self._change(script, keys, [self._base, *args], change)
            else:
                result = script(keys, [self._base, *args])
            if result != lua.STALE:
                break
            self._incarnations.pop(self.tenant_id, None)
        return result

    def _change(
        self,
        script: Script | None,
        keys: Sequence[str],
        args: Sequence[Any],
        change: Change = True,
        command: Sequence[Any] = (),
    ) -> Any:
        """Run a script that voids or admits tokens; answer once enough replicas hold it.

        The one place every such change goes through (``_run(..., change=...)``):
        with ``REDIS_MIN_REPLICAS_ACK`` = n > 0, ``WAIT n`` goes out on the same
        connection to the primary that runs the script (on a Cluster, the
        primary of the keys' slot), so that it counts the replicas holding this
        very write. ``change=True``: always, in one pipeline with the script
        (one round trip). A function of the reply (a script that writes only
        sometimes, such as a click's first binding): only when it says the
        reply wrote, one round trip more. Fewer replicas within the wait, or no
        reply in time: :class:`StoreNotAcknowledgedError` (503; the change may
        have been applied). Called inside ``self._guard``.

        :param command: instead of a script, a plain command on ``keys[0]``.
        """
        n = self.min_replicas_ack
        if script is not None:
            command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        for _ in range(3):
            if self._cluster:
                node = self.redis.get_node_from_key(keys[0])  # the slot's primary
                client = self.redis.get_redis_connection(node)
            else:
                client = self.redis
            # One connection for both: a pipeline, or a client of a single connection.
            sender = client.pipeline(transaction=False) if change is True else client.client()
            try:
                if change is True:
                    sender.execute_command(*command)
                    sender.execute_command("WAIT", n, self._wait_ms)
                    reply, acks = sender.execute(raise_on_error=False)
                else:
                    try:
                        reply = sender.execute_command(*command)
                    except ResponseError as e:
                        reply = e
                    acks = None
                    if not isinstance(reply, Exception) and change(reply):
                        acks = sender.execute_command("WAIT", n, self._wait_ms)
            except (ConnectionError, TimeoutError) as e:
                if self._cluster:  # the shard may be failing over: read the slots again
                    self._refresh_slots()
                raise StoreNotAcknowledgedError(f"Redis at {self._where}: {e}") from e
            finally:
                if change is True:
                    sender.reset()
                else:
                    sender.close()  # its connection back to the pool
            if isinstance(reply, NoScriptError) and script is not None:
                client.script_load(script.script)  # a new or restarted node
                continue
            if isinstance(reply, MovedError):  # the slot moved: redis-py reads the slots again
                self._refresh_slots()
                continue
            if isinstance(reply, AskError):  # not run: half moved to another shard
                raise StoreUnavailableError(f"{keys[0]}: its slot is moving between shards")
            if isinstance(reply, Exception):
                raise reply
            if reply in (lua.NO_TENANT, lua.LOST, lua.STALE) or acks is None:
                return reply  # nothing was written
            if isinstance(acks, Exception):
                raise acks
            if int(acks) < n:
                self._log_short(f"{acks} of {n} replicas confirmed a change in time")
                raise StoreNotAcknowledgedError(
                    f"Redis at {self._where}: {acks} of the {n} replicas that "
                    "REDIS_MIN_REPLICAS_ACK asks for confirmed the change in time"
                )
            self._log_short(None)
            return reply
        raise StoreUnavailableError(f"{keys[0]}: its slot kept moving")

    def _click_wait(self, click: _ClickConnection) -> None:
        """WAIT on a click connection for the write it just made (a first binding)."""
        n = self.min_replicas_ack
        try:
            words = ("WAIT", str(n), str(self._wait_ms))
            acks = click.call(b"*3\r\n" + b"".join(map(_bulk, words)))
        except (ConnectionError, TimeoutError) as e:
            raise StoreNotAcknowledgedError(f"Redis at {self._where}: {e}") from e
        if int(acks) < n:
            self._log_short(f"{acks} of {n} replicas confirmed a change in time")
            raise StoreNotAcknowledgedError(
                f"Redis at {self._where}: {acks} of the {n} replicas that "
                "REDIS_MIN_REPLICAS_ACK asks for confirmed a first binding in time"
            )

    def _refresh_slots(self) -> None:
        """Have redis-py read the Cluster's slots again (after MOVED or a dead primary)."""
        try:
            self.redis.nodes_manager.initialize()
        except (RedisError, RedisClusterException, OSError) as e:
            log.warning("Redis Cluster slots not read again: %s", e)

    def _log_short(self, why: str | None) -> None:
        """Log the replicas' shortfall when it starts and when it ends (once a process)."""
        if (why is None) == (self._short[0] is None):
            return
        self._short[0] = why
        if why is None:
            log.warning("Redis replicas back: changes are acknowledged again")
        else:
            log.warning("Redis replicas short: changes answer 503 until they are back (%s)", why)

    def _raw_meta(self) -> dict[str, str]:
        with self._guard:
            raw = self.redis.hgetall(self._meta_key)
            if not raw:
                if self.tenant_id != DEFAULT_TENANT:
                    raise TenantNotFoundError(self.tenant_id)
                self._recreate()
                raw = self.redis.hgetall(self._meta_key)
        return raw

    def _meta(self) -> tuple[str, int, datetime, str, str, Settings]:
        return self._parse_meta(self._raw_meta())

    def _parse_meta(self, raw: Mapping[str, str]) -> tuple[str, int, datetime, str, str, Settings]:
        """Return the incarnation, the epoch and its change, and the settings of a meta hash."""
        try:
            roles = raw.get("role_mailboxes")
            settings = Settings(
                bool(_int(raw["auto_login_enabled"])),
                _int(raw["token_ttl_seconds"]),
                bool(_int(raw.get("bind_to_first_device", "0"))),
                # Absent: never changed (or a store taken over): the default list.
                DEFAULT_ROLE_MAILBOXES if roles is None else tuple(json.loads(roles)),
            )
            if not all(isinstance(name, str) for name in settings.role_mailboxes):
                raise ValueError("role_mailboxes holds a non-string")
            return (
                raw["incarnation"],
                _int(raw["epoch"]),
                from_seconds(float(raw["changed_at"])),
                raw["changed_by"],
                raw["reason"],
                settings,
            )
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise StoreDataError(f"{self._meta_key} has the wrong shape: {e!r}") from e

    def _info(self, tenant_id: str, raw: Mapping[str, str]) -> TenantInfo:
        _, _, changed_at, _, _, settings = self._parse_meta(raw)
        try:
            created = from_seconds(float(raw.get("created_at") or changed_at.timestamp()))
        except (ValueError, OverflowError) as e:
            raise StoreDataError(f"tenant {tenant_id!r} has the wrong shape: {e!r}") from e
        return TenantInfo(tenant_id, raw.get("portal_base_url") or None, created, settings)

    def tenant_info(self) -> TenantInfo:
        """Return this view's tenant."""
        return self._info(self.tenant_id, self._raw_meta())

    def _data(self) -> str:
        """Return the key base of this tenant's incarnation (one read)."""
        return f"{self._base}{self._meta()[0]}:"

    def token_state(
        self, user_id: str, key_digest: bytes | None = None, link: LinkCheck | None = None
    ) -> TokenState:
        """Read the incarnation, the epochs and the link's state at once (see the protocol)."""
        if link is None:
            args: tuple[Any, ...] = (user_id, "" if key_digest is None else key_digest.hex())
            args += ("", "", "", "", "", "", "")
        else:
            args = (
                user_id,
                "" if key_digest is None else key_digest.hex(),
                link.link_id,
                link.device or "",
                link.incarnation,
                str(link.epoch),
                str(link.user_epoch),
                str(link.expires_at + LEDGER_GRACE_SECONDS),
                str(link.epoch_id),
            )
        reply = None
        click = self._clicks.get() if self._clicks is not None else None
        if click is not None and click.lock.acquire(blocking=False):
            try:
                with self._guard:
                    try:
                        reply = click.call(self._token_request + b"".join(map(_bulk, args)))
                        if _bound_here(reply) and self.min_replicas_ack:
                            self._click_wait(click)  # a first binding: WAIT on its connection
                    except NoScriptError:
                        pass  # Redis restarted or flushed its scripts: the pool's way loads it
            finally:
                click.lock.release()
        names = _STATE if key_digest is None else _STATE + _KEY_NAMES
        if link is not None:
            names += _LINK_STATE_NAMES
        if self._shard_clicks is not None:
            reply = self._shard_click(args, names)
        if reply is None or reply in (lua.NO_TENANT, lua.LOST, lua.STALE):
            # busy, no script, or the tenant is missing: the pool's way handles each
            reply = self._run(self._token_script, args, names, change=_bound_here)
        incarnation, epoch, user_epoch, voided, bind, bound, epoch_id, *found = reply
        try:
            if incarnation is None:
                raise ValueError("no incarnation")
            user_epoch = 0 if user_epoch is None else _int(user_epoch)
            epoch_id = 0 if epoch_id is None else _int(epoch_id)
            epoch = _int(epoch)
        except ValueError as e:
            raise StoreDataError(f"{self._meta_key} epochs have the wrong shape: {e}") from e
        key = self._key_record(*found) if len(found) == 3 else None
        return TokenState(
            incarnation,
            epoch,
            user_epoch,
            key,
            voided == 1,
            bind in (1, 2),
            bound,
            epoch_id=epoch_id,
        )

    def _shard_click(self, args: Sequence[str], names: Sequence[str]) -> Any:
        """On a Cluster: the click's read on its shard's click connection, or ``None``.

        ``None`` (redis-py's way then) when the connection is busy, when the
        node redirects (``MOVED``, ``ASK``), asks to try again or lacks the
        script, or cannot be reached (redis-py then reads the slots again).
        """
        shards = self._shard_clicks
        if shards is None:
            return None
        with self._guard:
            keys = self._declared(names)
            node = self.redis.get_node_from_key(self._meta_key)
        click = shards.get(node)
        if not click.lock.acquire(blocking=False):
            return None
        try:
            words = ("EVALSHA", self._token_script.sha, str(len(keys)), *keys, self._base, *args)
            request = b"*%d\r\n" % len(words) + b"".join(map(_bulk, words))
            with self._guard:
                try:
                    reply = click.call(request)
                except (ResponseError, ConnectionError):
                    return None
                if _bound_here(reply) and self.min_replicas_ack:
                    self._click_wait(click)  # a first binding: WAIT on its connection
                return reply
        finally:
            click.lock.release()

    def issue_state(self, user_ids: Sequence[str]) -> IssueState:
        """Read everything issuing links for ``user_ids`` needs at once."""
        unique = list(dict.fromkeys(user_ids))
        flat, epochs = self._run(self._issue_script, unique, _STATE)
        meta = dict(zip(flat[::2], flat[1::2], strict=True))
        incarnation, epoch, _, _, _, settings = self._parse_meta(meta)
        try:
            users = {u: 0 if e is None else _int(e) for u, e in zip(unique, epochs, strict=True)}
            epoch_id = _int(meta.get("epoch_id", "0"))
        except ValueError as e:
            raise StoreDataError(f"{self._meta_key} user epochs have the wrong shape: {e}") from e
        portal = meta.get("portal_base_url") or None
        return IssueState(incarnation, epoch, settings, users, portal, epoch_id=epoch_id)

    def settings(self) -> Settings:
        """Read the current settings."""
        return self._meta()[5]

    def epoch(self) -> EpochInfo:
        """Read the global epoch and its last change."""
        _, epoch, changed_at, changed_by, reason, _ = self._meta()
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

    def ping(self) -> str | None:
        """Raise unless the store answers with a well-formed meta hash.

        :returns: why changes answer 503 while reads go on (fewer replicas
            attached than ``REDIS_MIN_REPLICAS_ACK``), or ``None``.
        """
        self._meta()
        if not self.min_replicas_ack:
            return None
        with self._guard:
            if self._cluster:
                primaries = [
                    (node.name, self.redis.get_redis_connection(node))
                    for node in self.redis.get_primaries()
                ]
            else:
                primaries = [(self._where, self.redis)]
            short = []
            for name, client in primaries:
                try:
                    info = client.info("replication")
                except (ConnectionError, TimeoutError):
                    if not self._cluster:
                        raise
                    # A shard's primary that died: redis-py has not seen its
                    # replica promoted yet. Have it read the slots again.
                    self._refresh_slots()
                    short.append(f"{name} does not answer")
                    continue
                online = sum(
                    1
                    for field, value in info.items()
                    if field.startswith("slave") and isinstance(value, dict)
                    if value.get("state") == "online"
                )
                if online < self.min_replicas_ack:
                    short.append(f"{name} has {online}")
        why = None
        if short:
            why = (
                f"fewer replicas attached than the {self.min_replicas_ack} that "
                f"REDIS_MIN_REPLICAS_ACK asks for: {', '.join(short)}; changes answer 503"
            )
        self._log_short(why)
        return why

    # -- tenants -------------------------------------------------------------

    def _platform_audit(self, at: float, actor: str, action: str, detail: str) -> None:
        with self._guard:
            self._platform_audit_script(self._platform_log, [at, actor, action, detail])

    def create_tenant(
        self, tenant_id: str, portal_base_url: str, *, actor: str, reason: str, now: datetime
    ) -> TenantInfo:
        """Create a tenant (auto-login off, default lifetime); ``ConflictError`` if it exists."""
        view = self.tenant(tenant_id)
        detail = _detail(portal_base_url=portal_base_url, reason=reason, tenant_id=tenant_id)
        with self._guard:
            # Listed first, made second (on a Cluster two slots, two writes): a
            # crash between leaves a listed id that does not exist (every call
            # answers tenant_not_found, the list skips it), never a usable
            # tenant that is not listed; repeating the call makes it. Both wait
            # for the replicas: a failover must not lose the listing alone.
            zadd = ("ZADD", self._tenants_key, 0, tenant_id)
            if self.min_replicas_ack:
                self._change(None, [self._tenants_key], (), command=zadd)
            else:
                self.redis.execute_command(*zadd)
            made = view._create(
                tenant=True,
                portal=portal_base_url,
                actor=actor,
                detail=detail,
                now=now.timestamp(),
            )
        if not made:
            raise ConflictError("tenant_exists", f"a tenant {tenant_id!r} exists already")
        self._platform_audit(now.timestamp(), actor, "tenant.create", detail)
        return view.tenant_info()

    def get_tenant(self, tenant_id: str) -> TenantInfo:
        """Return one tenant, or raise ``TenantNotFoundError``."""
        view = self.tenant(tenant_id)
        return view._info(tenant_id, view._raw_meta())

    def list_tenants(self, *, after: str | None, prefix: str, limit: int) -> list[TenantInfo]:
        """Return up to ``limit`` tenants by id: after ``after``, ids starting ``prefix``."""
        low = f"({after}" if after is not None and after >= prefix else f"[{prefix}"
        high = f"[{prefix}\uffff" if prefix else "+"
        found: list[TenantInfo] = []
        with self._guard:
            while len(found) < limit:
                ids = self.redis.zrangebylex(self._tenants_key, low, high, 0, limit - len(found))
                if not ids:
                    break
                pipe = self.redis.pipeline(transaction=False)
                for tenant_id in ids:
                    pipe.hgetall(f"{self.key_prefix}{{{tenant_id}}}:meta")
                for tenant_id, raw in zip(ids, pipe.execute(), strict=True):
                    if raw:  # listed but not (or no longer) made: skipped
                        found.append(self._info(tenant_id, raw))
                low = f"({ids[-1]}"
        return found

    def update_tenant(
        self, tenant_id: str, portal_base_url: str, *, actor: str, reason: str, now: datetime
    ) -> TenantInfo:
        """Move a tenant's portal address; audited in both logs."""
        view = self.tenant(tenant_id)
        detail = _detail(portal_base_url=portal_base_url, reason=reason, tenant_id=tenant_id)
        with self._guard:
            args = [portal_base_url, now.timestamp(), actor, detail]
            reply = view._script(self._update_tenant_script, _AUDITED, args, change=True)
        if reply in (lua.NO_TENANT, lua.LOST, lua.STALE):
            raise TenantNotFoundError(tenant_id)
        self._platform_audit(now.timestamp(), actor, "tenant.update", detail)
        return view.tenant_info()

    def delete_tenant(self, tenant_id: str, *, actor: str, reason: str, now: datetime) -> None:
        """Delete a tenant at once (tokens refused, keys unknown, id free); data goes later."""
        view = self.tenant(tenant_id)
        with self._guard:
            incarnation = self.redis.hget(view._meta_key, "incarnation")
            if incarnation is None:
                self.redis.zrem(self._tenants_key, tenant_id)  # completes an interrupted delete
                raise TenantNotFoundError(tenant_id)
            # The trash entry first: whatever happens after, the reaper finds the
            # keys; it never removes those of a live incarnation.
            self.redis.sadd(self._trash_key, f"{tenant_id} {incarnation}")
            reply = view._script(self._delete_tenant_script, (), [incarnation], change=True)
            view._incarnations.pop(tenant_id, None)
            if reply == lua.NO_TENANT:
                self.redis.zrem(self._tenants_key, tenant_id)
                raise TenantNotFoundError(tenant_id)
            if reply != incarnation:  # made again between the two reads: try once more
                raise StoreUnavailableError(f"tenant {tenant_id!r} changed during its deletion")
            self.redis.zrem(self._tenants_key, tenant_id)
        detail = _detail(reason=reason, tenant_id=tenant_id)
        self._platform_audit(now.timestamp(), actor, "tenant.delete", detail)

    def reap(self, *, budget: int) -> bool:
        """Remove up to about ``budget`` keys of deleted tenants; True if more remain."""
        with self._guard:
            # A few entries to choose from: one of a delete still under way
            # (its tenant live) is never reaped, and must not stop the others.
            for member in self.redis.srandmember(self._trash_key, 16):
                tenant_id, _, incarnation = member.partition(" ")
                base = f"{self.key_prefix}{{{tenant_id}}}:"
                if self.redis.hget(f"{base}meta", "incarnation") != incarnation:
                    break
            else:
                return False  # nothing in the trash, or only live incarnations
            data = f"{base}{incarnation}:"
            # The per-user sign-in sets, ``budget`` at a time: the users who
            # have one are listed in signin_users (no SCAN of the keyspace).
            users = self.redis.spop(f"{data}signin_users", budget)
            if users:
                self.redis.unlink(*(f"{data}signins:{user}" for user in users))
                return True
            users = self.redis.spop(f"{data}link_users", budget)
            if users:
                self.redis.unlink(*(f"{data}links:{user}" for user in users))
                return True
            # The big hashes and sorted sets shrink ``budget`` entries a step,
            # so the reaper's pauses spread the work: freeing 100,000 users'
            # epochs at once, even in Redis's background thread, competes
            # with other tenants' clicks for the CPU.
            if self._shrink(data, budget):
                return True
            self.redis.unlink(*(f"{data}{name}" for name in _TENANT_DATA))
            self.redis.srem(self._trash_key, member)
            return self.redis.scard(self._trash_key) > 0

    def _shrink(self, data: str, budget: int) -> bool:
        """Remove up to ``budget`` entries of the first big collection of ``data``; True if any."""
        sizes = self.redis.pipeline(transaction=False)
        for name in _REAP_HASHES:
            sizes.hlen(f"{data}{name}")
        for name in _REAP_SORTED_SETS:
            sizes.zcard(f"{data}{name}")
        names = (*_REAP_HASHES, *_REAP_SORTED_SETS)
        for name, size in zip(names, sizes.execute(), strict=True):
            if size <= budget:
                continue  # small: the final UNLINK takes it
            key = f"{data}{name}"
            # A few small commands, not one of ``budget`` entries: Redis runs
            # one command at a time, so a click that arrives meanwhile waits
            # for one small command, not for the whole step.
            for first in range(0, budget, _REAP_PER_COMMAND):
                count = min(_REAP_PER_COMMAND, budget - first)
                if name in _REAP_HASHES:
                    # Random fields, not HSCAN from cursor 0: once the first
                    # buckets are emptied, a scan from 0 finds nothing in its
                    # COUNT and a step would free nothing, for ever.
                    fields = self.redis.hrandfield(key, count)
                    if not fields:
                        break
                    self.redis.hdel(key, *fields)
                elif not self.redis.zremrangebyrank(key, 0, count - 1):
                    break
            return True
        return False

    # -- tenant keys -----------------------------------------------------------

    def _key_record(self, name: str, record: str, used: str) -> KeyRecord:
        try:
            data = json.loads(record)
            return KeyRecord(
                name,
                bytes.fromhex(data["digest"]),
                frozenset(data["roles"]),
                from_seconds(float(data["created_at"])),
                from_seconds(float(used)) if used else None,
            )
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise StoreDataError(f"key {name!r} has the wrong shape: {e!r}") from e

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
        """Keep a new key's digest; ``ConflictError`` (``key_exists``) if the name is taken."""
        at = now.timestamp()
        record = json.dumps({"digest": digest.hex(), "roles": sorted(roles), "created_at": at})
        detail = _detail(name=name, reason=reason, roles=sorted(roles), tenant_id=self.tenant_id)
        args = [name, digest.hex(), record, at, actor, detail]
        made = self._run(self._create_key_script, args, _AUDITED + _KEY_NAMES, change=True)
        if not made:
            raise ConflictError("key_exists", f"this tenant has a key named {name!r}")
        self._platform_audit(at, actor, "key.create", detail)
        return KeyRecord(name, digest, roles, from_seconds(at), None)

    def keys(self) -> list[KeyRecord]:
        """Return this tenant's keys, by name."""
        data = self._data()
        with self._guard:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hgetall(f"{data}keys")
            pipe.hgetall(f"{data}used")
            records, used = pipe.execute()
        return [self._key_record(n, records[n], used.get(n)) for n in sorted(records)]

    def find_key(self, digest: bytes) -> KeyRecord | None:
        """Return this tenant's key with SHA-256 ``digest``, if any."""
        with self._guard:
            reply = self._script(self._find_key_script, _KEY_NAMES, [digest.hex()])
        return self._key_record(*reply) if reply and reply != lua.STALE else None

    def touch_key(self, name: str, now: datetime) -> None:
        """Record that key ``name`` was used at ``now``."""
        data = self._data()
        with self._guard:
            self.redis.hset(f"{data}used", name, repr(now.timestamp()))

    def revoke_key(self, name: str, *, actor: str, reason: str, now: datetime) -> None:
        """Forget key ``name`` at once; ``KeyNotFoundError`` if there is none."""
        at = now.timestamp()
        detail = _detail(name=name, reason=reason, tenant_id=self.tenant_id)
        args = [name, at, actor, detail]
        if not self._run(self._revoke_key_script, args, _AUDITED + _KEY_NAMES, change=True):
            raise KeyNotFoundError(name)
        self._platform_audit(at, actor, "key.revoke", detail)

    # -- writes -----------------------------------------------------------

    def update_settings(self, changes: Mapping[str, Any], *, actor: str, now: datetime) -> Settings:
        """Apply validated ``changes`` atomically, audit them, return the new settings."""
        pairs = [x for name, value in changes.items() for x in (name, _COLUMNS[name](value))]
        detail = json.dumps(dict(changes), sort_keys=True)
        args = [now.timestamp(), actor, detail, *pairs]
        flat = self._run(self._settings_script, args, _AUDITED, change=True)
        return self._parse_meta(dict(zip(flat[::2], flat[1::2], strict=True)))[5]

    def bump_epoch(self, *, actor: str, reason: str, now: datetime) -> EpochInfo:
        """Raise the global epoch by one with a new random identity, audit it, return it."""
        at = now.timestamp()
        args = (at, actor, reason, fresh_epoch_value())
        epoch = self._run(self._bump_script, args, _AUDITED, change=True)
        return EpochInfo(int(epoch), from_seconds(at), actor, reason)

    def revoke_user(self, user_id: str, *, actor: str, reason: str, now: datetime) -> int:
        """Set ``user_id``'s epoch to a fresh random value atomically, audit it, return it."""
        first = fresh_epoch_value()
        args = (user_id, now.timestamp(), actor, reason, first, fresh_epoch_value(first))
        return int(self._run(self._revoke_script, args, _AUDITED, change=True))

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

    # -- the ledger -----------------------------------------------------------

    def record_links(self, links: Sequence[LinkRecord], incarnation: str, now: datetime) -> None:
        """Add newly issued links to the ledger, and drop a few that outlived theirs."""
        with self._guard:
            self._script(
                self._record_links_script,
                _CLEANUP_NAMES,
                self._record_args(links, incarnation, now),
            )

    def record_link_chunks(
        self, chunks: Iterable[Sequence[LinkRecord]], incarnation: str, now: datetime
    ) -> None:
        """:meth:`record_links` for each chunk, sent as it comes, the replies read at the end.

        Redis works on a chunk while the caller makes the next (signs its
        tokens): a batch's write overlaps its signing instead of following
        it. Pipelined on one connection, not a thread: a thread's hand-offs
        of the GIL cost what the overlap saved. On a Cluster, chunk by chunk.
        """
        if self._cluster:
            for chunk in chunks:
                self.record_links(chunk, incarnation, now)
            return
        script = self._record_links_script
        keys = self._declared(_CLEANUP_NAMES)
        pool = self.redis.connection_pool
        sent: list[Sequence[LinkRecord]] = []
        unloaded: list[Sequence[LinkRecord]] = []
        with self._guard:
            connection = pool.get_connection()
            try:
                for chunk in chunks:
                    args = [self._base, *self._record_args(chunk, incarnation, now)]
                    connection.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
                    sent.append(chunk)
                for chunk in sent:
                    try:
                        connection.read_response()
                    except NoScriptError:
                        unloaded.append(chunk)  # Redis restarted, or SCRIPT FLUSH
            except BaseException:
                # A reply left unread would answer the next user of the connection.
                connection.disconnect()
                raise
            finally:
                pool.release(connection)
            for chunk in unloaded:  # the script's own way: it loads itself, then runs
                self._script(script, _CLEANUP_NAMES, self._record_args(chunk, incarnation, now))

    def _record_args(
        self, links: Sequence[LinkRecord], incarnation: str, now: datetime
    ) -> list[Any]:
        """RECORD_LINKS's arguments (after the key base) for ``links``."""
        quote = encode_basestring_ascii  # what json.dumps does to a string
        rows = []
        for link in links:
            issued_at, expires_at = link.issued_at.timestamp(), link.expires_at.timestamp()
            reference = "null" if link.reference is None else quote(link.reference)
            # The record as _link_record reads it, written out as json.dumps
            # would (the same text, at a third of the cost of a list through it).
            record = (
                f"[{quote(link.user_id)},{quote(link.target)},{reference},"
                f"{quote(link.issued_by)},{issued_at!r},{expires_at!r},{int(link.epoch)},"
                f"{int(link.user_epoch)},0,null,null,null,{int(link.epoch_id)}]"
            )
            # Times as strings: Lua's cjson would round a number to 14 digits.
            rows.append(
                (
                    link.link_id,
                    repr(issued_at),
                    repr(expires_at),
                    record,
                    _by_user(link.user_id, issued_at, link.link_id),
                )
            )
        args = [incarnation, *_ledger_cuts(now), len(links) + LEDGER_CLEANUP_EXTRA]
        args.append(_COMPACT.encode(rows))
        return args

    def _link_record(self, link_id: str, record: str, status: str, bound: int) -> LinkRecord:
        try:
            # A 13th field, the epoch identity, since identities (none: 0).
            (user_id, target, reference, issued_by, issued_at, expires_at, epoch, user_epoch,
             uses, first, last, ip, *identity) = json.loads(record)  # fmt: skip
            return LinkRecord(
                link_id,
                user_id,
                target,
                reference,
                issued_by,
                from_seconds(float(issued_at)),
                from_seconds(float(expires_at)),
                int(epoch),
                int(user_epoch),
                status,
                int(uses),
                None if first is None else from_seconds(float(first)),
                None if last is None else from_seconds(float(last)),
                ip,
                bound == 1,
                epoch_id=int(identity[0]) if identity else 0,
            )
        except (TypeError, ValueError, OverflowError) as e:
            raise StoreDataError(f"link {link_id!r} has the wrong shape: {e!r}") from e

    def links(
        self,
        *,
        user_id: str | None,
        status: str | None,
        after: str | None,
        limit: int,
        expired_before: float,
    ) -> tuple[list[LinkRecord], str | None]:
        """Return a page of the ledger, newest first, and the ``after`` of the next page."""
        args = [user_id or "", after or "", limit, status or "", repr(expired_before), _LEDGER_SCAN]
        names = ("links", "user_epochs", "voided", "bound", "links_at", "links_by_user")
        reply = self._run(self._links_script, args, names)
        if reply == "!no-link":
            raise LinkNotFoundError(after or "")
        following, flat = reply[0], reply[1:]
        page = [self._link_record(*flat[i : i + 4]) for i in range(0, len(flat), 4)]
        return page, following

    def link(self, link_id: str, *, expired_before: float) -> LinkRecord | None:
        """Return one link of the ledger, or ``None``."""
        names = ("links", "user_epochs", "voided", "bound")
        reply = self._run(self._link_script, [link_id, repr(expired_before)], names)
        return None if reply is None else self._link_record(*reply)

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
        """Void one link; audited as ``link.revoke`` (see the protocol)."""
        at = now.timestamp()
        args = [link_id, "1" if ledger else "0", repr(at), repr(at + max_ttl + leeway)]
        reply = self._run(
            self._revoke_link_script,
            [*args, leeway, actor, reason],
            _AUDITED + ("links", "voided", "voided_exp"),
            change=True,
        )
        if reply == "!no-link":
            raise LinkNotFoundError(link_id)
        return LinkRevocation(link_id, now, expired=reply == "expired")

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

    def close(self) -> None:
        """Release connections held by this process."""
        if self._shard_clicks is not None:
            self._shard_clicks.close()
        if self._clicks is not None and self._clicks.click.pid == os.getpid():
            self._clicks.click.connection.disconnect()
        # Behind Sentinel: the clients of the Sentinels themselves too.
        manager = getattr(getattr(self.redis, "connection_pool", None), "sentinel_manager", None)
        for sentinel in getattr(manager, "sentinels", ()):
            sentinel.close()
        self.redis.close()
