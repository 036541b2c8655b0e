"""The embedded store: one SQLite file in WAL mode, for one host.

Every worker process (and thread) opens its own connection; WAL lets
readers run while one writer commits, and every write is one ``BEGIN
IMMEDIATE`` transaction, so concurrent bumps from several gunicorn workers
serialise in SQLite and none is lost.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from itertools import chain
from pathlib import Path
from typing import Any

from service.clock import from_seconds, utcnow
from service.errors import (
    ConfigError,
    ConflictError,
    KeyNotFoundError,
    LinkNotFoundError,
    StoreDataError,
    StoreUnavailableError,
    TenantNotFoundError,
)
from service.store import (
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

__all__ = ["SqliteStore"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    tenant_id TEXT PRIMARY KEY,
    incarnation TEXT NOT NULL UNIQUE,
    portal_base_url TEXT,
    created_at REAL NOT NULL,
    epoch INTEGER NOT NULL,
    changed_at REAL NOT NULL,
    changed_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    auto_login_enabled INTEGER NOT NULL,
    token_ttl_seconds INTEGER NOT NULL,
    bind_to_first_device INTEGER NOT NULL DEFAULT 0,
    role_mailboxes TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS user_epochs (
    tenant TEXT NOT NULL,
    user_id TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    revoked_at REAL NOT NULL,
    PRIMARY KEY (tenant, user_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    tenant TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS signins (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    user_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    ip TEXT,
    user_agent TEXT,
    tenant TEXT NOT NULL,
    link_id TEXT
);
CREATE TABLE IF NOT EXISTS counters (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tenant_keys (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    digest BLOB NOT NULL,
    roles TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_used_at REAL,
    PRIMARY KEY (tenant, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trash (
    incarnation TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    deleted_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS platform_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS links (
    tenant TEXT NOT NULL,
    link_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    target TEXT NOT NULL,
    reference TEXT,
    issued_by TEXT NOT NULL,
    issued_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    epoch INTEGER NOT NULL,
    user_epoch INTEGER NOT NULL,
    uses INTEGER NOT NULL DEFAULT 0,
    first_used_at REAL,
    last_used_at REAL,
    last_ip TEXT,
    epoch_id INTEGER NOT NULL DEFAULT 0,
    issue_hour INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, link_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS voided_links (
    tenant TEXT NOT NULL,
    link_id TEXT NOT NULL,
    revoked_at REAL NOT NULL,
    keep_until REAL NOT NULL,
    PRIMARY KEY (tenant, link_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bindings (
    tenant TEXT NOT NULL,
    link_id TEXT NOT NULL,
    device TEXT NOT NULL,
    keep_until REAL NOT NULL,
    PRIMARY KEY (tenant, link_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS store_info (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS tenant_key_digest ON tenant_keys (tenant, digest);
CREATE INDEX IF NOT EXISTS audit_tenant ON audit (tenant, id);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
CREATE INDEX IF NOT EXISTS signins_tenant ON signins (tenant, at);
CREATE INDEX IF NOT EXISTS signins_tenant_user ON signins (tenant, user_id, at);
CREATE INDEX IF NOT EXISTS signins_at ON signins (at);
CREATE INDEX IF NOT EXISTS platform_audit_at ON platform_audit (at);
CREATE INDEX IF NOT EXISTS links_order ON links (tenant, issued_at, link_id);
CREATE INDEX IF NOT EXISTS links_expiry ON links (expires_at);
CREATE INDEX IF NOT EXISTS voided_expiry ON voided_links (keep_until);
CREATE INDEX IF NOT EXISTS bindings_expiry ON bindings (keep_until);
"""
#: Columns added since the tables were first made: a store made before gets
#: them on its next start (with their defaults: binding off, the default
#: role mailboxes, no link id in older sign-ins).
_ADDED_COLUMNS = (
    ("tenants", "bind_to_first_device", "INTEGER NOT NULL DEFAULT 0"),
    ("tenants", "role_mailboxes", "TEXT"),
    ("signins", "link_id", "TEXT"),
    ("tenants", "epoch_id", "INTEGER NOT NULL DEFAULT 0"),
    ("links", "epoch_id", "INTEGER NOT NULL DEFAULT 0"),
    ("links", "issue_hour", "INTEGER NOT NULL DEFAULT 0"),
)
# After the columns: a user's links are found by the hour they were issued in,
# then the user. A batch's links all go into the current hour's part of the
# index, a few pages, where an index by user first (the one dropped here) took
# a random page for each link: at 100,000 links in the ledger most of the
# time of a batch's write went into writing those pages out again.
_LATE_SCHEMA = (
    "DROP INDEX IF EXISTS links_user",
    "UPDATE links SET issue_hour = CAST(issued_at / 3600 AS INTEGER) WHERE issue_hour = 0",
    "CREATE INDEX IF NOT EXISTS links_user_hour ON links (tenant, issue_hour, user_id)",
)
# The single-tenant version's layout (before tenants): one meta row, user
# epochs keyed by user id alone, logs without a tenant column. Taken over in
# place as the tenant ``default`` by _take_over.
_LEGACY_INDEXES = ("signins_user",)

# One statement, so concurrent hits from several workers never lose a count:
# a window that has ended starts again at ``amount``.
_COUNTER_INCR = (
    "INSERT INTO counters (key, value, expires_at) VALUES (?1, ?2, ?3 + ?4)"
    " ON CONFLICT (key) DO UPDATE SET"
    " value = CASE WHEN expires_at <= ?3 THEN ?2 ELSE value + ?2 END,"
    " expires_at = CASE WHEN expires_at <= ?3 THEN ?3 + ?4 ELSE expires_at END"
    " RETURNING value"
)

# One statement, one round trip: the tenant's incarnation, its global epoch,
# the user's epoch (0 for a user never revoked), the tenant's binding
# setting, whether the link is voided and the device it is bound to, and the
# global epoch's random identity, as of the same instant. No row: no such
# tenant. A tenant's rows elsewhere are keyed by its incarnation, so a tenant
# deleted and made again shares nothing with the old.
_STATE_COLUMNS = (
    "SELECT t.incarnation, t.epoch,"
    " COALESCE((SELECT u.epoch FROM user_epochs u"
    " WHERE u.tenant = t.incarnation AND u.user_id = :user), 0),"
    " t.bind_to_first_device,"
    " EXISTS (SELECT 1 FROM voided_links v WHERE v.tenant = t.incarnation AND v.link_id = :link),"
    " (SELECT b.device FROM bindings b WHERE b.tenant = t.incarnation AND b.link_id = :link),"
    " t.epoch_id"
)
_TOKEN_STATE = _STATE_COLUMNS + " FROM tenants t WHERE t.tenant_id = :tenant"
# The same, and the tenant key of a digest (NULLs when there is none).
_TOKEN_STATE_AND_KEY = (
    _STATE_COLUMNS + ", k.name, k.digest, k.roles, k.created_at, k.last_used_at"
    " FROM tenants t LEFT JOIN tenant_keys k ON k.tenant = t.incarnation AND k.digest = :digest"
    " WHERE t.tenant_id = :tenant"
)
# A link of the ledger with its status as a verification would answer now:
# expired whatever else, else revoked by the store, a bump, its user or
# itself, else active. :expired is now less the leeway.
_LINK_SELECT = (
    "SELECT l.link_id, l.user_id, l.target, l.reference, l.issued_by, l.issued_at,"
    " l.expires_at, l.epoch, l.user_epoch, l.uses, l.first_used_at, l.last_used_at, l.last_ip,"
    " CASE WHEN l.expires_at < :expired THEN 'expired'"
    " WHEN l.epoch != t.epoch OR l.epoch_id != t.epoch_id"
    " OR l.user_epoch != COALESCE((SELECT u.epoch FROM user_epochs u"
    " WHERE u.tenant = l.tenant AND u.user_id = l.user_id), 0)"
    " OR EXISTS (SELECT 1 FROM voided_links v WHERE v.tenant = l.tenant AND v.link_id = l.link_id)"
    " THEN 'revoked' ELSE 'active' END AS status,"
    " EXISTS (SELECT 1 FROM bindings b WHERE b.tenant = l.tenant AND b.link_id = l.link_id)"
    " FROM links l {index}JOIN tenants t ON t.incarnation = l.tenant WHERE t.tenant_id = :tenant"
)
_INSERT_LINK = (
    "INSERT OR IGNORE INTO links (tenant, link_id, user_id, target, reference, issued_by,"
    " issued_at, expires_at, epoch, user_epoch, epoch_id, issue_hour)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# One user's links: looked up hour by hour in links_user_hour, over the hours
# from the tenant's oldest link to its newest (SQLite would otherwise walk
# the whole ledger in issue order, the ORDER BY's index), then sorted.
_USER_LINK_SELECT = (
    "WITH RECURSIVE hours(h) AS ("  # noqa: S608 (fixed SQL only)
    " SELECT CAST(MAX(issued_at) / 3600 AS INTEGER) FROM links WHERE tenant = :inc"
    " UNION ALL SELECT h - 1 FROM hours, (SELECT CAST(MIN(issued_at) / 3600 AS INTEGER) AS low"
    " FROM links WHERE tenant = :inc) WHERE h > low) "
    + _LINK_SELECT.format(index="INDEXED BY links_user_hour ")
    + " AND l.issue_hour IN hours AND l.user_id = :user"
)
_LINK_SELECT = _LINK_SELECT.format(index="")
# A successful sign-in counts on its link: first use, last use and from where
# (the latest click wins, whichever worker wrote it first).
_USE_LINK = (
    "UPDATE links SET uses = uses + 1,"
    " first_used_at = MIN(COALESCE(first_used_at, :at), :at),"
    " last_ip = CASE WHEN last_used_at IS NULL OR :at >= last_used_at THEN :ip ELSE last_ip END,"
    " last_used_at = MAX(COALESCE(last_used_at, :at), :at)"
    " WHERE tenant = :tenant AND link_id = :link"
)
# Bounded removal of what outlived its link (WITHOUT ROWID: by primary key).
_CLEANUPS = (
    "DELETE FROM links WHERE (tenant, link_id) IN"
    " (SELECT tenant, link_id FROM links WHERE expires_at < ? LIMIT ?)",
    "DELETE FROM voided_links WHERE (tenant, link_id) IN"
    " (SELECT tenant, link_id FROM voided_links WHERE keep_until < ? LIMIT ?)",
    "DELETE FROM bindings WHERE (tenant, link_id) IN"
    " (SELECT tenant, link_id FROM bindings WHERE keep_until < ? LIMIT ?)",
)
# Sign-ins go in with one statement per power of two of rows, not one step a
# row: while SQLite works, the GIL passes to the clicking thread and back,
# a context switch each time. A handful of fixed statements stay cached.
_SIGNIN_CHUNKS = (64, 16, 4, 1)
_INSERT_SIGNINS = {
    n: "INSERT INTO signins (tenant, at, user_id, outcome, ip, user_agent, link_id) VALUES "  # noqa: S608 (placeholders only)
    + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * n)
    for n in _SIGNIN_CHUNKS
}
_SETTING_UPDATES = {
    "auto_login_enabled": "UPDATE tenants SET auto_login_enabled = ? WHERE tenant_id = ?",
    "token_ttl_seconds": "UPDATE tenants SET token_ttl_seconds = ? WHERE tenant_id = ?",
    "bind_to_first_device": "UPDATE tenants SET bind_to_first_device = ? WHERE tenant_id = ?",
    "role_mailboxes": "UPDATE tenants SET role_mailboxes = ? WHERE tenant_id = ?",
}
#: The settings' columns, in Settings' order.
_SETTINGS_COLUMNS = "auto_login_enabled, token_ttl_seconds, bind_to_first_device, role_mailboxes"
_META = (
    "SELECT incarnation, epoch, changed_at, changed_by, reason, portal_base_url, created_at,"
    " auto_login_enabled, token_ttl_seconds, bind_to_first_device, role_mailboxes"
    " FROM tenants WHERE tenant_id = ?"
)
#: Rows of a deleted tenant removed per step of the reaper: short
#: transactions, so other tenants' writes never wait long behind one.
_REAP_TABLES = (
    ("user_epochs", "user_id"),
    ("signins", "id"),
    ("audit", "id"),
    ("tenant_keys", "name"),
    ("links", "link_id"),
    ("voided_links", "link_id"),
    ("bindings", "link_id"),
)


def _settings(enabled: Any, ttl: Any, bind: Any, roles: Any) -> Settings:
    """Return the settings of a tenant row's four settings columns, or raise StoreDataError."""
    if not (isinstance(enabled, int) and isinstance(ttl, int) and isinstance(bind, int)):
        raise StoreDataError("a tenant row has settings of the wrong shape")
    if roles is None:
        return Settings(bool(enabled), ttl, bool(bind))
    try:
        names = json.loads(roles)
    except ValueError as e:
        raise StoreDataError(f"a tenant row has unreadable role mailboxes: {e}") from e
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise StoreDataError("a tenant row has role mailboxes of the wrong shape")
    return Settings(bool(enabled), ttl, bool(bind), tuple(names))


def _ts(moment: datetime) -> float:
    return moment.timestamp()


class _Guard:
    """Turn sqlite3's errors into the store's, around any call.

    A class rather than a generator-based context manager: it wraps the
    epoch read of every click, where a generator's setup costs more than the
    query's own overhead.
    """

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: Any, _tb: Any) -> bool:
        if kind is not None and issubclass(kind, sqlite3.OperationalError):
            # Locked past the timeout, disk I/O error, file gone: not our data's fault.
            raise StoreUnavailableError(f"SQLite store {self.path}: {error}") from error
        if kind is not None and issubclass(kind, sqlite3.DatabaseError):
            raise StoreDataError(f"SQLite store {self.path}: {error}") from error
        return False


class SqliteStore:
    """The :class:`~service.store.Store` on one SQLite file, acting in one tenant."""

    def __init__(self, path: str, *, defaults: Settings, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout
        self.defaults = defaults
        self.tenant_id = DEFAULT_TENANT
        self.legacy_before: float | None = None
        self._local = threading.local()
        self._guard = _Guard(path)
        self._create()

    def tenant(self, tenant_id: str) -> SqliteStore:
        """Return a view of this store acting in ``tenant_id``; it shares the connections."""
        if tenant_id == self.tenant_id:
            return self
        view = copy.copy(self)
        view.tenant_id = tenant_id
        return view

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        defaults: Settings,
        instance_path: str | None = None,
        sqlite_timeout_seconds: float = 5.0,
        **_ignored: Any,
    ) -> SqliteStore:
        """Open the store named ``sqlite:////abs/path.db`` or ``sqlite:///rel/path.db``.

        A relative path is taken relative to the instance folder, as
        Flask-SQLAlchemy does, so a development store never lands in the
        current directory by accident.
        """
        if not url.startswith("sqlite:///"):
            raise ConfigError(
                f"STORE_URL {url!r} is not a SQLite URL; write sqlite:////abs/path.db "
                "or sqlite:///relative/path.db"
            )
        raw = url[len("sqlite:///") :]
        if not raw or raw == ":memory:" or raw.startswith("file:"):
            raise ConfigError(
                "STORE_URL must name a SQLite file: an in-memory store would give each "
                "worker its own epoch"
            )
        path = Path(raw)
        if not path.is_absolute():
            path = Path(instance_path or ".") / path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"STORE_URL: cannot create folder {path.parent}: {e}") from e
        try:
            return cls(str(path), defaults=defaults, timeout=sqlite_timeout_seconds)
        except StoreUnavailableError as e:
            raise ConfigError(f"STORE_URL: cannot open SQLite store {path}: {e}") from e
        except StoreDataError as e:
            raise ConfigError(f"STORE_URL: {path} is not a store of this service: {e}") from e

    # -- connections -----------------------------------------------------

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self.timeout,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=64,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        return conn

    def _conn(self) -> sqlite3.Connection:
        # One connection per thread and per process: a connection must never
        # cross a fork (gunicorn preloads the app, then forks its workers).
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            self._open(local)
        elif self._file_id() != local.file:
            # The file was deleted or replaced (a restore, a new store made by
            # another process): an open connection would go on reading the old
            # one, accepting tokens the store on disk no longer knows. One stat
            # a call, against the open file's identity.
            log.warning("SQLite store %s was deleted or replaced: opening it anew", self.path)
            self._close(local)
            self._open(local)
            self._create()  # a new, empty file gets a new incarnation
        return local.conn

    def _open(self, local: threading.local) -> None:
        # FULL: a committed bump survives a power cut, not just a crash;
        # a lost bump would bring revoked tokens back to life.
        local.conn = self._connect("FULL")
        local.log_conn = None
        local.pid = os.getpid()
        local.file = self._file_id()

    @staticmethod
    def _close(local: threading.local) -> None:
        for conn in (local.conn, local.log_conn):
            if conn is not None:
                conn.close()

    def _file_id(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_dev, stat.st_ino

    def _log_conn(self) -> sqlite3.Connection:
        # The sign-in log and rate-limit counters are written on every click:
        # NORMAL (no fsync per commit in WAL mode) survives a crash of the
        # process; a power cut may lose the last entries, never an epoch.
        self._conn()
        if self._local.log_conn is None:
            self._local.log_conn = self._connect("NORMAL")
        return self._local.log_conn

    @contextmanager
    def _write(self, *, log: bool = False) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction; ``log`` for the NORMAL-sync connection."""
        with self._guard:
            conn = self._log_conn() if log else self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _create(self) -> None:
        with self._guard:
            conn = self._conn()
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreUnavailableError(f"cannot switch {self.path} to WAL mode")
        with self._write() as conn:
            legacy = self._take_over(conn)
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            for table, column, kind in _ADDED_COLUMNS:
                # Fixed names only, never a value: the list above.
                columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                if column not in columns:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            for statement in _LATE_SCHEMA:
                conn.execute(statement)
            if legacy is not None:
                self._finish_take_over(conn, legacy)
            if not self._exists(conn, DEFAULT_TENANT):
                now = utcnow()
                incarnation = self._insert_tenant(conn, DEFAULT_TENANT, None, now)
                self._audit(
                    conn, incarnation, now, "system", "store.create", {"incarnation": incarnation}
                )
            row = conn.execute(
                "SELECT value FROM store_info WHERE name = 'legacy_before'"
            ).fetchone()
        self.legacy_before = float(row[0]) if row else None
        self._meta()  # check the shape of an existing store now, not on the first click

    @staticmethod
    def _take_over(conn: sqlite3.Connection) -> tuple[Any, ...] | None:
        """Move a single-tenant store's tables aside; return its meta row (None: nothing to do).

        Runs inside the creating transaction, so a crash leaves the old store
        whole and the next start takes it over again; once done, the old
        ``meta`` table is gone and nothing here runs again.
        """
        if (
            conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
            ).fetchone()
            is None
        ):
            return None
        meta = conn.execute(
            "SELECT incarnation, epoch, changed_at, changed_by, reason,"
            " auto_login_enabled, token_ttl_seconds FROM meta WHERE id = 1"
        ).fetchone()
        if meta is None:
            raise StoreDataError("the single-tenant store has no meta row")
        conn.execute("ALTER TABLE user_epochs RENAME TO user_epochs_v1")
        for table in ("audit", "signins"):
            conn.execute(f"ALTER TABLE {table} ADD COLUMN tenant TEXT NOT NULL DEFAULT ''")
        for index in _LEGACY_INDEXES:
            conn.execute(f"DROP INDEX IF EXISTS {index}")
        return meta

    @staticmethod
    def _finish_take_over(conn: sqlite3.Connection, meta: tuple[Any, ...]) -> None:
        incarnation, epoch, changed_at, changed_by, reason, enabled, ttl = meta
        created = conn.execute(
            "SELECT MIN(at) FROM audit WHERE action = 'store.create'"
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO tenants (tenant_id, incarnation, portal_base_url, created_at, epoch,"
            " changed_at, changed_by, reason, auto_login_enabled, token_ttl_seconds)"
            " VALUES (?, ?, NULL, ?, ?, ?, ?, ?, ?, ?)",
            (
                DEFAULT_TENANT,
                incarnation,
                created if created is not None else changed_at,
                epoch,
                changed_at,
                changed_by,
                reason,
                enabled,
                ttl,
            ),
        )
        conn.execute(
            "INSERT INTO user_epochs SELECT ?, user_id, epoch, revoked_at FROM user_epochs_v1",
            (incarnation,),
        )
        conn.execute("DROP TABLE user_epochs_v1")
        conn.execute("UPDATE audit SET tenant = ?", (incarnation,))
        conn.execute("UPDATE signins SET tenant = ?", (incarnation,))
        conn.execute("DROP TABLE meta")
        conn.execute(
            "INSERT INTO store_info VALUES ('legacy_before', ?)", (repr(utcnow().timestamp()),)
        )
        log.warning("took over a single-tenant store as tenant %r", DEFAULT_TENANT)

    @staticmethod
    def _exists(conn: sqlite3.Connection, tenant_id: str) -> bool:
        row = conn.execute("SELECT 1 FROM tenants WHERE tenant_id = ?", (tenant_id,)).fetchone()
        return row is not None

    def _insert_tenant(
        self, conn: sqlite3.Connection, tenant_id: str, portal: str | None, now: datetime
    ) -> str:
        incarnation = secrets.token_urlsafe(9)
        reason = "store created" if tenant_id == DEFAULT_TENANT else "tenant created"
        conn.execute(
            "INSERT INTO tenants (tenant_id, incarnation, portal_base_url, created_at, epoch,"
            " changed_at, changed_by, reason, auto_login_enabled, token_ttl_seconds)"
            " VALUES (?, ?, ?, ?, 1, ?, 'system', ?, ?, ?)",
            (
                tenant_id,
                incarnation,
                portal,
                _ts(now),
                _ts(now),
                reason,
                int(self.defaults.auto_login_enabled),
                self.defaults.token_ttl_seconds,
            ),
        )
        return incarnation

    # -- reads -----------------------------------------------------------

    def _meta(self) -> tuple[Any, ...]:
        """Return the tenant's row: incarnation, epoch, its change, portal, creation, settings."""
        with self._guard:
            row = self._conn().execute(_META, (self.tenant_id,)).fetchone()
        if row is None:
            raise TenantNotFoundError(self.tenant_id)
        incarnation, epoch, changed_at, changed_by, reason, portal, created = row[:7]
        if not (
            isinstance(incarnation, str)
            and isinstance(epoch, int)
            and isinstance(changed_at, int | float)
            and isinstance(created, int | float)
            and (portal is None or isinstance(portal, str))
        ):
            raise StoreDataError(f"SQLite store {self.path} has a tenant row of the wrong shape")
        return (*row[:7], _settings(*row[7:]))

    def _incarnation(self, conn: sqlite3.Connection) -> str:
        row = conn.execute(
            "SELECT incarnation FROM tenants WHERE tenant_id = ?", (self.tenant_id,)
        ).fetchone()
        if row is None:
            raise TenantNotFoundError(self.tenant_id)
        return row[0]

    def token_state(
        self, user_id: str, key_digest: bytes | None = None, link: LinkCheck | None = None
    ) -> TokenState:
        params: dict[str, Any] = {
            "user": user_id,
            "tenant": self.tenant_id,
            "link": None if link is None else link.link_id,
        }
        with self._guard:
            if key_digest is None:
                row = self._conn().execute(_TOKEN_STATE, params).fetchone()
            else:
                params["digest"] = key_digest
                row = self._conn().execute(_TOKEN_STATE_AND_KEY, params).fetchone()
        if row is None:
            raise TenantNotFoundError(self.tenant_id)
        incarnation, epoch, user_epoch, bind, voided, bound, epoch_id = row[:7]
        if (
            type(incarnation) is not str
            or type(epoch) is not int
            or type(user_epoch) is not int
            or type(epoch_id) is not int
        ):
            raise StoreDataError(f"SQLite store {self.path} has epochs of the wrong shape")
        key = self._key(row[7:]) if len(row) > 7 and row[7] is not None else None
        if (
            link is not None
            and bind
            and bound is None
            and link.device is not None
            and not voided
            and (link.incarnation, link.epoch, link.user_epoch, link.epoch_id)
            == (incarnation, epoch, user_epoch, epoch_id)
        ):
            bound = self._bind(incarnation, link)
        return TokenState(
            incarnation, epoch, user_epoch, key, bool(voided), bool(bind), bound, epoch_id=epoch_id
        )

    def _bind(self, incarnation: str, link: LinkCheck) -> str:
        """Bind a current link to its first device; return the device it is bound to.

        Of two first uses at once exactly one binds: the insert is ignored
        when a binding exists, and both read back the one that was kept.
        """
        with self._write() as conn:
            conn.execute(
                "INSERT INTO bindings (tenant, link_id, device, keep_until) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (tenant, link_id) DO NOTHING",
                (incarnation, link.link_id, link.device, link.expires_at + LEDGER_GRACE_SECONDS),
            )
            row = conn.execute(
                "SELECT device FROM bindings WHERE tenant = ? AND link_id = ?",
                (incarnation, link.link_id),
            ).fetchone()
        return row[0]

    def issue_state(self, user_ids: Sequence[str]) -> IssueState:
        unique = list(dict.fromkeys(user_ids))
        with self._guard:
            conn = self._conn()
            # One read transaction so settings and epochs are one snapshot.
            conn.execute("BEGIN")
            try:
                meta = self._meta()
                (epoch_id,) = conn.execute(
                    "SELECT epoch_id FROM tenants WHERE tenant_id = ?", (self.tenant_id,)
                ).fetchone()
                epochs: dict[str, int] = {}
                for start in range(0, len(unique), 900):
                    chunk = unique[start : start + 900]
                    # Only placeholders are joined into the statement, never a value.
                    marks = ",".join("?" * len(chunk))
                    for user_id, epoch in conn.execute(
                        "SELECT user_id, epoch FROM user_epochs"  # noqa: S608
                        f" WHERE tenant = ? AND user_id IN ({marks})",
                        (meta[0], *chunk),
                    ):
                        epochs[user_id] = epoch
            finally:
                conn.execute("COMMIT")
        incarnation, epoch, _, _, _, portal, _, settings = meta
        return IssueState(
            incarnation=incarnation,
            epoch=epoch,
            settings=settings,
            user_epochs={u: epochs.get(u, 0) for u in unique},
            portal_base_url=portal,
            epoch_id=epoch_id,
        )

    def settings(self) -> Settings:
        meta = self._meta()
        return meta[7]

    def tenant_info(self) -> TenantInfo:
        meta = self._meta()
        return TenantInfo(self.tenant_id, meta[5], from_seconds(meta[6]), meta[7])

    def epoch(self) -> EpochInfo:
        _, epoch, changed_at, changed_by, reason, _, _, _ = self._meta()
        return EpochInfo(epoch, from_seconds(changed_at), changed_by, reason)

    def signins(self, *, user_id: str | None, limit: int) -> list[Signin]:
        with self._guard:
            conn = self._conn()
            incarnation = self._incarnation(conn)
            # By the click's own time (to the microsecond), whichever worker wrote it first.
            if user_id is None:
                rows = conn.execute(
                    "SELECT at, user_id, outcome, ip, user_agent, link_id FROM signins"
                    " WHERE tenant = ? ORDER BY at DESC, id DESC LIMIT ?",
                    (incarnation, limit),
                )
            else:
                rows = conn.execute(
                    "SELECT at, user_id, outcome, ip, user_agent, link_id FROM signins"
                    " WHERE tenant = ? AND user_id = ? ORDER BY at DESC, id DESC LIMIT ?",
                    (incarnation, user_id, limit),
                )
            return [
                Signin(from_seconds(at), u, o, ip, ua, link)
                for at, u, o, ip, ua, link in rows.fetchall()
            ]

    def audit_events(self, *, limit: int) -> list[AuditEvent]:
        with self._guard:
            conn = self._conn()
            rows = conn.execute(
                "SELECT at, actor, action, detail FROM audit WHERE tenant = ?"
                " ORDER BY id DESC LIMIT ?",
                (self._incarnation(conn), limit),
            ).fetchall()
        return self._events(rows)

    @staticmethod
    def _events(rows: list[Any]) -> list[AuditEvent]:
        events = []
        for at, actor, action, detail in rows:
            try:
                parsed = json.loads(detail)
            except ValueError as e:
                raise StoreDataError(f"audit event with unreadable detail: {e}") from e
            events.append(AuditEvent(from_seconds(at), actor, action, parsed))
        return events

    def platform_audit_events(self, *, limit: int) -> list[AuditEvent]:
        with self._guard:
            rows = (
                self._conn()
                .execute(
                    "SELECT at, actor, action, detail FROM platform_audit ORDER BY id DESC LIMIT ?",
                    (limit,),
                )
                .fetchall()
            )
        return self._events(rows)

    def ping(self) -> str | None:
        self._meta()
        return None

    # -- tenants -----------------------------------------------------------

    def _tenant_row(self, conn: sqlite3.Connection, tenant_id: str) -> TenantInfo:
        row = conn.execute(
            "SELECT portal_base_url, created_at, "  # noqa: S608 (fixed column names)
            + _SETTINGS_COLUMNS
            + " FROM tenants WHERE tenant_id = ?",
            (tenant_id,),
        ).fetchone()
        if row is None:
            raise TenantNotFoundError(tenant_id)
        return TenantInfo(tenant_id, row[0], from_seconds(row[1]), _settings(*row[2:]))

    def create_tenant(
        self, tenant_id: str, portal_base_url: str, *, actor: str, reason: str, now: datetime
    ) -> TenantInfo:
        with self._write() as conn:
            if self._exists(conn, tenant_id):
                raise ConflictError("tenant_exists", f"a tenant {tenant_id!r} exists already")
            incarnation = self._insert_tenant(conn, tenant_id, portal_base_url, now)
            detail = {"tenant_id": tenant_id, "portal_base_url": portal_base_url, "reason": reason}
            self._audit(conn, incarnation, now, actor, "tenant.create", detail)
            self._platform_audit(conn, now, actor, "tenant.create", detail)
            return self._tenant_row(conn, tenant_id)

    def get_tenant(self, tenant_id: str) -> TenantInfo:
        with self._guard:
            return self._tenant_row(self._conn(), tenant_id)

    def list_tenants(self, *, after: str | None, prefix: str, limit: int) -> list[TenantInfo]:
        # Keyset paging on the primary key: a page costs its own rows, never
        # the tenants before it. The prefix is a range, not a LIKE pattern.
        with self._guard:
            rows = (
                self._conn()
                .execute(
                    "SELECT tenant_id, portal_base_url, created_at, "  # noqa: S608 (fixed names)
                    + _SETTINGS_COLUMNS
                    + " FROM tenants WHERE tenant_id > ?"
                    " AND tenant_id >= ? AND tenant_id < ? ORDER BY tenant_id LIMIT ?",
                    (after or "", prefix, prefix + "\uffff", limit),
                )
                .fetchall()
            )
        return [TenantInfo(r[0], r[1], from_seconds(r[2]), _settings(*r[3:])) for r in rows]

    def update_tenant(
        self, tenant_id: str, portal_base_url: str, *, actor: str, reason: str, now: datetime
    ) -> TenantInfo:
        with self._write() as conn:
            row = conn.execute(
                "UPDATE tenants SET portal_base_url = ? WHERE tenant_id = ? RETURNING incarnation",
                (portal_base_url, tenant_id),
            ).fetchone()
            if row is None:
                raise TenantNotFoundError(tenant_id)
            detail = {"tenant_id": tenant_id, "portal_base_url": portal_base_url, "reason": reason}
            self._audit(conn, row[0], now, actor, "tenant.update", detail)
            self._platform_audit(conn, now, actor, "tenant.update", detail)
            return self._tenant_row(conn, tenant_id)

    def delete_tenant(self, tenant_id: str, *, actor: str, reason: str, now: datetime) -> None:
        with self._write() as conn:
            row = conn.execute(
                "DELETE FROM tenants WHERE tenant_id = ? RETURNING incarnation", (tenant_id,)
            ).fetchone()
            if row is None:
                raise TenantNotFoundError(tenant_id)
            # The tenant is gone in this one transaction: its tokens' incarnation
            # matches no tenant, its keys are found through no tenant. Its rows
            # go later, a few at a time (reap), keyed by the old incarnation, so
            # a tenant made again under the id never sees or loses them.
            conn.execute("INSERT INTO trash VALUES (?, ?, ?)", (row[0], tenant_id, _ts(now)))
            detail = {"tenant_id": tenant_id, "reason": reason}
            self._platform_audit(conn, now, actor, "tenant.delete", detail)

    def reap(self, *, budget: int) -> bool:
        with self._guard:
            row = self._conn().execute("SELECT incarnation FROM trash LIMIT 1").fetchone()
        if row is None:
            return False
        incarnation = row[0]
        for table, column in _REAP_TABLES:
            with self._write() as conn:
                # Only fixed table and column names are formatted in, never a value.
                removed = conn.execute(
                    f"DELETE FROM {table} WHERE tenant = ? AND {column} IN"  # noqa: S608
                    f" (SELECT {column} FROM {table} WHERE tenant = ? LIMIT ?)",
                    (incarnation, incarnation, budget),
                ).rowcount
            if removed:
                return True
        with self._write() as conn:
            conn.execute("DELETE FROM trash WHERE incarnation = ?", (incarnation,))
        with self._guard:
            return self._conn().execute("SELECT 1 FROM trash LIMIT 1").fetchone() is not None

    # -- tenant keys ---------------------------------------------------------

    @staticmethod
    def _key(row: tuple[Any, ...]) -> KeyRecord:
        name, digest, roles, created, used = row
        return KeyRecord(
            name,
            bytes(digest),
            frozenset(json.loads(roles)),
            from_seconds(created),
            None if used is None else from_seconds(used),
        )

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
        with self._write() as conn:
            incarnation = self._incarnation(conn)
            taken = conn.execute(
                "SELECT 1 FROM tenant_keys WHERE tenant = ? AND name = ?", (incarnation, name)
            ).fetchone()
            if taken is not None:
                raise ConflictError("key_exists", f"this tenant has a key named {name!r}")
            conn.execute(
                "INSERT INTO tenant_keys VALUES (?, ?, ?, ?, ?, NULL)",
                (incarnation, name, digest, json.dumps(sorted(roles)), _ts(now)),
            )
            detail = {
                "tenant_id": self.tenant_id,
                "name": name,
                "roles": sorted(roles),
                "reason": reason,
            }
            self._audit(conn, incarnation, now, actor, "key.create", detail)
            self._platform_audit(conn, now, actor, "key.create", detail)
        return KeyRecord(name, digest, roles, now, None)

    def keys(self) -> list[KeyRecord]:
        with self._guard:
            conn = self._conn()
            rows = conn.execute(
                "SELECT name, digest, roles, created_at, last_used_at FROM tenant_keys"
                " WHERE tenant = ? ORDER BY name",
                (self._incarnation(conn),),
            ).fetchall()
        return [self._key(row) for row in rows]

    def find_key(self, digest: bytes) -> KeyRecord | None:
        with self._guard:
            row = (
                self._conn()
                .execute(
                    "SELECT k.name, k.digest, k.roles, k.created_at, k.last_used_at"
                    " FROM tenants t JOIN tenant_keys k ON k.tenant = t.incarnation"
                    " WHERE t.tenant_id = ? AND k.digest = ?",
                    (self.tenant_id, digest),
                )
                .fetchone()
            )
        return None if row is None else self._key(row)

    def touch_key(self, name: str, now: datetime) -> None:
        with self._guard:
            self._log_conn().execute(
                "UPDATE tenant_keys SET last_used_at = ? WHERE name = ? AND tenant ="
                " (SELECT incarnation FROM tenants WHERE tenant_id = ?)",
                (_ts(now), name, self.tenant_id),
            )

    def revoke_key(self, name: str, *, actor: str, reason: str, now: datetime) -> None:
        with self._write() as conn:
            incarnation = self._incarnation(conn)
            row = conn.execute(
                "DELETE FROM tenant_keys WHERE tenant = ? AND name = ? RETURNING name",
                (incarnation, name),
            ).fetchone()
            if row is None:
                raise KeyNotFoundError(name)
            detail = {"tenant_id": self.tenant_id, "name": name, "reason": reason}
            self._audit(conn, incarnation, now, actor, "key.revoke", detail)
            self._platform_audit(conn, now, actor, "key.revoke", detail)

    # -- writes ----------------------------------------------------------

    @staticmethod
    def _audit(
        conn: sqlite3.Connection,
        tenant: str,
        now: datetime,
        actor: str,
        action: str,
        detail: Mapping[str, Any],
    ) -> None:
        conn.execute(
            "INSERT INTO audit (tenant, at, actor, action, detail) VALUES (?, ?, ?, ?, ?)",
            (tenant, _ts(now), actor, action, json.dumps(dict(detail), sort_keys=True)),
        )

    @staticmethod
    def _platform_audit(
        conn: sqlite3.Connection, now: datetime, actor: str, action: str, detail: Mapping[str, Any]
    ) -> None:
        conn.execute(
            "INSERT INTO platform_audit (at, actor, action, detail) VALUES (?, ?, ?, ?)",
            (_ts(now), actor, action, json.dumps(dict(detail), sort_keys=True)),
        )

    def update_settings(self, changes: Mapping[str, Any], *, actor: str, now: datetime) -> Settings:
        with self._write() as conn:
            incarnation = self._incarnation(conn)
            for name, value in changes.items():
                # A fixed statement per setting: an unknown name is a KeyError,
                # never a column name written into SQL.
                stored = json.dumps(list(value)) if name == "role_mailboxes" else int(value)
                conn.execute(_SETTING_UPDATES[name], (stored, self.tenant_id))
            self._audit(conn, incarnation, now, actor, "settings.update", dict(changes))
            # Read in the same transaction: what was written, not a later change.
            return self.settings()

    def bump_epoch(self, *, actor: str, reason: str, now: datetime) -> EpochInfo:
        with self._write() as conn:
            row = conn.execute(
                "UPDATE tenants SET epoch = epoch + 1, epoch_id = ?, changed_at = ?,"
                " changed_by = ?, reason = ? WHERE tenant_id = ? RETURNING epoch, incarnation",
                (fresh_epoch_value(), _ts(now), actor, reason, self.tenant_id),
            ).fetchone()
            if row is None:
                raise TenantNotFoundError(self.tenant_id)
            self._audit(conn, row[1], now, actor, "epoch.bump", {"epoch": row[0], "reason": reason})
        return EpochInfo(row[0], now, actor, reason)

    def revoke_user(self, user_id: str, *, actor: str, reason: str, now: datetime) -> int:
        with self._write() as conn:
            incarnation = self._incarnation(conn)
            old = conn.execute(
                "SELECT epoch FROM user_epochs WHERE tenant = ? AND user_id = ?",
                (incarnation, user_id),
            ).fetchone()
            # A fresh random value, not epoch + 1: never one a token had before.
            row = conn.execute(
                "INSERT INTO user_epochs (tenant, user_id, epoch, revoked_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (tenant, user_id) DO UPDATE SET epoch = excluded.epoch,"
                " revoked_at = excluded.revoked_at RETURNING epoch",
                (incarnation, user_id, fresh_epoch_value(old and old[0]), _ts(now)),
            ).fetchone()
            self._audit(
                conn,
                incarnation,
                now,
                actor,
                "user.revoke",
                {"user_id": user_id, "user_epoch": row[0], "reason": reason},
            )
        return int(row[0])

    def record_signins(self, signins: Sequence[Signin], incarnation: str | None = None) -> None:
        with self._write(log=True) as conn:
            row = conn.execute(
                "SELECT incarnation FROM tenants WHERE tenant_id = ?", (self.tenant_id,)
            ).fetchone()
            if row is None or incarnation not in (None, row[0]):
                return  # the tenant the clicks were of is gone, and its log with it
            tenant = row[0]
            rows = [
                (tenant, _ts(s.at), s.user_id, s.outcome, s.ip, s.user_agent, s.link_id)
                for s in signins
            ]
            start = 0
            for size in _SIGNIN_CHUNKS:
                while len(rows) - start >= size:
                    chunk = rows[start : start + size]
                    conn.execute(_INSERT_SIGNINS[size], tuple(chain.from_iterable(chunk)))
                    start += size
            # The ledger counts the successful uses of each link.
            uses = [
                {"at": _ts(s.at), "ip": s.ip, "tenant": tenant, "link": s.link_id}
                for s in signins
                if s.outcome == "ok" and s.link_id is not None
            ]
            if uses:
                conn.executemany(_USE_LINK, uses)

    # -- the ledger ---------------------------------------------------------

    def record_links(self, links: Sequence[LinkRecord], incarnation: str, now: datetime) -> None:
        rows = [
            (
                incarnation,
                link.link_id,
                link.user_id,
                link.target,
                link.reference,
                link.issued_by,
                _ts(link.issued_at),
                _ts(link.expires_at),
                link.epoch,
                link.user_epoch,
                link.epoch_id,
                int(link.issued_at.timestamp() // 3600),
            )
            for link in links
        ]
        # On the log's connection (no fsync per commit), like the sign-in log: a
        # power cut may lose the newest entries of the ledger, never a revocation.
        with self._write(log=True) as conn:
            if self._incarnation(conn) != incarnation:
                return  # the tenant was deleted (and made again) since the read
            conn.executemany(_INSERT_LINK, rows)
            # What outlived its link goes a little at a time with each issue,
            # so the ledger stays bounded even where nobody ever clicks.
            cutoff = now.timestamp()
            budget = len(rows) + LEDGER_CLEANUP_EXTRA
            conn.execute(_CLEANUPS[0], (cutoff - LEDGER_GRACE_SECONDS, budget))
            conn.execute(_CLEANUPS[1], (cutoff, budget))
            conn.execute(_CLEANUPS[2], (cutoff, budget))

    def record_link_chunks(
        self, chunks: Iterable[Sequence[LinkRecord]], incarnation: str, now: datetime
    ) -> None:
        # One transaction for the batch: SQLite works in this thread, nothing
        # to overlap with the signing.
        self.record_links([link for chunk in chunks for link in chunk], incarnation, now)

    @staticmethod
    def _link(row: Sequence[Any]) -> LinkRecord:
        (link_id, user_id, target, reference, issued_by, issued_at, expires_at, epoch, user_epoch,
         uses, first, last, ip, status, bound) = row  # fmt: skip
        return LinkRecord(
            link_id,
            user_id,
            target,
            reference,
            issued_by,
            from_seconds(issued_at),
            from_seconds(expires_at),
            epoch,
            user_epoch,
            status,
            uses,
            None if first is None else from_seconds(first),
            None if last is None else from_seconds(last),
            ip,
            bool(bound),
        )

    def links(
        self,
        *,
        user_id: str | None,
        status: str | None,
        after: str | None,
        limit: int,
        expired_before: float,
    ) -> tuple[list[LinkRecord], str | None]:
        params: dict[str, Any] = {
            "tenant": self.tenant_id,
            "expired": expired_before,
            "user": user_id,
            "status": status,
            "limit": limit + 1,
        }
        where = ""
        with self._guard:
            conn = self._conn()
            incarnation = self._incarnation(conn)
            params["inc"] = incarnation
            if after is not None:
                row = conn.execute(
                    "SELECT issued_at FROM links WHERE tenant = ? AND link_id = ?",
                    (incarnation, after),
                ).fetchone()
                if row is None:
                    raise LinkNotFoundError(after)
                params.update(at=row[0], after=after)
                where += " AND (l.issued_at, l.link_id) < (:at, :after)"
            select = _LINK_SELECT if user_id is None else _USER_LINK_SELECT
            query = f"{select}{where} ORDER BY l.issued_at DESC, l.link_id DESC"
            if status is not None:
                # Only fixed SQL is formatted in; every value is a parameter.
                query = f"SELECT * FROM ({query}) WHERE status = :status"  # noqa: S608
            rows = conn.execute(query + " LIMIT :limit", params).fetchall()
        page = [self._link(row) for row in rows[:limit]]
        return page, (page[-1].link_id if len(rows) > limit else None)

    def link(self, link_id: str, *, expired_before: float) -> LinkRecord | None:
        params = {"tenant": self.tenant_id, "expired": expired_before, "link": link_id}
        with self._guard:
            conn = self._conn()
            self._incarnation(conn)  # TenantNotFoundError first
            row = conn.execute(_LINK_SELECT + " AND l.link_id = :link", params).fetchone()
        return None if row is None else self._link(row)

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
        at = _ts(now)
        with self._write() as conn:
            incarnation = self._incarnation(conn)
            detail: dict[str, Any] = {"link_id": link_id, "reason": reason}
            if ledger:
                row = conn.execute(
                    "SELECT expires_at, user_id FROM links WHERE tenant = ? AND link_id = ?",
                    (incarnation, link_id),
                ).fetchone()
                if row is None:
                    raise LinkNotFoundError(link_id)
                keep_until = row[0] + leeway
                if keep_until < at:
                    return LinkRevocation(link_id, now, expired=True)  # nothing to store
                detail["user_id"] = row[1]
            else:
                keep_until = at + max_ttl + leeway
            conn.execute(
                "INSERT INTO voided_links (tenant, link_id, revoked_at, keep_until)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (tenant, link_id) DO UPDATE"
                " SET revoked_at = excluded.revoked_at,"
                " keep_until = MAX(keep_until, excluded.keep_until)",
                (incarnation, link_id, at, keep_until),
            )
            self._audit(conn, incarnation, now, actor, "link.revoke", detail)
        return LinkRevocation(link_id, now)

    def prune(self, *, before: datetime, tenants: Sequence[str] = ()) -> None:
        # Every tenant's old entries at once: the tables are shared, the
        # deletes use the time indexes.
        with self._write() as conn:
            conn.execute("DELETE FROM audit WHERE at < ?", (_ts(before),))
            conn.execute("DELETE FROM signins WHERE at < ?", (_ts(before),))
            conn.execute("DELETE FROM platform_audit WHERE at < ?", (_ts(before),))
            now = utcnow().timestamp()
            conn.execute("DELETE FROM counters WHERE expires_at < ?", (now,))
            conn.execute("DELETE FROM links WHERE expires_at < ?", (now - LEDGER_GRACE_SECONDS,))
            conn.execute("DELETE FROM voided_links WHERE keep_until < ?", (now,))
            conn.execute("DELETE FROM bindings WHERE keep_until < ?", (now,))

    def counter_incr(self, key: str, *, expiry_seconds: int, amount: int = 1) -> int:
        now = utcnow().timestamp()
        with self._guard:
            row = (
                self._log_conn()
                .execute(_COUNTER_INCR, (key, amount, now, expiry_seconds))
                .fetchone()
            )
        return int(row[0])

    def _counter(self, key: str) -> tuple[int, float]:
        now = utcnow().timestamp()
        with self._guard:
            row = (
                self._conn()
                .execute(
                    "SELECT value, expires_at FROM counters WHERE key = ? AND expires_at > ?",
                    (key, now),
                )
                .fetchone()
            )
        return (int(row[0]), float(row[1])) if row else (0, now)

    def counter_get(self, key: str) -> int:
        return self._counter(key)[0]

    def counter_expiry(self, key: str) -> float:
        return self._counter(key)[1]

    def counter_clear(self, key: str) -> None:
        with self._guard:
            self._conn().execute("DELETE FROM counters WHERE key = ?", (key,))

    def close(self) -> None:
        local = self._local
        if getattr(local, "pid", None) == os.getpid():
            self._close(local)
        self._local = threading.local()
