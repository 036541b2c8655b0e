"""What only the SQLite store can get wrong: its file, under running workers."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime

import pytest

from service.store import Settings, open_store

T0 = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
DEFAULTS = Settings(False, 259200)


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'links.db'}"


@pytest.fixture
def stores():
    opened = []
    yield opened
    for store in opened:
        store.close()


def delete_files(url: str) -> None:
    path = url.removeprefix("sqlite:///")
    for suffix in ("", "-wal", "-shm"):
        try:
            os.remove(path + suffix)
        except FileNotFoundError:
            pass


def test_a_worker_whose_file_was_replaced_reads_the_new_store(url, stores, caplog):
    worker_a = open_store(url, defaults=DEFAULTS)
    stores.append(worker_a)
    worker_a.update_settings({"auto_login_enabled": True}, actor="admin", now=T0)
    worker_a.bump_epoch(actor="admin", reason="r", now=T0)
    before = worker_a.token_state("42")
    delete_files(url)  # the data is lost; another worker starts on a new, empty store
    worker_b = open_store(url, defaults=DEFAULTS)
    stores.append(worker_b)

    with caplog.at_level(logging.WARNING, logger="service.store.sqlite"):
        after = worker_a.token_state("42")
    assert after == worker_b.token_state("42")
    assert after.incarnation != before.incarnation  # so every earlier token is refused
    assert (after.epoch, worker_a.settings().auto_login_enabled) == (1, False)
    assert "deleted or replaced" in caplog.text
    worker_b.bump_epoch(actor="admin", reason="r", now=T0)
    assert worker_a.epoch().epoch == 2  # one store again, for both


def test_a_deleted_file_with_no_other_worker_is_created_anew(url, stores):
    store = open_store(url, defaults=DEFAULTS)
    stores.append(store)
    before = store.token_state("42").incarnation
    delete_files(url)
    assert store.token_state("42").incarnation != before
    assert [e.action for e in store.audit_events(limit=5)] == ["store.create"]
