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

The code is one class, :class:`RedisStore` (``store.py``: connecting, taking
old layouts over, health), made of mixins, one concern a module: running
the scripts and waiting for replicas (``runner.py``), the meta hash and the
epochs (``epochs.py``), tenants (``tenants.py``), their API keys
(``keys.py``), the ledger (``ledger.py``), the logs (``logs.py``) and the
rate-limit counters (``counters.py``); the key names are in ``layout.py``,
the error translation in ``guard.py``, the click's own connections in
``clicks.py``.
"""

from __future__ import annotations

# RedisStore, and a few private names that could be imported from here before
# the split into modules.
from service.store.redis.layout import _LEDGER_NAMES as _LEDGER_NAMES
from service.store.redis.layout import _TENANT_DATA as _TENANT_DATA
from service.store.redis.layout import _by_user as _by_user
from service.store.redis.store import RedisStore
from service.store.redis.store import _glob_escape as _glob_escape

__all__ = ["RedisStore"]
