"""The write-behind sign-in log: what reaches the store, and that close() is final."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from service.signins import SigninLog
from service.store import Settings, Signin
from service.store.sqlite import SqliteStore

#: Bound for "happens at all"; every wait below ends as soon as the event occurs.
WAIT_SECONDS = 10


class PruneGate(SqliteStore):
    """A real SQLite store whose pruning waits until the test lets it finish."""

    def __init__(self, path: str) -> None:
        super().__init__(path, defaults=Settings(False, 3600))
        self.pruning = threading.Event()
        self.may_finish = threading.Event()
        self.calls_after_close: list[str] = []
        self.closed = False
        self.prunes = 0
        self.pruned_by: set[str] = set()

    def prune(self, *, before: datetime, tenants=()) -> None:
        self._note("prune")
        self.prunes += 1
        self.pruned_by.add(threading.current_thread().name)
        self.pruning.set()
        assert self.may_finish.wait(WAIT_SECONDS)
        super().prune(before=before, tenants=tenants)

    def record_signins(self, signins, incarnation=None) -> None:
        self._note("record_signins")
        super().record_signins(signins, incarnation)

    def _note(self, call: str) -> None:
        if self.closed:
            self.calls_after_close.append(call)

    def close(self) -> None:
        self.closed = True
        super().close()


@pytest.fixture
def store(tmp_path):
    store = PruneGate(str(tmp_path / "store.db"))
    yield store
    store.may_finish.set()
    store.close()


def signin(user_id: str = "42") -> Signin:
    return Signin(datetime.now(UTC), user_id, "ok", "203.0.113.7", "test")


def test_the_writer_thread_writes_a_recorded_entry_and_prunes_once(store):
    signin_log = SigninLog(store, retention_days=90)
    store.may_finish.set()

    signin_log.record(signin())

    assert store.pruning.wait(WAIT_SECONDS)
    signin_log.flush()  # waits for the writer's batch and pruning; the next is not due
    assert [s.user_id for s in store.signins(user_id=None, limit=10)] == ["42"]
    assert store.prunes == 1
    signin_log.close()


def test_close_waits_for_a_pruning_the_writer_thread_has_begun(store):
    signin_log = SigninLog(store, retention_days=90)
    signin_log.record(signin())
    assert store.pruning.wait(WAIT_SECONDS)  # the writer thread is inside prune()

    closed = threading.Event()
    closer = threading.Thread(target=lambda: (signin_log.close(), closed.set()))
    closer.start()

    # close() must not return while the writer still uses the store...
    assert not closed.wait(0.3)
    store.may_finish.set()
    # ...and returns as soon as the writer is done.
    assert closed.wait(WAIT_SECONDS)
    closer.join(WAIT_SECONDS)


def test_after_close_the_log_never_touches_the_store_again(store):
    signin_log = SigninLog(store, retention_days=90)
    store.may_finish.set()
    signin_log.record(signin("before"))
    signin_log.close()
    store.close()

    signin_log.record(signin("after"))
    signin_log.flush()

    assert store.calls_after_close == []


def test_close_writes_what_is_still_queued(store):
    signin_log = SigninLog(store, retention_days=90)
    store.may_finish.set()
    for n in range(3):
        signin_log.record(signin(f"user-{n}"))

    signin_log.close()

    users = {s.user_id for s in store.signins(user_id=None, limit=10)}
    assert users == {"user-0", "user-1", "user-2"}


def test_a_disabled_log_records_nothing_but_still_prunes(store):
    signin_log = SigninLog(store, retention_days=90, enabled=False)
    store.may_finish.set()

    signin_log.record(signin())
    signin_log.flush()  # the admin API's reads flush, which also prunes the audit log

    assert store.signins(user_id=None, limit=10) == []
    assert store.prunes == 1
    signin_log.close()


def test_the_click_that_fills_the_buffer_writes_it_but_never_prunes(store, monkeypatch):
    monkeypatch.setattr("service.signins.MAX_PENDING", 1)  # every click fills it
    signin_log = SigninLog(store, retention_days=90)
    store.may_finish.set()

    signin_log.record(signin())  # written at once, by this thread

    assert [s.user_id for s in store.signins(user_id=None, limit=10)] == ["42"]
    signin_log.close()
    assert threading.current_thread().name not in store.pruned_by
