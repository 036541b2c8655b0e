"""The reaper: a small delete is reaped in the thread, a big one in a process of its own."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from functools import partial

import pytest

from service.reaper import REAP_BUDGET, Reaper
from service.store import Settings, open_store

T0 = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
DEFAULTS = Settings(True, 259200)


@pytest.fixture
def opener(store_url, tmp_path):
    options = {"instance_path": str(tmp_path), "key_prefix": f"test-{uuid.uuid4().hex[:12]}:"}
    return partial(open_store, store_url, defaults=DEFAULTS, options=options)


@pytest.fixture
def store(opener):
    store = opener()
    yield store
    store.close()


def deleted(store, users: int) -> None:
    """Make tenant acme with ``users`` revoked users, then delete it."""
    store.create_tenant("acme", "https://acme.example.com", actor="a", reason="r", now=T0)
    acme = store.tenant("acme")
    for user in range(users):
        acme.revoke_user(f"u{user}", actor="a", reason="r", now=T0)
    store.delete_tenant("acme", actor="a", reason="r", now=T0)


def test_a_big_delete_is_reaped_in_a_process_of_its_own(store, opener, monkeypatch):
    monkeypatch.setattr("service.reaper.THREAD_STEPS", 2)  # big: more than 2 steps
    deleted(store, 3 * REAP_BUDGET)
    reaper = Reaper(store, opener)
    reaper.kick()
    assert reaper.wait(timeout=60)
    assert reaper._process is not None and reaper._process.returncode == 0
    assert store.reap(budget=REAP_BUDGET) is False  # nothing left
    # The tenant's id is free and the new one shares nothing.
    store.create_tenant("acme", "https://acme.example.com", actor="a", reason="r", now=T0)
    assert store.tenant("acme").token_state("u1").user_epoch == 0
    reaper.close()


def test_a_small_delete_is_reaped_in_the_thread_and_starts_no_process(store, opener):
    deleted(store, 3)
    reaper = Reaper(store, opener)
    reaper.kick()
    assert reaper.wait(timeout=30)
    assert reaper._process is None
    assert store.reap(budget=REAP_BUDGET) is False
    reaper.close()


def test_without_an_opener_every_step_runs_in_the_thread(store):
    deleted(store, 3 * REAP_BUDGET)
    reaper = Reaper(store)
    reaper.kick()
    assert reaper.wait(timeout=60)
    assert reaper._process is None
    assert store.reap(budget=REAP_BUDGET) is False
    reaper.close()
