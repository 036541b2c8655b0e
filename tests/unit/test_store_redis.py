"""The Redis store against a real redis-server: round trips, atomicity, loss, outages.

Store behaviour shared with SQLite is tested on both stores elsewhere; this file
checks what only Redis can get wrong.
"""

import json
import os
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis
from redis.connection import Connection

from service.errors import ConfigError, StoreDataError, StoreUnavailableError
from service.store import Settings, Signin, TokenState, open_store
from service.store.redis import RedisStore
from tests.support.redis_keys import data, meta
from tests.support.redis_server import RedisServer

DEFAULTS = Settings(auto_login_enabled=False, token_ttl_seconds=259200)
T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def server():
    with RedisServer() as server:
        yield server


@pytest.fixture
def prefix():
    return f"test-{secrets.token_hex(4)}:"


@pytest.fixture
def raw(server):
    with server.client() as client:
        yield client


@pytest.fixture
def open_(server, prefix):
    """Open stores on the module's server (default: this test's prefix); close them after."""
    stores = []

    def open_(url=None, **options):
        options.setdefault("key_prefix", prefix)
        store = RedisStore.from_url(url or server.url, defaults=DEFAULTS, **options)
        stores.append(store)
        return store

    yield open_
    for store in stores:
        store.close()


@pytest.fixture
def store(open_):
    return open_()


@pytest.fixture
def sends(monkeypatch):
    """Count the packets redis-py sends: one per round trip, pipelines included."""
    count = [0]
    send = Connection.send_packed_command

    def counting(self, *args, **kwargs):
        count[0] += 1
        return send(self, *args, **kwargs)

    monkeypatch.setattr(Connection, "send_packed_command", counting)
    return count


def test_open_store_creates_a_store_at_epoch_1_and_ignores_other_options(server, prefix):
    store = open_store(
        server.url,
        defaults=DEFAULTS,
        options={"key_prefix": prefix, "instance_path": "/nowhere", "sqlite_timeout_seconds": 5},
    )
    try:
        state = store.token_state("42")
        assert (state.epoch, state.user_epoch) == (1, 0)
        assert store.settings() == DEFAULTS
        assert store.epoch().changed_by == "system"
        [event] = store.audit_events(limit=10)
        assert event.action == "store.create"
        assert event.detail == {"incarnation": state.incarnation}
    finally:
        store.close()


def test_token_state_is_one_round_trip(store, server, raw, sends):
    store.token_state("42")  # loads the script and opens a connection
    evalsha_before = raw.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    sends[0] = 0
    store.token_state("42")
    assert sends[0] == 1
    assert raw.info("commandstats")["cmdstat_evalsha"]["calls"] == evalsha_before + 1


def test_the_click_read_loads_the_script_again_after_redis_forgot_it(store, raw, sends):
    store.bump_epoch(actor="a", reason="r", now=T0)
    store.token_state("42")
    raw.script_flush()  # as after a restart without persistence of scripts
    assert store.token_state("42").epoch == 2
    sends[0] = 0
    assert store.token_state("42").epoch == 2
    assert sends[0] == 1  # the click's own connection again, the script known


def test_a_connection_redis_closed_is_replaced_without_an_error(store, raw):
    revoked = store.revoke_user("42", actor="a", reason="r", now=T0)
    assert store.token_state("42").user_epoch == revoked
    raw.client_kill_filter(skipme=True)  # as a restart or a timeout on the server would
    assert store.token_state("42").user_epoch == revoked
    assert store.token_state("7").user_epoch == 0


def test_a_reply_never_answers_a_later_request(store, monkeypatch):
    revoked = store.revoke_user("42", actor="a", reason="r", now=T0)
    store.token_state("7")
    read = Connection.read_response

    def interrupted(self, *args, **kwargs):
        monkeypatch.setattr(Connection, "read_response", read)
        raise KeyboardInterrupt  # after the request for 42 went out, before its reply

    monkeypatch.setattr(Connection, "read_response", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.token_state("42")
    assert store.token_state("7").user_epoch == 0  # not 42's epoch, left on the wire
    assert store.token_state("42").user_epoch == revoked


def test_a_store_on_a_unix_socket_reads_and_writes_like_one_on_tcp(tmp_path):
    socket_path = tmp_path / "redis.sock"
    extra = ["--unixsocket", str(socket_path), "--unixsocketperm", "700"]
    with RedisServer(extra_args=extra) as server:
        store = RedisStore.from_url(f"unix://{socket_path}?db=0", defaults=DEFAULTS)
        try:
            revoked = store.revoke_user("42", actor="a", reason="r", now=T0)
            assert store.bump_epoch(actor="a", reason="r", now=T0).epoch == 2
            state = store.token_state("42")  # the click's own connection, over the socket
            assert (state.epoch, state.user_epoch) == (2, revoked)
            assert store._click.connection.__class__.__name__ == "UnixDomainSocketConnection"
        finally:
            store.close()
        with server.client() as raw:
            assert raw.hget(meta("autologin:"), "epoch") == "2"


def test_a_thread_finding_the_click_connection_busy_reads_through_the_pool(store):
    store.revoke_user("42", actor="a", reason="r", now=T0)
    expected = store.token_state("42")
    with store._click.lock:  # another thread is reading
        assert store.token_state("42") == expected
        assert store.token_state("7").user_epoch == 0


def test_many_threads_reading_at_once_all_get_the_right_epochs(store):
    revoked = store.revoke_user("42", actor="a", reason="r", now=T0)
    results = []

    def read():
        results.extend(store.token_state(u).user_epoch for u in ("42", "7") * 50)

    threads = [threading.Thread(target=read) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(revoked) == results.count(0) == 300


def test_close_releases_every_connection_of_the_store(own_redis):
    # A Redis of this test alone: nobody else's connections come and go.
    with own_redis.client() as raw:

        def clients() -> int:
            return raw.info("clients")["connected_clients"]

        store = RedisStore.from_url(own_redis.url, defaults=DEFAULTS)
        store.token_state("42")
        store.settings()
        assert clients() == 3  # ours, the pool's and the click's
        store.close()
        deadline = time.monotonic() + 5  # Redis notices a closed connection on its next loop
        while clients() != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert clients() == 1


def test_issue_state_is_one_round_trip_for_many_users(store, sends):
    revoked = store.revoke_user("u3", actor="admin", reason="leak", now=T0)
    store.issue_state(["u1"])
    sends[0] = 0
    users = [f"u{i}" for i in range(2500)]
    state = store.issue_state(users + ["u3"])
    assert sends[0] == 1
    assert state.user_epochs["u3"] == revoked
    assert sum(state.user_epochs.values()) == revoked
    assert list(state.user_epochs) == users


def test_concurrent_bumps_from_eight_workers_are_never_lost(open_):
    stores = [open_() for _ in range(8)]
    start = threading.Barrier(8)
    seen = []

    def bump(store):
        start.wait()
        seen.extend(store.bump_epoch(actor="a", reason="r", now=T0).epoch for _ in range(25))

    threads = [threading.Thread(target=bump, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stores[0].epoch().epoch == 201
    assert sorted(seen) == list(range(2, 202))
    actions = [e.action for e in stores[0].audit_events(limit=500)]
    assert actions.count("epoch.bump") == 200


def test_revoking_a_user_changes_only_that_users_epoch(store):
    first = store.revoke_user("42", actor="admin", reason="leak", now=T0)
    second = store.revoke_user("42", actor="admin", reason="again", now=T0)
    # A fresh random value each time, never +1: no value comes back after a failover.
    assert len({0, 1, first, second}) == 4
    assert store.token_state("42").user_epoch == second
    assert store.token_state("43").user_epoch == 0
    assert store.epoch().epoch == 1
    assert store.issue_state(["43", "42"]).user_epochs == {"43": 0, "42": second}
    event = store.audit_events(limit=1)[0]
    assert (event.action, event.detail) == (
        "user.revoke",
        {"user_id": "42", "user_epoch": second, "reason": "again"},
    )


def test_stores_with_different_prefixes_on_one_redis_are_independent(open_, raw):
    before = set(raw.keys("*"))
    first, second = open_(key_prefix="one:"), open_(key_prefix="two:")
    first.bump_epoch(actor="a", reason="r", now=T0)
    first.revoke_user("42", actor="a", reason="r", now=T0)
    first.update_settings({"auto_login_enabled": True}, actor="a", now=T0)
    first.record_signins([Signin(T0, "42", "ok")])
    assert second.token_state("42") == second.token_state("42")
    assert (second.epoch().epoch, second.token_state("42").user_epoch) == (1, 0)
    assert second.settings() == DEFAULTS
    assert second.signins(user_id=None, limit=10) == []
    assert first.token_state("42").incarnation != second.token_state("42").incarnation
    new_keys = set(raw.keys("*")) - before
    assert new_keys and all(k.startswith(("one:", "two:")) for k in new_keys)


def test_a_lost_store_is_recreated_with_a_new_incarnation_on_the_next_read(store, raw):
    old = store.token_state("42").incarnation
    store.bump_epoch(actor="a", reason="r", now=T0)
    raw.flushall()
    state = store.token_state("42")
    assert state.incarnation != old
    assert (state.epoch, state.user_epoch) == (1, 0)
    [event] = store.audit_events(limit=10)
    assert event.detail == {"incarnation": state.incarnation}


@pytest.mark.parametrize("read", ["token_state", "settings", "epoch"])
def test_every_read_that_finds_the_store_lost_logs_the_new_incarnation(store, raw, read, caplog):
    store.token_state("42")
    raw.flushall()

    getattr(store, read)(*(["42"] if read == "token_state" else []))

    assert "was lost: new incarnation" in caplog.text


@pytest.mark.parametrize("read", ["token_state", "issue_state", "revoke_user"])
def test_losing_only_the_user_epochs_never_revives_a_revoked_user(store, raw, prefix, read):
    old = store.token_state("42").incarnation
    store.revoke_user("42", actor="a", reason="r", now=T0)
    raw.delete(data(raw, prefix, "user_epochs"))  # evicted or deleted on its own
    if read == "token_state":
        state = store.token_state("42")
    elif read == "issue_state":
        state = store.issue_state(["42"])
    else:
        store.revoke_user("43", actor="a", reason="r", now=T0)
        state = store.token_state("42")
    # A token issued before carried the old incarnation and user epoch 1:
    # it is refused, because the whole store starts over.
    assert state.incarnation != old


def test_workers_racing_after_a_loss_agree_on_one_new_incarnation(open_, raw):
    stores = [open_() for _ in range(8)]
    raw.flushall()
    start = threading.Barrier(8)
    seen = []

    def read(store):
        start.wait()
        seen.append(store.token_state("42").incarnation)

    threads = [threading.Thread(target=read, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8 and len(set(seen)) == 1
    assert [e.action for e in stores[0].audit_events(limit=10)] == ["store.create"]


def test_writes_after_a_loss_land_in_a_new_store(store, raw):
    old = store.token_state("42").incarnation
    raw.flushall()
    assert store.bump_epoch(actor="a", reason="r", now=T0).epoch == 2
    assert store.token_state("42").incarnation != old


META_CORRUPTIONS = {
    "meta is a string": lambda r, p: r.delete(meta(p)) + r.set(meta(p), "x"),
    "epoch is not an integer": lambda r, p: r.hset(meta(p), "epoch", "1.5"),
    "incarnation is missing": lambda r, p: r.hdel(meta(p), "incarnation"),
}
READS = {
    "token_state": lambda s: s.token_state("42"),
    "issue_state": lambda s: s.issue_state(["42"]),
    "epoch": lambda s: s.epoch(),
    "settings": lambda s: s.settings(),
    "ping": lambda s: s.ping(),
}


@pytest.mark.parametrize("corrupt", META_CORRUPTIONS.values(), ids=META_CORRUPTIONS)
@pytest.mark.parametrize("read", READS.values(), ids=READS)
def test_a_meta_hash_of_the_wrong_shape_raises_store_data_error(store, raw, prefix, corrupt, read):
    corrupt(raw, prefix)
    with pytest.raises(StoreDataError):
        read(store)


def test_settings_of_the_wrong_shape_raise_store_data_error(store, raw, prefix):
    raw.hset(meta(prefix), "token_ttl_seconds", "long")
    with pytest.raises(StoreDataError):
        store.settings()
    with pytest.raises(StoreDataError):
        store.issue_state(["42"])


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda r, p: r.hset(data(r, p, "user_epochs"), "42", "one"),
        lambda r, p: r.hset(data(r, p, "user_epochs"), "42", "-1"),
        lambda r, p: r.delete(data(r, p, "user_epochs")) + r.rpush(data(r, p, "user_epochs"), "42"),
    ],
    ids=["not an integer", "negative", "not a hash"],
)
def test_a_user_epoch_of_the_wrong_shape_raises_store_data_error(store, raw, prefix, corrupt):
    store.revoke_user("42", actor="a", reason="r", now=T0)
    corrupt(raw, prefix)
    with pytest.raises(StoreDataError):
        store.token_state("42")
    with pytest.raises(StoreDataError):
        store.issue_state(["7", "42"])


def test_a_bump_over_a_non_integer_epoch_raises_and_writes_nothing(store, raw, prefix):
    raw.hset(meta(prefix), "epoch", "two")
    with pytest.raises(StoreDataError):
        store.bump_epoch(actor="a", reason="r", now=T0)
    assert raw.hget(meta(prefix), "epoch") == "two"
    assert raw.zcard(data(raw, prefix, "audit")) == 1


def test_unreadable_log_entries_raise_store_data_error(store, raw, prefix):
    raw.zadd(data(raw, prefix, "audit"), {"not json": 99})
    raw.zadd(data(raw, prefix, "signins"), {'[99, 1.5, ["too", "short"]]': 99})
    with pytest.raises(StoreDataError):
        store.audit_events(limit=10)
    with pytest.raises(StoreDataError):
        store.signins(user_id=None, limit=10)


def test_a_prefix_holding_foreign_data_stops_the_start(server, raw, prefix):
    raw.set(f"{prefix}meta", "not ours")
    with pytest.raises(ConfigError, match="STORE_URL"):
        RedisStore.from_url(server.url, defaults=DEFAULTS, key_prefix=prefix)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (redis.exceptions.BusyLoadingError("Redis is loading"), StoreUnavailableError),
        (redis.exceptions.TimeoutError("Timeout reading from socket"), StoreUnavailableError),
        (redis.exceptions.ReadOnlyError("a read only replica"), StoreUnavailableError),
        (redis.exceptions.ResponseError("MISCONF cannot persist"), StoreUnavailableError),
        (redis.exceptions.ResponseError("BUSY running a script"), StoreUnavailableError),
        (redis.exceptions.ResponseError("WRONGTYPE Operation against a key"), StoreDataError),
        (redis.exceptions.ResponseError("hash value is not an integer"), StoreDataError),
        # A socket error redis-py lets through: the same lost connection.
        (BrokenPipeError("socket closed"), StoreUnavailableError),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else str(value).split()[0],
)
@pytest.mark.parametrize("path", ["click connection", "pool"])
def test_redis_errors_become_store_errors(store, monkeypatch, error, expected, path):
    store.token_state("42")  # the script is loaded, the click's connection open

    def fail(*args, **kwargs):
        raise error

    if path == "pool":  # the way a second thread, or a reloaded script, takes
        monkeypatch.setattr(store._click, "lock", _BusyLock())
        monkeypatch.setattr(store.redis, "evalsha", fail)
    else:
        monkeypatch.setattr(Connection, "read_response", fail)
    with pytest.raises(expected) as exc_info:
        store.token_state("42")
    assert exc_info.value.__cause__ is error


class _BusyLock:
    """A lock some other thread holds."""

    def acquire(self, blocking=True):
        return False


def test_the_client_has_bounded_timeouts_and_no_retries(open_):
    kwargs = open_(redis_socket_timeout_seconds=0.25).redis.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 0.25
    assert kwargs["socket_connect_timeout"] == 0.5
    assert kwargs["retry"].get_retries() == 0
    assert kwargs["protocol"] == 2  # RESP3 maintenance handling could relax timeouts to 10 s
    defaults = open_().redis.connection_pool.connection_kwargs
    assert (defaults["socket_timeout"], defaults["socket_connect_timeout"]) == (0.5, 0.5)


def test_a_stopped_redis_raises_store_unavailable_and_the_same_store_recovers(own_redis):
    store = RedisStore.from_url(own_redis.url, defaults=DEFAULTS)
    try:
        incarnation = store.token_state("42").incarnation
        own_redis.stop()
        for call in (
            lambda: store.token_state("42"),
            lambda: store.issue_state(["42"]),
            lambda: store.bump_epoch(actor="a", reason="r", now=T0),
            lambda: store.record_signins([Signin(T0, "42", "ok")]),
            lambda: store.signins(user_id="42", limit=5),
            store.ping,
        ):
            with pytest.raises(StoreUnavailableError):
                call()
        own_redis.start()
        assert store.token_state("42").incarnation == incarnation
        assert store.bump_epoch(actor="a", reason="r", now=T0).epoch == 2
    finally:
        store.close()


def test_a_redis_that_does_not_answer_times_out_as_store_unavailable(own_redis):
    store = RedisStore.from_url(own_redis.url, defaults=DEFAULTS, redis_socket_timeout_seconds=0.1)
    try:
        store.token_state("42")
        own_redis.pause()
        try:
            with pytest.raises(StoreUnavailableError):
                store.token_state("42")
        finally:
            own_redis.resume()
        assert store.token_state("42").epoch == 1
    finally:
        store.close()


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_epochs_and_settings_survive_a_restart_with_appendonly(own_redis, how):
    store = RedisStore.from_url(own_redis.url, defaults=DEFAULTS)
    try:
        incarnation = store.token_state("42").incarnation
        store.bump_epoch(actor="a", reason="r", now=T0)
        revoked = store.revoke_user("42", actor="a", reason="r", now=T0)
        store.update_settings(
            {"auto_login_enabled": True, "token_ttl_seconds": 3600}, actor="a", now=T0
        )
        epoch_id = store.token_state("42").epoch_id
        assert epoch_id != 0
        getattr(own_redis, how)()
        own_redis.start()
        expected = TokenState(incarnation, 2, revoked, epoch_id=epoch_id)
        assert store.token_state("42") == expected
        reopened = RedisStore.from_url(own_redis.url, defaults=DEFAULTS)
        try:
            assert reopened.token_state("42") == expected
            assert reopened.settings() == Settings(True, 3600)
            assert [e.action for e in reopened.audit_events(limit=1)] == ["settings.update"]
        finally:
            reopened.close()
    finally:
        store.close()


def test_a_forked_worker_gets_its_own_connections(store):
    parent_state = store.token_state("42")  # the parent's pool now holds a connection
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running pytest's teardown
        code = 1
        try:
            os.close(read_fd)
            child_state = store.token_state("42")
            epoch = store.bump_epoch(actor="a", reason="r", now=T0).epoch
            pool_pid = store.redis.connection_pool.pid
            click_pid = store._click.pid
            report = [child_state.incarnation, epoch, pool_pid == os.getpid() == click_pid]
            os.write(write_fd, json.dumps(report).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        report = json.loads(pipe.read())
    assert os.waitpid(pid, 0)[1] == 0
    assert report == [parent_state.incarnation, 2, True]
    assert store.token_state("42").epoch == 2  # the parent's connection still works


def test_a_forked_worker_keeps_one_click_connection_for_every_tenant(store, server):
    store.create_tenant("acme", "https://acme.example.com", actor="a", reason="r", now=T0)
    store._clicks.click.pid = -1  # as in a forked worker: the parent's connection is not ours
    store.tenant("acme").token_state("42")
    mine = store._click

    for tenant in ("acme", "acme", "default"):
        store.tenant(tenant).token_state("42")  # a view is made per request

    # One connection of this process, made once and shared by every view:
    # never one a click.
    assert store._click is mine and mine.pid == os.getpid()


def test_signins_are_newest_first_even_within_one_instant(store):
    for outcome in ("ok", "token_expired", "token_revoked"):
        store.record_signins([Signin(T0, "42", outcome, "203.0.113.7", "UA")])
    store.record_signins([Signin(T0, "7", "ok")])
    assert [s.outcome for s in store.signins(user_id="42", limit=10)] == [
        "token_revoked",
        "token_expired",
        "ok",
    ]
    assert store.signins(user_id=None, limit=2) == [
        Signin(T0, "7", "ok"),
        Signin(T0, "42", "token_revoked", "203.0.113.7", "UA"),
    ]
    assert store.signins(user_id="nobody", limit=10) == []


def test_signins_are_written_a_script_per_batch_in_order_per_user(store, sends):
    from service.store.redis_scripts import SIGNIN_BATCH

    count = 2 * SIGNIN_BATCH + 7  # more than one script takes
    batch = [
        Signin(T0 + timedelta(seconds=i), f"u{i % 3}", "ok", f"10.0.0.{i % 250}", "UA ü")
        for i in range(count)
    ]
    sends[0] = 0
    store.record_signins(batch)
    assert sends[0] == 3  # one script call a batch, no SCRIPT EXISTS before
    assert store.signins(user_id=None, limit=500) == batch[::-1]
    assert store.signins(user_id="u1", limit=500) == [s for s in batch if s.user_id == "u1"][::-1]


def test_prune_drops_every_entry_older_than_before_in_any_order(store, raw, prefix):
    old, new = T0 - timedelta(days=100), T0 - timedelta(days=1)
    store.record_signins([Signin(new, "42", "token_expired")])
    for i in range(600):  # more than one prune batch, written after a newer entry
        store.record_signins([Signin(old, f"u{i}", "ok")])
    store.record_signins([Signin(old, "42", "ok")])
    store.bump_epoch(actor="a", reason="r", now=new)
    store.bump_epoch(actor="a", reason="r", now=old)
    store.prune(before=T0 - timedelta(days=90))
    assert store.signins(user_id=None, limit=1000) == [Signin(new, "42", "token_expired")]
    assert store.signins(user_id="42", limit=10) == [Signin(new, "42", "token_expired")]
    assert store.signins(user_id="u1", limit=10) == []
    bump, create = store.audit_events(limit=10)  # the store was created just now
    assert (bump.action, bump.at, create.action) == ("epoch.bump", new, "store.create")
    assert not raw.exists(data(raw, prefix, "signins:u1"))
    assert raw.zcard(data(raw, prefix, "signins_at")) == 1
    assert raw.zcard(data(raw, prefix, "audit_at")) == 2


def test_audit_reads_in_the_order_written_and_signins_in_the_order_clicked(store):
    store.bump_epoch(actor="a", reason="r", now=T0 - timedelta(days=3))
    store.record_signins([Signin(T0, "42", "ok")])
    store.record_signins([Signin(T0 - timedelta(days=1), "42", "token_expired")])
    assert [e.action for e in store.audit_events(limit=10)] == ["epoch.bump", "store.create"]
    # Sign-ins are written behind the click, in batches: newest click first.
    assert [s.outcome for s in store.signins(user_id="42", limit=10)] == ["ok", "token_expired"]


def test_logs_are_capped(open_):
    store = open_(redis_max_log_entries=3)
    for i in range(5):
        store.record_signins([Signin(T0 + timedelta(seconds=i), f"u{i % 2}", "ok")])
        store.bump_epoch(actor="a", reason=str(i), now=T0)
    assert [s.at for s in store.signins(user_id=None, limit=10)] == [
        T0 + timedelta(seconds=i) for i in (4, 3, 2)
    ]
    # A sign-in trimmed from the log leaves its user's list too.
    assert [s.at for s in store.signins(user_id="u0", limit=10)] == [
        T0 + timedelta(seconds=i) for i in (4, 2)
    ]
    assert [e.detail["reason"] for e in store.audit_events(limit=10)] == ["4", "3", "2"]


def test_timestamps_come_back_exactly_as_aware_utc(store):
    at = datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=UTC)
    bumped = store.bump_epoch(actor="ops", reason="leak", now=at)
    assert store.epoch() == bumped
    assert bumped.changed_at == at
    assert store.audit_events(limit=1)[0].at == at


@pytest.mark.parametrize(
    "url",
    [
        "redis://host:notaport/0",
        "redis://127.0.0.1:99999/0",
        "redis://127.0.0.1:6379/notadb",
        "redis://:hunter2-secret@host:notaport/0",
    ],
)
def test_a_bad_url_is_a_config_error_naming_store_url(url):
    with pytest.raises(ConfigError) as exc_info:
        RedisStore.from_url(url, defaults=DEFAULTS)
    message = str(exc_info.value)
    assert "STORE_URL" in message and "\n" not in message
    assert "hunter2" not in message


def test_an_unreachable_redis_is_a_config_error_without_the_password():
    url = "redis://:hunter2-secret@127.0.0.1:1/0"
    with pytest.raises(ConfigError) as exc_info:
        open_store(url, defaults=DEFAULTS)
    message = str(exc_info.value)
    assert message.startswith("STORE_URL: cannot reach Redis at 127.0.0.1:1: ")
    assert "hunter2" not in message and "\n" not in message


@pytest.mark.parametrize(
    "query", ["socket_timeout=30", "protocol=3", "retry_on_timeout=true", "health_check_interval=5"]
)
def test_store_url_may_not_override_the_services_own_redis_settings(server, query):
    from service.errors import ConfigError

    with pytest.raises(ConfigError, match="STORE_URL sets"):
        open_store(f"{server.url}?{query}", defaults=DEFAULTS, options={})
    with pytest.raises(ConfigError, match="STORE_URL sets"):
        open_store(f"unix:///run/redis.sock?db=0&{query}", defaults=DEFAULTS, options={})


def test_only_a_unix_url_may_name_its_database_in_the_query(server):
    from service.errors import ConfigError

    with pytest.raises(ConfigError, match="STORE_URL sets 'db'"):
        open_store(f"{server.url}?db=1", defaults=DEFAULTS, options={})


def test_a_live_tenant_left_in_the_trash_never_stops_the_reaping_of_the_others(store, raw, prefix):
    for tenant in ("acme", "globex"):
        store.create_tenant(tenant, f"https://{tenant}.example.com", actor="a", reason="r", now=T0)
        store.tenant(tenant).revoke_user("42", actor="a", reason="r", now=T0)
    gone = data(raw, prefix, "user_epochs", tenant="globex")
    store.delete_tenant("globex", actor="a", reason="r", now=T0)
    # A delete of acme that stopped after its trash entry (acme is still live).
    live = raw.hget(meta(prefix, "acme"), "incarnation")
    raw.sadd(f"{prefix}{{_platform}}:trash", f"acme {live}")

    for _ in range(100):  # bounded: each step removes something or says it is done
        if not store.reap(budget=10):
            break

    assert not raw.exists(gone)
    # the live one untouched
    assert store.tenant("acme").token_state("42").user_epoch != 0


def test_a_tenant_of_thousands_is_reaped_in_a_bounded_number_of_steps(store, raw, prefix):
    """Hashes big enough to be hash tables (not listpacks) shrink by a budget every step."""
    store.create_tenant("acme", "https://acme.example.com", actor="a", reason="r", now=T0)
    acme = store.tenant("acme")
    for user in range(3000):
        acme.revoke_user(f"u{user}", actor="a", reason="r", now=T0)
    epochs = data(raw, prefix, "user_epochs", tenant="acme")
    assert raw.object("encoding", epochs) == "hashtable"
    store.delete_tenant("acme", actor="a", reason="r", now=T0)

    steps = 0
    while store.reap(budget=100):
        steps += 1
        # user_epochs, audit and audit_at: 30 full steps each, and a few more
        assert steps < 120, raw.hlen(epochs)
    assert not raw.exists(epochs)


def test_a_big_tenant_is_reaped_a_slice_at_a_time(store, raw, prefix):
    """No step frees more than its budget of one collection: the pauses spread the work."""
    store.create_tenant("acme", "https://acme.example.com", actor="a", reason="r", now=T0)
    acme = store.tenant("acme")
    for user in range(120):
        acme.revoke_user(f"u{user}", actor="a", reason="r", now=T0)
    epochs = data(raw, prefix, "user_epochs", tenant="acme")
    audit = data(raw, prefix, "audit", tenant="acme")
    store.delete_tenant("acme", actor="a", reason="r", now=T0)

    sizes = [(raw.hlen(epochs), raw.zcard(audit))]
    for _ in range(100):
        more = store.reap(budget=25)
        sizes.append((raw.hlen(epochs), raw.zcard(audit)))
        if not more:
            break
    shrinks = [
        (before[0] - after[0], before[1] - after[1])
        for before, after in zip(sizes, sizes[1:], strict=False)
    ]
    assert sizes[0][0] == 121  # 120 users and the incarnation's marker
    assert all(e <= 25 and a <= 25 for e, a in shrinks[:-1])  # the last step unlinks the rest
    assert len(shrinks) >= 121 // 25
    assert not raw.exists(epochs) and not raw.exists(audit)
