"""The store seam: runtime state shared by every worker and host.

The epochs, the settings and both logs live here, never in a worker's memory
(Flask's config is not guaranteed to be visible to other workers). Two
implementations sit behind one protocol: :mod:`service.store.sqlite`, the
embedded default for one host, and :mod:`service.store.redis`, for several.

Every method raises :class:`~service.errors.StoreUnavailableError` when the
store cannot be reached and :class:`~service.errors.StoreDataError` when it
holds data of the wrong shape: the caller then refuses, it never guesses.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from service.errors import ConfigError

__all__ = [
    "DEFAULT_ROLE_MAILBOXES",
    "DEFAULT_TENANT",
    "EPOCH_VALUES",
    "LEDGER_CLEANUP_EXTRA",
    "LEDGER_GRACE_SECONDS",
    "AuditEvent",
    "EpochInfo",
    "IssueState",
    "KeyRecord",
    "LinkCheck",
    "LinkRecord",
    "LinkRevocation",
    "Settings",
    "Signin",
    "Store",
    "TenantInfo",
    "TokenState",
    "fresh_epoch_value",
    "open_store",
]

#: How long the ledger keeps a link past its expiry (and a binding past its link's).
LEDGER_GRACE_SECONDS = 86400
#: Expired ledger entries, revocations and bindings each issue drops, besides its own
#: number of links (pruning drops the rest): the ledger stays bounded without clicks.
LEDGER_CLEANUP_EXTRA = 100
#: The tenant of a single-helpdesk install, and of every call that names none.
DEFAULT_TENANT = "default"
#: Local parts of shared mailboxes that get no token (``role_mailbox``): the
#: names of RFC 2142 and the usual team, no-reply and system addresses. A
#: tenant that never changed its list (a store taken over too) has this one.
DEFAULT_ROLE_MAILBOXES: tuple[str, ...] = tuple(sorted({
    # RFC 2142: business, network operations and service mailboxes
    "info", "marketing", "sales", "support", "abuse", "noc", "security",
    "postmaster", "hostmaster", "usenet", "news", "webmaster", "www", "uucp", "ftp",
    # the common shared and system ones
    "accounts", "admin", "administrator", "billing", "careers", "contact",
    "customerservice", "do-not-reply", "donotreply", "enquiries", "feedback",
    "finance", "hello", "help", "helpdesk", "hr", "inquiries", "it", "jobs",
    "legal", "mail", "mailer-daemon", "no-reply", "noreply", "office", "orders",
    "privacy", "root", "service", "team",
}))  # fmt: skip

#: Random epoch values (a bump's identity, a revoked user's epoch) are drawn
#: from this range: ten digits, never 0 or a counter an earlier version wrote.
EPOCH_VALUES = (10**9, 10**10)


def fresh_epoch_value(old: object = None) -> int:
    """Return a random epoch value, never ``old`` (see tokens.check_epochs)."""
    while True:
        value = EPOCH_VALUES[0] + secrets.randbelow(EPOCH_VALUES[1] - EPOCH_VALUES[0])
        if value != old:
            return value


@dataclass(frozen=True)
class Settings:
    """The admin's settings, shared by every worker."""

    auto_login_enabled: bool
    token_ttl_seconds: int
    #: A link works only in the browser that used it first.
    bind_to_first_device: bool = False
    #: Local parts of shared mailboxes that get no token, lower case.
    role_mailboxes: tuple[str, ...] = DEFAULT_ROLE_MAILBOXES

    def ttl_within(self, max_ttl: int) -> int:
        """Return the default lifetime in force under today's ceiling ``max_ttl``."""
        # A lifetime saved under a higher MAX_TOKEN_TTL_SECONDS is never used above today's.
        return min(self.token_ttl_seconds, max_ttl)


@dataclass(frozen=True)
class EpochInfo:
    """The global epoch and who last changed it."""

    epoch: int
    changed_at: datetime
    changed_by: str
    reason: str


class TokenState(NamedTuple):
    """What verifying one token needs, read in one round trip.

    A named tuple rather than a frozen dataclass: it is built on every click,
    and a tuple costs a fraction of a frozen dataclass's ``__init__``.
    """

    #: Random id written when the store was created; a lost store gets a new one.
    incarnation: str
    epoch: int
    user_epoch: int
    #: The tenant key asked for with ``key_digest``, read in the same trip
    #: (``None``: not asked for, or no such key).
    key: KeyRecord | None = None
    #: The link asked for with ``link`` was voided on its own.
    link_revoked: bool = False
    #: The tenant's ``bind_to_first_device`` setting, read in the same trip.
    bind_to_first_device: bool = False
    #: The keyed hash of the device the link is bound to, after this read's
    #: own first binding (``None``: bound to none).
    bound_device: str | None = None
    #: The global epoch's random identity, new at each bump (0: none yet).
    epoch_id: int = 0


class LinkCheck(NamedTuple):
    """What the store needs of a genuine token to read its link's state, and bind it.

    The store binds the link to ``device`` (when the tenant's setting is on
    and the link is bound to none) only if the token is current: its
    incarnation and epochs are the store's and the link is not voided.
    """

    link_id: str
    incarnation: str
    epoch: int
    user_epoch: int
    #: Keyed hash of the clicking browser's device id, or ``None``.
    device: str | None
    #: When the token expires (seconds since the Unix epoch): a binding is kept until then.
    expires_at: int
    #: The epoch identity the token carries (``eid``, 0 for none).
    epoch_id: int = 0


@dataclass(frozen=True)
class LinkRecord:
    """One link of the ledger: never its token, its address or a device id."""

    link_id: str
    user_id: str
    target: str
    reference: str | None
    issued_by: str
    #: Finer than a second: the ledger's order.
    issued_at: datetime
    expires_at: datetime
    #: The epochs the token carries (for its status).
    epoch: int = 0
    user_epoch: int = 0
    #: ``active``, ``revoked`` or ``expired``, as a verification would answer now.
    status: str = "active"
    uses: int = 0
    first_used_at: datetime | None = None
    last_used_at: datetime | None = None
    last_ip: str | None = None
    bound: bool = False
    #: The epoch identity the token carries (``eid``, 0 for none), for its status.
    epoch_id: int = 0


@dataclass(frozen=True)
class LinkRevocation:
    """The answer of voiding one link."""

    link_id: str
    revoked_at: datetime
    #: The link had expired already: nothing was stored.
    expired: bool = False


@dataclass(frozen=True)
class IssueState:
    """What issuing links for some users needs, read in one round trip."""

    incarnation: str
    epoch: int
    settings: Settings
    #: Current epoch of each user asked for (0 for a user never revoked).
    user_epochs: Mapping[str, int]
    #: The tenant's own portal address; ``None``: the deployment's PORTAL_BASE_URL.
    portal_base_url: str | None = None
    #: The global epoch's random identity (0: none yet).
    epoch_id: int = 0


@dataclass(frozen=True)
class Signin:
    """One verification of a genuine token (the contact sign-in log)."""

    at: datetime
    user_id: str
    outcome: str  # "ok", "token_expired", "token_revoked" or "token_bound_elsewhere"
    ip: str | None = None
    user_agent: str | None = None
    #: The token's link id (``None`` in entries written before link ids).
    link_id: str | None = None


@dataclass(frozen=True)
class AuditEvent:
    """One administrative change."""

    at: datetime
    actor: str
    action: str  # "store.create", "epoch.bump", "user.revoke", "settings.update"
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TenantInfo:
    """One tenant: its id, its own portal address, when it was made, its settings."""

    tenant_id: str
    #: ``None`` for ``default``, whose address is the deployment's PORTAL_BASE_URL.
    portal_base_url: str | None
    created_at: datetime
    settings: Settings


@dataclass(frozen=True)
class KeyRecord:
    """A tenant API key as the store keeps it: never the key, only its digest."""

    name: str
    digest: bytes
    roles: frozenset[str]
    created_at: datetime
    last_used_at: datetime | None


class Store(Protocol):
    """Shared runtime state: epochs, settings, audit and sign-in logs, per tenant.

    A store object acts in one tenant, :attr:`tenant_id` (``default`` for the
    one :func:`open_store` returns); :meth:`tenant` returns a view of the same
    store acting in another. Every per-tenant method raises
    :class:`~service.errors.TenantNotFoundError` when that tenant does not
    exist. The tenant registry, the platform audit log and the rate-limit
    counters belong to no tenant and are the same through every view.
    """

    #: The tenant this view acts in.
    tenant_id: str
    #: When this version took over a store written by the single-tenant
    #: version (seconds since the Unix epoch), else ``None``: tokens without
    #: a tenant claim are ``default``'s only if issued before then.
    legacy_before: float | None

    def tenant(self, tenant_id: str) -> Store:
        """Return a view of this store acting in ``tenant_id`` (unchecked; itself if it does)."""
        ...

    # -- tenants (the platform's) ------------------------------------------

    def create_tenant(
        self, tenant_id: str, portal_base_url: str, *, actor: str, reason: str, now: datetime
    ) -> TenantInfo:
        """Create a tenant (auto-login off, default lifetime); ``ConflictError`` if it exists."""
        ...

    def get_tenant(self, tenant_id: str) -> TenantInfo:
        """Return one tenant, or raise ``TenantNotFoundError``."""
        ...

    def list_tenants(self, *, after: str | None, prefix: str, limit: int) -> list[TenantInfo]:
        """Return up to ``limit`` tenants by id: after ``after``, ids starting ``prefix``."""
        ...

    def update_tenant(
        self, tenant_id: str, portal_base_url: str, *, actor: str, reason: str, now: datetime
    ) -> TenantInfo:
        """Move a tenant's portal address; audited in both logs."""
        ...

    def delete_tenant(self, tenant_id: str, *, actor: str, reason: str, now: datetime) -> None:
        """Delete a tenant at once (tokens refused, keys unknown, id free); data goes later."""
        ...

    def reap(self, *, budget: int) -> bool:
        """Remove up to about ``budget`` rows or keys of deleted tenants; True if more remain."""
        ...

    def platform_audit_events(self, *, limit: int) -> list[AuditEvent]:
        """Return up to ``limit`` events of the platform's audit log, newest first."""
        ...

    # -- tenant API keys (this view's tenant) -------------------------------

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
        ...

    def keys(self) -> list[KeyRecord]:
        """Return this tenant's keys, by name."""
        ...

    def find_key(self, digest: bytes) -> KeyRecord | None:
        """Return this tenant's key with SHA-256 ``digest``, if any."""
        ...

    def touch_key(self, name: str, now: datetime) -> None:
        """Record that key ``name`` was used at ``now``."""
        ...

    def revoke_key(self, name: str, *, actor: str, reason: str, now: datetime) -> None:
        """Forget key ``name`` at once; ``KeyNotFoundError`` if there is none."""
        ...

    # -- the tenant's own state ---------------------------------------------

    def tenant_info(self) -> TenantInfo:
        """Return this view's tenant."""
        ...

    def token_state(
        self, user_id: str, key_digest: bytes | None = None, link: LinkCheck | None = None
    ) -> TokenState:
        """Read the incarnation, the global epoch and ``user_id``'s epoch at once.

        :param key_digest: also find this tenant's key of that digest, in the
            same round trip (a portal calling with a tenant key).
        :param link: also read whether this link is voided, the tenant's
            ``bind_to_first_device`` and the link's binding, and make the
            first binding (see :class:`LinkCheck`), in the same round trip.
        """
        ...

    # -- the ledger of links and their revocations ----------------------------

    def record_links(self, links: Sequence[LinkRecord], incarnation: str, now: datetime) -> None:
        """Add newly issued links to the ledger (while the tenant has ``incarnation``).

        Also drops a bounded number of entries past their expiry plus a day,
        so the ledger never outgrows the links of the longest lifetime.
        """
        ...

    def record_link_chunks(
        self, chunks: Iterable[Sequence[LinkRecord]], incarnation: str, now: datetime
    ) -> None:
        """:meth:`record_links` for links made a chunk at a time, as ``chunks`` yields them.

        All are written when this returns. The store may start a chunk's
        write before the next chunk is made (Redis: each chunk's script is
        sent at once, the replies read at the end), so a batch's signing and
        its ledger write overlap; a failure part-way may leave the first
        chunks written.
        """
        ...

    def links(
        self,
        *,
        user_id: str | None,
        status: str | None,
        after: str | None,
        limit: int,
        expired_before: float,
    ) -> tuple[list[LinkRecord], str | None]:
        """Return a page of the ledger, newest first, and the ``after`` of the next page.

        :param expired_before: a link whose expiry is before this time
            (seconds since the Unix epoch: now less the leeway) is ``expired``.
        :raises LinkNotFoundError: ``after`` names no link of the ledger.
        """
        ...

    def link(self, link_id: str, *, expired_before: float) -> LinkRecord | None:
        """Return one link of the ledger, or ``None``."""
        ...

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
        """Void one link; audited as ``link.revoke``.

        :param ledger: the ledger is on: the link must be in it
            (``LinkNotFoundError`` otherwise), its revocation is kept until
            its expiry (plus ``leeway``), and an expired one is answered
            without storing anything. Off: any id is voided for ``max_ttl``
            (plus ``leeway``) seconds, the longest any token can live.
        """
        ...

    def issue_state(self, user_ids: Sequence[str]) -> IssueState:
        """Read everything issuing links for ``user_ids`` needs at once."""
        ...

    def settings(self) -> Settings:
        """Read the current settings."""
        ...

    def update_settings(self, changes: Mapping[str, Any], *, actor: str, now: datetime) -> Settings:
        """Apply validated ``changes`` atomically, audit them, return the new settings."""
        ...

    def epoch(self) -> EpochInfo:
        """Read the global epoch and its last change."""
        ...

    def bump_epoch(self, *, actor: str, reason: str, now: datetime) -> EpochInfo:
        """Raise the global epoch by one with a new random identity, audit it, return it."""
        ...

    def revoke_user(self, user_id: str, *, actor: str, reason: str, now: datetime) -> int:
        """Set ``user_id``'s epoch to a fresh random value atomically, audit it, return it."""
        ...

    def record_signins(self, signins: Sequence[Signin], incarnation: str | None = None) -> None:
        """Append several entries to the sign-in log in one transaction or round trip.

        :param incarnation: write them only while the tenant has this
            incarnation (the tokens' own); ``None``: whichever it has.
        """
        ...

    def signins(self, *, user_id: str | None, limit: int) -> list[Signin]:
        """Return up to ``limit`` sign-ins, newest first, of one user or all."""
        ...

    def audit_events(self, *, limit: int) -> list[AuditEvent]:
        """Return up to ``limit`` audit events, newest first."""
        ...

    def prune(self, *, before: datetime, tenants: Sequence[str] = ()) -> None:
        """Drop audit and sign-in entries older than ``before``.

        :param tenants: tenants whose logs were written lately; a store that
            keeps each tenant's logs apart (Redis) prunes these and ``default``,
            one that shares its tables (SQLite) prunes every tenant at once.
        """
        ...

    def ping(self) -> str | None:
        """Return if the store answers, else raise ``StoreUnavailableError``.

        :returns: why changes are refused while reads go on (a Redis with
            fewer replicas than ``REDIS_MIN_REPLICAS_ACK``), or ``None``.
        """
        ...

    # Fixed-window counters for rate limits, shared by every worker and host
    # (the storage behind Flask-Limiter, see service/ratelimit.py).

    def counter_incr(self, key: str, *, expiry_seconds: int, amount: int = 1) -> int:
        """Add ``amount`` to ``key``'s window (a new one expires in ``expiry_seconds``)."""
        ...

    def counter_get(self, key: str) -> int:
        """Return ``key``'s count in its current window (0 when none)."""
        ...

    def counter_expiry(self, key: str) -> float:
        """Return when ``key``'s window ends, in seconds since the Unix epoch."""
        ...

    def counter_clear(self, key: str) -> None:
        """Forget ``key``'s window."""
        ...

    def close(self) -> None:
        """Release connections held by this process."""
        ...


def open_store(url: str, *, defaults: Settings, options: Mapping[str, Any] | None = None) -> Store:
    """Open (and on first use create) the store named by ``url``.

    :param defaults: the settings a new store starts with.
    :param options: backend options from the deployment settings
        (timeouts, key prefix); unknown ones are ignored.
    """
    options = dict(options or {})
    if url.startswith("sqlite:"):
        from service.store.sqlite import SqliteStore

        return SqliteStore.from_url(url, defaults=defaults, **options)
    if url.startswith(("redis:", "rediss:", "unix:", "redis+", "rediss+")):
        from service.store.redis import RedisStore

        return RedisStore.from_url(url, defaults=defaults, **options)
    raise ConfigError(
        f"STORE_URL has an unknown scheme ({url.split(':', 1)[0]!r}); "
        "use sqlite:///path/file.db, redis://host:port/db, "
        "redis+sentinel://host:26379,.../<primary name>/<db> or redis+cluster://host:port,.../"
    )
