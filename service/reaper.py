"""The reaper: removes deleted tenants' data from the store in the background.

A tenant's delete (``service/tenants.py``) makes its tokens and keys fail at
once and leaves its data to this: bounded steps (``store.reap``), a pause
between, each safe to repeat and never touching a live tenant. The first
step runs in a thread of the process that deleted (or that starts and finds
a delete a restart interrupted); when there is more, the rest runs in a
process of its own (``python -m service.reaper``: a fresh interpreter that
opens its own store; the opener reaches it pickled on its stdin),
so that a big tenant's removal does not share this worker's interpreter lock
and CPU time with its clicks for seconds.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Protocol

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


def _reap(store: Store, stop: _Stop, *, steps: int | None = None) -> bool | None:
    """Reap in steps until nothing is left, ``stop`` is set or ``steps`` were taken.

    :returns: ``False`` when nothing is left, ``True`` when more may remain
        (stopped, or ``steps`` ran out), ``None`` when the store failed
        ``MAX_FAILURES`` times in a row (the next kick tries again).
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
                return None
            stop.wait(1.0)
            continue
        failures, taken = 0, taken + 1
        if not more:
            return False
        stop.wait(REAP_PAUSE_SECONDS)
    return True


def main() -> None:
    """A reaper process (``python -m service.reaper``): the opener on stdin, reap, exit.

    SIGTERM ends it at the end of a step; so does the end of the work.
    """
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    # Written by _start in the worker that started this process, nobody else.
    opener = pickle.load(sys.stdin.buffer)  # noqa: S301
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    store = opener()
    try:
        _reap(store, stop)
    finally:
        store.close()


def _start(opener: Callable[[], Store]) -> subprocess.Popen[bytes]:
    """Start a reaper process, handing it ``opener`` (and this interpreter's import path)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    process = subprocess.Popen(  # noqa: S603 (this interpreter, a fixed module)
        [sys.executable, "-m", "service.reaper"], stdin=subprocess.PIPE, env=env
    )
    stdin = process.stdin
    if stdin is not None:  # always, with stdin=PIPE
        with stdin:
            stdin.write(pickle.dumps(opener))
    return process


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
        self._process: subprocess.Popen[bytes] | None = None
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
            if self._process is not None and self._process.poll() is None:
                return
            self._thread = threading.Thread(target=self._run, name="tenant-reaper", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        # A few steps here: a small tenant is done (a step per table or key
        # kind), and a process is started only for a big one (not at every
        # worker's first request).
        more = _reap(self.store, self._closed, steps=THREAD_STEPS if self._opener else None)
        if not more or self._opener is None or self._closed.is_set():
            return  # done, failing (no process for a store that fails), or stopped
        with self._lock:
            if self._closed.is_set():
                return
            try:
                self._process = _start(self._opener)
            except OSError as e:  # no process to be had: the next kick tries again
                log.warning("tenant reaper: cannot start its process: %s", e)

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
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
        return True

    def close(self) -> None:
        """Stop reaping (at the end of a step) before the store closes."""
        self._closed.set()
        if self._pid != os.getpid():
            return
        with self._lock:
            thread, process = self._thread, self._process
        if thread is not None and thread.is_alive():
            thread.join(timeout=10)
        if process is not None and process.poll() is None:
            process.terminate()  # SIGTERM: it stops at the end of its step
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


if __name__ == "__main__":
    main()
