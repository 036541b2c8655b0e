"""A tenant's API keys: kept by their SHA-256 digest, found, touched and revoked."""

from __future__ import annotations

import json
from datetime import datetime

from service.clock import from_seconds
from service.errors import ConflictError, KeyNotFoundError, StoreDataError
from service.store import KeyRecord
from service.store import redis_scripts as lua
from service.store.redis.layout import _AUDITED, _KEY_NAMES
from service.store.redis.logs import _detail


class _Keys:
    """:class:`~service.store.redis.RedisStore`'s tenant API keys (a mixin of it)."""

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
