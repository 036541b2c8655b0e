"""Running a tenant's scripts: keys declared on a Cluster, a lost tenant, WAIT for replicas."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from typing import Any

from redis.commands.core import Script
from redis.exceptions import (
    AskError,
    ConnectionError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TimeoutError,
)

from service.clock import utcnow
from service.errors import (
    StoreDataError,
    StoreNotAcknowledgedError,
    StoreUnavailableError,
    TenantNotFoundError,
)
from service.store import DEFAULT_TENANT
from service.store import redis_scripts as lua
from service.store.redis.clicks import _bulk, _ClickConnection
from service.store.redis.layout import _AUDITED, _STATE

# The package's name, as before it was split: one logger for the whole store.
log = logging.getLogger("service.store.redis")

#: Tenants whose incarnation a process remembers (on a Cluster, see _declared).
_MAX_CACHED_INCARNATIONS = 100_000
#: Whether a script's run is a change to WAIT for: never, always, or as its reply says.
Change = bool | Callable[[Any], bool]


class _Runner:
    """How :class:`~service.store.redis.RedisStore` runs its scripts (a mixin of it)."""

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
