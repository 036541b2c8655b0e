"""A tenant's meta hash and epochs: read at a click and an issue, changed by admins."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from redis.exceptions import ConnectionError, NoScriptError, ResponseError

from service.clock import from_seconds
from service.errors import StoreDataError, TenantNotFoundError
from service.store import (
    DEFAULT_ROLE_MAILBOXES,
    DEFAULT_TENANT,
    LEDGER_GRACE_SECONDS,
    EpochInfo,
    IssueState,
    LinkCheck,
    Settings,
    TokenState,
    fresh_epoch_value,
)
from service.store import redis_scripts as lua
from service.store.redis.clicks import _bulk
from service.store.redis.layout import _AUDITED, _KEY_NAMES, _LINK_STATE_NAMES, _STATE

#: How each setting is written into the meta hash.
_COLUMNS = {
    "auto_login_enabled": int,
    "token_ttl_seconds": int,
    "bind_to_first_device": int,
    "role_mailboxes": lambda names: json.dumps(list(names)),
}


def _int(value: object) -> int:
    # Stricter than int(): no sign, spaces or underscores in a counter.
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise ValueError(f"not a counter: {value!r}")


def _bound_here(reply: Any) -> bool:
    """Whether a TOKEN_STATE reply made the link's first binding (a change to WAIT for)."""
    return type(reply) is list and len(reply) > 4 and reply[4] == 2


class _Epochs:
    """:class:`~service.store.redis.RedisStore`'s meta hash and epochs (a mixin of it)."""

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
