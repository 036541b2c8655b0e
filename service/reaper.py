"""The reaper: removes deleted tenants' data from the store in the background.

A tenant's delete (``service/tenants.py``) makes its tokens and keys fail at
once and leaves its data to this: bounded steps (``store.reap``), a pause
between, each safe to repeat and never touching a live tenant. The first
step runs in a thread of the process that deleted (or that starts and finds
a delete a restart interrupted); when there is more, the rest runs in a
process of its own (``spawn``: a fresh interpreter that opens its own store),
so that a big tenant's removal does not share this worker's interpreter lock
and CPU time with its clicks for seconds.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

from service.errors import StoreError
from service.store import Store

__all__ = ["REAP_BUDGET", "REAP_PAUSE_SECONDS", "THREAD_STEPS", "Reaper"]

log = logging.getLogger("service.reaper")

#: Rows or keys of a deleted tenant the reaper removes per step, and its pause
#: between steps: other tenants' calls pass between any two.
REAP_BUDGET = 500
REAP_PAUSE_SECONDS = 0.01
#: Steps the thread takes before it hands the rest to a process of its own.
THREAD_STEPS = 20
#: Store failures in a row after which a reaper stops (the next kick goes on).
MAX_FAILURES = 5


class _Stop(Protocol):
    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool: ...


def _reap(store: Store, stop: _Stop, *, steps: int | None = None) -> bool:
    """Reap in steps until nothing is left, ``stop`` is set or ``steps`` were taken.

    :returns: whether more may remain (``steps`` ran out, or the store failed
        ``MAX_FAILURES`` times in a row).
    """
    failures = taken = 0
    while not stop.is_set():
        if steps is not None and taken >= steps:
            return True
        try:
            more = store.reap(budget=REAP_BUDGET)
        except StoreError as e:
            failures += 1
            log.warning("tenant reaper: %s", e)
            if failures >= MAX_FAILURES:
                return True  # the next kick tries again
            stop.wait(1.0)
            continue
        failures, taken = 0, taken + 1
        if not more:
            return False
        stop.wait(REAP_PAUSE_SECONDS)
    return True


def _reap_elsewhere(opener: Callable[[], Store], stop: Any) -> None:
    """A reaper process: open the store, reap until done or stopped, close it."""
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    store = opener()
    try:
        _reap(store, stop)
    finally:
        store.close()


class Reaper:
    """Removes deleted tenants' data in the background, a bounded step at a time.

    At most one thread and one process per process, started when a tenant is
    deleted and at a process's first request (so a deletion interrupted by a
    restart goes on); they end when nothing is left. Every worker may run
    one: each step is safe to repeat, and never touches a live tenant.

    :param opener: opens the store anew (picklable: it is called in the
        reaper's own process). Without one, every step runs in the thread.
    """

    def __init__(self, store: Store, opener: Callable[[], Store] | None = None) -> None:
        self.store = store
        self._opener = opener
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._process: BaseProcess | None = None
        self._stop: Any = None
        self._pid = os.getpid()
        self._closed = threading.Event()

    def kick(self) -> None:
        """Start reaping unless it runs already."""
        with self._lock:
            if self._closed.is_set():
                return
            if self._pid != os.getpid():  # forked: the parent's are not ours
                self._thread = self._process = None
                self._pid = os.getpid()
            if self._thread is not None and self._thread.is_alive():
                return
            if self._process is not None and self._process.is_alive():
                return
            self._thread = threading.Thread(target=self._run, name="tenant-reaper", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        # A few steps here: a small tenant is done (a step per table or key
        # kind), and a process is started only for a big one (not at every
        # worker's first request).
        if not _reap(self.store, self._closed, steps=THREAD_STEPS if self._opener else None):
            return
        if self._opener is None or self._closed.is_set():
            return
        context = multiprocessing.get_context("spawn")
        with self._lock:
            if self._closed.is_set():
                return
            self._stop = context.Event()
            self._process = context.Process(
                target=_reap_elsewhere,
                args=(self._opener, self._stop),
                name="tenant-reaper",
                daemon=True,
            )
            self._process.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for this process's reaping to end; False if it still runs after ``timeout``.

        It ends when nothing is left to remove, or after repeated store
        failures (logged; the next kick, in any process, goes on).
        """
        if self._pid != os.getpid():
            return True
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                return False
        process = self._process
        if process is not None:
            process.join(timeout)
            return not process.is_alive()
        return True

    def close(self) -> None:
        """Stop reaping (at the end of a step) before the store closes."""
        self._closed.set()
        if self._pid != os.getpid():
            return
        with self._lock:
            thread, process, stop = self._thread, self._process, self._stop
        if thread is not None and thread.is_alive():
            thread.join(timeout=10)
        if process is not None and process.is_alive():
            stop.set()
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
