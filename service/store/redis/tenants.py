"""Tenants: create, list, read, move and delete them; reap what deleted ones left."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from service.clock import from_seconds
from service.errors import (
    ConflictError,
    StoreDataError,
    StoreUnavailableError,
    TenantNotFoundError,
)
from service.store import TenantInfo
from service.store import redis_scripts as lua
from service.store.redis.layout import (
    _AUDITED,
    _REAP_HASHES,
    _REAP_PER_COMMAND,
    _REAP_SORTED_SETS,
    _TENANT_DATA,
)
from service.store.redis.logs import _detail


class _Tenants:
    """:class:`~service.store.redis.RedisStore`'s tenants (a mixin of it)."""

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
