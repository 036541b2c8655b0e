"""The embedded store: one SQLite file in WAL mode, for one host.

Every worker process (and thread) opens its own connection; WAL lets
readers run while one writer commits, and every write is one ``BEGIN
IMMEDIATE`` transaction, so concurrent bumps from several gunicorn workers
serialise in SQLite and none is lost.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from itertools import chain
from pathlib import Path
from typing import Any

from service.clock import from_seconds, utcnow
from service.errors import ConfigError, StoreDataError, StoreUnavailableError
from service.store import AuditEvent, EpochInfo, IssueState, Settings, Signin, TokenState

__all__ = ["SqliteStore"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    incarnation TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    changed_at REAL NOT NULL,
    changed_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    auto_login_enabled INTEGER NOT NULL,
    token_ttl_seconds INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS user_epochs (
    user_id TEXT PRIMARY KEY,
    epoch INTEGER NOT NULL,
    revoked_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
CREATE TABLE IF NOT EXISTS signins (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    user_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    ip TEXT,
    user_agent TEXT
);
CREATE INDEX IF NOT EXISTS signins_user ON signins (user_id, id);
CREATE INDEX IF NOT EXISTS signins_at ON signins (at);
CREATE TABLE IF NOT EXISTS counters (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
"""

# One statement, so concurrent hits from several workers never lose a count:
# a window that has ended starts again at ``amount``.
_COUNTER_INCR = (
    "INSERT INTO counters (key, value, expires_at) VALUES (?1, ?2, ?3 + ?4)"
    " ON CONFLICT (key) DO UPDATE SET"
    " value = CASE WHEN expires_at <= ?3 THEN ?2 ELSE value + ?2 END,"
    " expires_at = CASE WHEN expires_at <= ?3 THEN ?3 + ?4 ELSE expires_at END"
    " RETURNING value"
)

# One statement, one round trip: the incarnation, the global epoch and the
# user's epoch (0 for a user never revoked) as of the same instant.
_TOKEN_STATE = (
    "SELECT incarnation, epoch,"
    " COALESCE((SELECT epoch FROM user_epochs WHERE user_id = ?), 0)"
    " FROM meta WHERE id = 1"
)
# Sign-ins go in with one statement per power of two of rows, not one step a
# row: while SQLite works, the GIL passes to the clicking thread and back,
# a context switch each time. A handful of fixed statements stay cached.
_SIGNIN_CHUNKS = (64, 16, 4, 1)
_INSERT_SIGNINS = {
    n: "INSERT INTO signins (at, user_id, outcome, ip, user_agent) VALUES "  # noqa: S608 (placeholders only)
    + ", ".join(["(?, ?, ?, ?, ?)"] * n)
    for n in _SIGNIN_CHUNKS
}
_SETTING_UPDATES = {
    "auto_login_enabled": "UPDATE meta SET auto_login_enabled = ? WHERE id = 1",
    "token_ttl_seconds": "UPDATE meta SET token_ttl_seconds = ? WHERE id = 1",
}
_META = (
    "SELECT incarnation, epoch, changed_at, changed_by, reason,"
    " auto_login_enabled, token_ttl_seconds FROM meta WHERE id = 1"
)


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
    """The :class:`~service.store.Store` on one SQLite file."""

    def __init__(self, path: str, *, defaults: Settings, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout
        self.defaults = defaults
        self._local = threading.local()
        self._guard = _Guard(path)
        self._create()

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
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            if conn.execute("SELECT 1 FROM meta WHERE id = 1").fetchone() is None:
                now = utcnow()
                incarnation = secrets.token_urlsafe(9)
                conn.execute(
                    "INSERT INTO meta VALUES (1, ?, 1, ?, 'system', 'store created', ?, ?)",
                    (
                        incarnation,
                        _ts(now),
                        int(self.defaults.auto_login_enabled),
                        self.defaults.token_ttl_seconds,
                    ),
                )
                self._audit(conn, now, "system", "store.create", {"incarnation": incarnation})
        self._meta()  # check the shape of an existing store now, not on the first click

    # -- reads -----------------------------------------------------------

    def _meta(self) -> tuple[Any, ...]:
        with self._guard:
            row = self._conn().execute(_META).fetchone()
        if row is None:
            raise StoreDataError(f"SQLite store {self.path} has no meta row")
        incarnation, epoch, changed_at, changed_by, reason, enabled, ttl = row
        if not (
            isinstance(incarnation, str)
            and isinstance(epoch, int)
            and isinstance(enabled, int)
            and isinstance(ttl, int)
            and isinstance(changed_at, int | float)
        ):
            raise StoreDataError(f"SQLite store {self.path} has a meta row of the wrong shape")
        return row

    def token_state(self, user_id: str) -> TokenState:
        with self._guard:
            row = self._conn().execute(_TOKEN_STATE, (user_id,)).fetchone()
        if row is None:
            raise StoreDataError(f"SQLite store {self.path} has no meta row")
        incarnation, epoch, user_epoch = row
        if type(incarnation) is not str or type(epoch) is not int or type(user_epoch) is not int:
            raise StoreDataError(f"SQLite store {self.path} has epochs of the wrong shape")
        return TokenState(incarnation, epoch, user_epoch)

    def issue_state(self, user_ids: Sequence[str]) -> IssueState:
        unique = list(dict.fromkeys(user_ids))
        with self._guard:
            conn = self._conn()
            # One read transaction so settings and epochs are one snapshot.
            conn.execute("BEGIN")
            try:
                meta = self._meta()
                epochs: dict[str, int] = {}
                for start in range(0, len(unique), 900):
                    chunk = unique[start : start + 900]
                    # Only placeholders are joined into the statement, never a value.
                    marks = ",".join("?" * len(chunk))
                    for user_id, epoch in conn.execute(
                        f"SELECT user_id, epoch FROM user_epochs WHERE user_id IN ({marks})",  # noqa: S608
                        chunk,
                    ):
                        epochs[user_id] = epoch
            finally:
                conn.execute("COMMIT")
        incarnation, epoch, _, _, _, enabled, ttl = meta
        return IssueState(
            incarnation=incarnation,
            epoch=epoch,
            settings=Settings(bool(enabled), ttl),
            user_epochs={u: epochs.get(u, 0) for u in unique},
        )

    def settings(self) -> Settings:
        meta = self._meta()
        return Settings(bool(meta[5]), meta[6])

    def epoch(self) -> EpochInfo:
        _, epoch, changed_at, changed_by, reason, _, _ = self._meta()
        return EpochInfo(epoch, from_seconds(changed_at), changed_by, reason)

    def signins(self, *, user_id: str | None, limit: int) -> list[Signin]:
        with self._guard:
            if user_id is None:
                rows = self._conn().execute(
                    "SELECT at, user_id, outcome, ip, user_agent FROM signins"
                    " ORDER BY at DESC, id DESC LIMIT ?",
                    (limit,),
                )
            else:
                rows = self._conn().execute(
                    "SELECT at, user_id, outcome, ip, user_agent FROM signins"
                    " WHERE user_id = ? ORDER BY at DESC, id DESC LIMIT ?",
                    (user_id, limit),
                )
            return [Signin(from_seconds(at), u, o, ip, ua) for at, u, o, ip, ua in rows.fetchall()]

    def audit_events(self, *, limit: int) -> list[AuditEvent]:
        with self._guard:
            rows = (
                self._conn()
                .execute(
                    "SELECT at, actor, action, detail FROM audit ORDER BY id DESC LIMIT ?", (limit,)
                )
                .fetchall()
            )
        events = []
        for at, actor, action, detail in rows:
            try:
                parsed = json.loads(detail)
            except ValueError as e:
                raise StoreDataError(f"audit event with unreadable detail: {e}") from e
            events.append(AuditEvent(from_seconds(at), actor, action, parsed))
        return events

    def ping(self) -> None:
        self._meta()

    # -- writes ----------------------------------------------------------

    @staticmethod
    def _audit(
        conn: sqlite3.Connection, now: datetime, actor: str, action: str, detail: Mapping[str, Any]
    ) -> None:
        conn.execute(
            "INSERT INTO audit (at, actor, action, detail) VALUES (?, ?, ?, ?)",
            (_ts(now), actor, action, json.dumps(dict(detail), sort_keys=True)),
        )

    def update_settings(self, changes: Mapping[str, Any], *, actor: str, now: datetime) -> Settings:
        with self._write() as conn:
            for name, value in changes.items():
                # A fixed statement per setting: an unknown name is a KeyError,
                # never a column name written into SQL.
                conn.execute(_SETTING_UPDATES[name], (int(value),))
            self._audit(conn, now, actor, "settings.update", dict(changes))
            # Read in the same transaction: what was written, not a later change.
            return self.settings()

    def bump_epoch(self, *, actor: str, reason: str, now: datetime) -> EpochInfo:
        with self._write() as conn:
            row = conn.execute(
                "UPDATE meta SET epoch = epoch + 1, changed_at = ?, changed_by = ?, reason = ?"
                " WHERE id = 1 RETURNING epoch",
                (_ts(now), actor, reason),
            ).fetchone()
            if row is None:
                raise StoreDataError(f"SQLite store {self.path} has no meta row")
            self._audit(conn, now, actor, "epoch.bump", {"epoch": row[0], "reason": reason})
        return EpochInfo(row[0], now, actor, reason)

    def revoke_user(self, user_id: str, *, actor: str, reason: str, now: datetime) -> int:
        with self._write() as conn:
            row = conn.execute(
                "INSERT INTO user_epochs (user_id, epoch, revoked_at) VALUES (?, 1, ?)"
                " ON CONFLICT (user_id) DO UPDATE SET epoch = epoch + 1,"
                " revoked_at = excluded.revoked_at RETURNING epoch",
                (user_id, _ts(now)),
            ).fetchone()
            self._audit(
                conn,
                now,
                actor,
                "user.revoke",
                {"user_id": user_id, "user_epoch": row[0], "reason": reason},
            )
        return int(row[0])

    def record_signins(self, signins: Sequence[Signin]) -> None:
        rows = [(_ts(s.at), s.user_id, s.outcome, s.ip, s.user_agent) for s in signins]
        with self._write(log=True) as conn:
            start = 0
            for size in _SIGNIN_CHUNKS:
                while len(rows) - start >= size:
                    chunk = rows[start : start + size]
                    conn.execute(_INSERT_SIGNINS[size], tuple(chain.from_iterable(chunk)))
                    start += size

    def prune(self, *, before: datetime) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM audit WHERE at < ?", (_ts(before),))
            conn.execute("DELETE FROM signins WHERE at < ?", (_ts(before),))
            conn.execute("DELETE FROM counters WHERE expires_at < ?", (utcnow().timestamp(),))

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
