"""The Redis store itself: connecting, taking old layouts over, health, closing."""

from __future__ import annotations

import copy
import logging
import os
from typing import Any

from redis import Redis
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.connection import ConnectionPool
from redis.exceptions import ConnectionError, TimeoutError

from service.clock import utcnow
from service.errors import ConfigError, StoreDataError, StoreUnavailableError
from service.store import DEFAULT_TENANT, Settings
from service.store import redis_scripts as lua
from service.store.redis.clicks import _bulk, _ClickConnection, _Clicks, _ShardClicks
from service.store.redis.counters import _Counters
from service.store.redis.epochs import _Epochs
from service.store.redis.guard import _Guard
from service.store.redis.keys import _Keys
from service.store.redis.layout import _LEGACY_KEYS, _by_user
from service.store.redis.ledger import _Ledger
from service.store.redis.logs import _Logs
from service.store.redis.runner import _Runner
from service.store.redis.tenants import _Tenants
from service.store.redis_urls import parse_store_url

__all__ = ["RedisStore"]

# The package's name, as before it was split: one logger for the whole store.
log = logging.getLogger("service.store.redis")


def _glob_escape(text: str) -> str:
    """Return ``text`` as a SCAN MATCH pattern matching itself alone."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisStore(_Runner, _Epochs, _Tenants, _Keys, _Ledger, _Logs, _Counters):
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
