"""The sign-in log, written behind the click.

Every verification of a genuine token is recorded, but not inside the
request that verified it: entries wait in a per-process buffer and a
background thread writes them in one transaction (SQLite) or one script
call per hundred entries (Redis) every few milliseconds. A batch costs a
fraction of one write per click, which keeps verification near the speed of
a bare endpoint.

What that costs, and why it is acceptable: an entry reaches the store up to
``FLUSH_SECONDS`` after its click, and a worker killed with SIGKILL loses
what it had not written yet (a clean stop writes everything). The epochs are
never buffered: revocation stays synchronous and fail-closed. Reads of the
log through this process (the admin API, the console) write its buffer
first, so a process always sees its own entries.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from datetime import timedelta
from typing import Any

from service.clock import utcnow
from service.errors import StoreError
from service.store import Signin

__all__ = ["FLUSH_SECONDS", "SigninLog", "drain_all"]

log = logging.getLogger("service.signins")

#: How long an entry may wait in the buffer.
FLUSH_SECONDS = 0.05
#: A buffer this full is written at once, by the request that filled it.
MAX_PENDING = 500
#: The writer thread ends after this long without entries (and starts again with the next).
IDLE_SECONDS = 2.0
#: Retention pruning runs at most this often per process.
PRUNE_EVERY = timedelta(minutes=5)

_live: weakref.WeakSet[SigninLog] = weakref.WeakSet()


class SigninLog:
    """A per-process write-behind buffer in front of ``store.record_signins``."""

    def __init__(self, store: Any, *, retention_days: int, enabled: bool = True) -> None:
        self.store = store
        #: ``SIGNIN_LOG``: when false, nothing is recorded; :meth:`flush` still
        #: prunes both logs (the admin API and the console flush before reading).
        self.enabled = enabled
        self.retention = timedelta(days=retention_days)
        self._pending: list[tuple[str, str | None, Signin]] = []
        #: Tenants written to since the last pruning (a Redis store prunes each apart).
        self._touched: set[str] = set()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._next_prune = None
        self._closed = False
        _live.add(self)

    def record(
        self, signin: Signin, tenant_id: str = "default", incarnation: str | None = None
    ) -> None:
        """Queue one entry of ``tenant_id``'s log; it reaches the store within ``FLUSH_SECONDS``.

        :param incarnation: the store incarnation of the token's tenant: the
            entry is written only while the tenant still has it, so a click
            on a tenant deleted (or a store lost) meanwhile reaches no log of
            a tenant made since under the same id.
        """
        if not self.enabled:
            return
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's buffer and locks are not ours
                self._pending, self._thread, self._pid = [], None, os.getpid()
                self._flush_lock = threading.Lock()
            self._pending.append((tenant_id, incarnation, signin))
            full = len(self._pending) >= MAX_PENDING
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="signin-log", daemon=True)
                self._thread.start()
        if full:
            self.flush(prune=False)  # the click that filled it does not wait for pruning

    def flush(self, *, prune: bool = True) -> None:
        """Write every queued entry now (and prune old entries now and then)."""
        # One writer at a time, pruning included: a reader's flush must wait for
        # a batch the background thread is still writing, or it would read
        # without it, and close() must wait for both, or the store would close
        # under them.
        with self._flush_lock:
            if self._closed:
                return
            with self._lock:
                batch, self._pending = self._pending, []
            by_tenant: dict[tuple[str, str | None], list[Signin]] = {}
            for tenant_id, incarnation, signin in batch:
                by_tenant.setdefault((tenant_id, incarnation), []).append(signin)
            for (tenant_id, incarnation), signins in by_tenant.items():
                try:
                    self.store.tenant(tenant_id).record_signins(signins, incarnation)
                except StoreError as e:
                    # The clicks were answered already; the log loses these entries.
                    log.warning("sign-in log: %d entries not written: %s", len(signins), e)
                self._touched.add(tenant_id)
            if prune:
                self._prune_when_due()

    def _prune_when_due(self) -> None:
        now = utcnow()
        if self._next_prune is not None and now < self._next_prune:
            return
        self._next_prune = now + PRUNE_EVERY
        touched, self._touched = sorted(self._touched), set()
        try:
            self.store.prune(before=now - self.retention, tenants=touched)
        except StoreError as e:
            log.warning("sign-in log: pruning failed: %s", e)

    def close(self) -> None:
        """Write what is queued and stop writing: the store is about to close.

        When it returns, this log touches the store no more: a batch or a
        pruning the writer thread had begun is finished, and later calls do nothing.
        """
        self.flush(prune=False)
        with self._flush_lock:  # waits for a batch the writer thread is writing
            self._closed = True
        self._wake.set()

    def _run(self) -> None:
        idle = 0.0
        while idle < IDLE_SECONDS and not self._closed:
            self._wake.wait(FLUSH_SECONDS)
            with self._lock:
                pending = bool(self._pending)
            if pending:
                self.flush()
                idle = 0.0
            else:
                idle += FLUSH_SECONDS


def drain_all() -> None:
    """Write what every sign-in log of this process still holds (at exit, in tests)."""
    for signin_log in list(_live):
        if signin_log._pid == os.getpid() and signin_log._pending:
            signin_log.flush(prune=False)


atexit.register(drain_all)
