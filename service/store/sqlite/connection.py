"""The embedded store's connections to its file, and sqlite3's errors turned into the store's."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from service.errors import StoreDataError, StoreUnavailableError

__all__ = ["ConnectionsMixin", "_Guard"]

# The name the store has always logged under (the "logger" of a JSON log
# line), whichever of its modules writes the line.
log = logging.getLogger("service.store.sqlite")


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


class ConnectionsMixin:
    """The connections of :class:`~service.store.sqlite.SqliteStore`.

    Its ``__init__`` sets ``path``, ``timeout``, ``_local`` and ``_guard``; a
    file found replaced is created anew by its ``_create``.
    """

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

    def close(self) -> None:
        local = self._local
        if getattr(local, "pid", None) == os.getpid():
            self._close(local)
        self._local = threading.local()
