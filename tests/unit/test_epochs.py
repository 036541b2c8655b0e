"""Store-level behaviour, the same on SQLite and Redis."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from service.store import Settings, Signin, open_store

T0 = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
DEFAULTS = Settings(False, 259200)


@pytest.fixture
def options(tmp_path) -> dict:
    return {"instance_path": str(tmp_path), "key_prefix": f"test-{uuid.uuid4().hex[:12]}:"}


@pytest.fixture
def store(store_url, options):
    store = open_store(store_url, defaults=DEFAULTS, options=options)
    yield store
    store.close()


def test_new_store_starts_at_epoch_1_disabled_with_default_lifetime(store):
    info = store.epoch()
    assert (info.epoch, info.changed_by) == (1, "system")
    assert store.settings() == DEFAULTS
    events = store.audit_events(limit=10)
    assert [e.action for e in events] == ["store.create"]


def test_token_state_reads_incarnation_and_both_epochs(store):
    state = store.token_state("42")
    assert (state.epoch, state.user_epoch) == (1, 0)
    assert len(state.incarnation) >= 8


def test_bump_returns_the_new_epoch_and_audits_it(store):
    info = store.bump_epoch(actor="ops", reason="leak", now=T0)
    assert (info.epoch, info.changed_by, info.reason) == (2, "ops", "leak")
    assert store.epoch().epoch == 2
    assert store.token_state("42").epoch == 2
    event = store.audit_events(limit=1)[0]
    assert (event.action, event.actor, event.detail["epoch"]) == ("epoch.bump", "ops", 2)


def test_concurrent_bumps_are_never_lost(store):
    before = store.epoch().epoch

    def bump_25() -> None:
        for _ in range(25):
            store.bump_epoch(actor="t", reason="race", now=T0)

    threads = [threading.Thread(target=bump_25) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.epoch().epoch == before + 200


def test_revoke_user_touches_only_that_user(store):
    first = store.revoke_user("42", actor="ops", reason="lost phone", now=T0)
    second = store.revoke_user("42", actor="ops", reason="again", now=T0)
    assert len({0, first, second}) == 3  # fresh random values, never reused
    assert store.token_state("42").user_epoch == second
    assert store.token_state("43").user_epoch == 0
    assert store.token_state("42").epoch == 1
    event = store.audit_events(limit=1)[0]
    assert event.action == "user.revoke"
    assert event.detail["user_id"] == "42"


def test_issue_state_reads_settings_and_every_users_epoch(store):
    revoked = store.revoke_user("b", actor="ops", reason="r", now=T0)
    state = store.issue_state(["a", "b", "a"])
    assert dict(state.user_epochs) == {"a": 0, "b": revoked}
    assert state.settings == DEFAULTS
    assert state.incarnation == store.token_state("a").incarnation


def test_settings_update_is_audited(store):
    new = store.update_settings(
        {"auto_login_enabled": True, "token_ttl_seconds": 3600}, actor="ops", now=T0
    )
    assert new == Settings(True, 3600)
    assert store.settings() == new
    assert store.audit_events(limit=1)[0].action == "settings.update"


def test_state_survives_reopening(store_url, options, store):
    store.bump_epoch(actor="ops", reason="r", now=T0)
    revoked = store.revoke_user("42", actor="ops", reason="r", now=T0)
    store.update_settings({"auto_login_enabled": True}, actor="ops", now=T0)
    before = store.token_state("42")
    assert before.epoch_id != 0  # the bump drew an identity
    again = open_store(store_url, defaults=DEFAULTS, options=options)
    try:
        state = again.token_state("42")
        assert state == before
        assert (state.epoch, state.user_epoch) == (2, revoked)
        assert again.settings().auto_login_enabled is True
    finally:
        again.close()


def test_signins_newest_first_and_filtered_by_user(store):
    for i, user in enumerate(["a", "b", "a"]):
        store.record_signins([Signin(T0 + timedelta(seconds=i), user, "ok", f"10.0.0.{i}", "UA")])
    assert [s.ip for s in store.signins(user_id=None, limit=10)] == [
        "10.0.0.2",
        "10.0.0.1",
        "10.0.0.0",
    ]
    assert [s.ip for s in store.signins(user_id="a", limit=1)] == ["10.0.0.2"]


@pytest.mark.parametrize("size", [1, 5, 87, 250])
def test_a_batch_of_signins_is_stored_whole_field_for_field(store, size):
    # Sizes that the stores split differently (SQLite: 64, 16, 4 and 1 rows a
    # statement; Redis: 100 entries a script).
    batch = [
        Signin(T0 + timedelta(milliseconds=i), f"u{i % 4}", "ok", f"10.0.{i // 250}.{i % 250}",
               None if i % 3 else f"Agent ü {i}")
        for i in range(size)
    ]  # fmt: skip
    store.record_signins(batch)
    assert store.signins(user_id=None, limit=500) == batch[::-1]
    assert store.signins(user_id="u1", limit=500) == [s for s in batch if s.user_id == "u1"][::-1]


def test_prune_drops_only_old_entries(store):
    store.record_signins([Signin(T0 - timedelta(days=100), "a", "ok")])
    store.record_signins([Signin(T0, "a", "token_expired")])
    store.bump_epoch(actor="ops", reason="r", now=T0)
    store.prune(before=T0 - timedelta(days=90))
    assert [s.outcome for s in store.signins(user_id=None, limit=10)] == ["token_expired"]
    # store.create happened at the real time of the test run, later than T0 - 90 days.
    assert [e.action for e in store.audit_events(limit=10)] == ["epoch.bump", "store.create"]


def test_prune_drops_old_entries_of_every_tenant_named_and_of_the_platform(store):
    old, new = T0 - timedelta(days=100), T0
    store.create_tenant("acme", "https://acme.example.com", actor="p", reason="r", now=old)
    store.create_tenant("globex", "https://globex.example.com", actor="p", reason="r", now=new)
    acme = store.tenant("acme")
    acme.record_signins([Signin(old, "a", "ok")])
    acme.record_signins([Signin(new, "a", "token_expired")])

    # Through any view: the platform's log belongs to no tenant.
    store.tenant("globex").prune(before=T0 - timedelta(days=90), tenants=["acme"])

    assert [s.outcome for s in acme.signins(user_id=None, limit=10)] == ["token_expired"]
    assert acme.audit_events(limit=10) == []  # its creation was 100 days ago
    assert [e.detail["tenant_id"] for e in store.platform_audit_events(limit=10)] == ["globex"]


def test_each_new_store_gets_its_own_incarnation(store_url, tmp_path, options):
    first = open_store(store_url, defaults=DEFAULTS, options=options)
    if store_url.startswith("sqlite"):
        other_url = f"sqlite:///{tmp_path / 'other.db'}"
    else:
        other_url = store_url
    second = open_store(
        other_url,
        defaults=DEFAULTS,
        options={**options, "key_prefix": "other-" + options["key_prefix"]},
    )
    try:
        assert first.token_state("x").incarnation != second.token_state("x").incarnation
    finally:
        first.close()
        second.close()


def test_signins_are_newest_click_first_whatever_order_they_were_written(store):
    # Workers write their buffered entries in batches: the order written is
    # not always the order clicked.
    store.record_signins(
        [Signin(T0 + timedelta(seconds=2), "a", "ok"), Signin(T0, "a", "token_revoked")]
    )
    store.record_signins([Signin(T0 + timedelta(seconds=1), "a", "token_expired")])
    assert [s.outcome for s in store.signins(user_id="a", limit=10)] == [
        "ok",
        "token_expired",
        "token_revoked",
    ]
    assert [s.outcome for s in store.signins(user_id=None, limit=10)] == [
        "ok",
        "token_expired",
        "token_revoked",
    ]
