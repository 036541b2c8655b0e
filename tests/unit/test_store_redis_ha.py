"""Sentinel and Cluster URLs, REDIS_MIN_REPLICAS_ACK and WAIT, on real servers."""

from __future__ import annotations

import tempfile
import tomllib
from datetime import UTC, datetime

import pytest

from service.config import _DEFAULTS_FILE, validate_config
from service.errors import ConfigError, StoreNotAcknowledgedError
from service.store import LinkCheck, Settings, open_store
from service.store.redis import RedisStore
from service.store.redis_urls import CLUSTER, SENTINEL, parse_store_url
from tests.conftest import production_config
from tests.support.redis_ha import SentinelSet, _replica_args, online_replicas, wait_for
from tests.support.redis_server import RedisServer

T0 = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
DEFAULTS = Settings(False, 259200)
TIMEOUTS = {"socket_timeout": 0.5, "connect_timeout": 0.5}


def deployment_options(store_url: str, **extra) -> dict:
    config = tomllib.loads(_DEFAULTS_FILE.read_text())
    config.update(production_config(store_url, **extra))
    return dict(validate_config(config, tempfile.gettempdir()).store_options)


@pytest.mark.parametrize(
    ("url", "ack"),
    (
        ("redis+sentinel://h1:26379,h2:26379,h3:26379/links/0", 1),
        ("rediss+sentinel://h1,h2/links", 1),
        ("redis+cluster://h1:7000,h2:7001/", 1),
        ("redis://127.0.0.1:6379/0", 0),
        ("unix:///run/redis.sock?db=0", 0),
    ),
)
def test_min_replicas_ack_defaults_to_1_on_sentinel_and_cluster_urls(url, ack):
    assert deployment_options(url)["redis_min_replicas_ack"] == ack
    options = deployment_options(url, REDIS_MIN_REPLICAS_ACK=2)
    assert options["redis_min_replicas_ack"] == 2


@pytest.mark.parametrize("value", (-1, 17, "many", 1.5))
def test_a_bad_min_replicas_ack_stops_the_start(value):
    with pytest.raises(ConfigError, match="REDIS_MIN_REPLICAS_ACK"):
        deployment_options("redis://127.0.0.1:6379/0", REDIS_MIN_REPLICAS_ACK=value)


def test_min_replicas_ack_on_an_sqlite_store_stops_the_start():
    with pytest.raises(ConfigError, match="REDIS_MIN_REPLICAS_ACK"):
        deployment_options("sqlite:////tmp/x.db", REDIS_MIN_REPLICAS_ACK=1)


def test_a_sentinel_url_names_the_sentinels_the_primary_and_the_passwords():
    url = "redis+sentinel://:data%40pw@h1:26379,[::1]:26380,h3/links/3?sentinel_password=s3"
    target = parse_store_url(url, **TIMEOUTS)
    try:
        assert target.kind == SENTINEL
        pool = target.client.connection_pool
        assert pool.service_name == "links"
        assert pool.connection_kwargs["password"] == "data@pw"
        assert pool.connection_kwargs["db"] == 3
        sentinels = pool.sentinel_manager.sentinels
        hosts = [
            (
                s.connection_pool.connection_kwargs["host"],
                s.connection_pool.connection_kwargs["port"],
            )
            for s in sentinels
        ]
        assert hosts == [("h1", 26379), ("::1", 26380), ("h3", 26379)]
        assert {s.connection_pool.connection_kwargs["password"] for s in sentinels} == {"s3"}
        assert "data@pw" not in target.where and "h1:26379" in target.where
    finally:
        target.client.close()


def test_a_rediss_sentinel_url_speaks_tls_to_the_sentinels_and_the_data_nodes():
    url = "rediss+sentinel://h1:26379/links?ssl_ca_certs=/etc/ca.pem&ssl_check_hostname=false"
    target = parse_store_url(url, **TIMEOUTS)
    try:
        pool = target.client.connection_pool
        assert pool.connection_class.__name__ == "SentinelManagedSSLConnection"
        assert pool.connection_kwargs["ssl_ca_certs"] == "/etc/ca.pem"
        assert pool.connection_kwargs["ssl_check_hostname"] is False
        (sentinel,) = pool.sentinel_manager.sentinels
        kwargs = sentinel.connection_pool.connection_kwargs
        assert sentinel.connection_pool.connection_class.__name__ == "SSLConnection"
        assert kwargs["ssl_ca_certs"] == "/etc/ca.pem"
    finally:
        target.client.close()


@pytest.mark.parametrize(
    ("url", "message"),
    (
        ("redis+sentinel://:secret-pw@h1:26379/", "primary name"),
        ("redis+sentinel://:secret-pw@h1:26379/links/x", "primary name"),
        ("redis+sentinel://:secret-pw@h1:26379/links/0?socket_timeout=9", "socket_timeout"),
        ("redis+sentinel://:secret-pw@h1:99999/links", "bad host:port"),
        ("redis+cluster://:secret-pw@h1:7000/1", "database 0 only"),
        ("redis+cluster://:secret-pw@h1:7000/?retry_on_timeout=1", "retry_on_timeout"),
    ),
)
def test_a_bad_sentinel_or_cluster_url_stops_the_start_without_its_password(url, message):
    with pytest.raises(ConfigError, match=message) as exc_info:
        parse_store_url(url, **TIMEOUTS)
    assert "secret-pw" not in str(exc_info.value)


def test_an_unreachable_cluster_stops_the_start_with_one_clear_line():
    port = RedisServer().port or 1  # nothing listens on port 1 of the loopback
    with pytest.raises(ConfigError, match="cannot reach the Redis Cluster") as exc_info:
        open_store(f"redis+cluster://:secret-pw@127.0.0.1:{port}/", defaults=DEFAULTS)
    assert "secret-pw" not in str(exc_info.value)
    assert CLUSTER  # the kind such a URL names


def open_replicated(primary: RedisServer, ack: int) -> RedisStore:
    # A wait of 1 s (half the socket timeout): the replica of a loaded test
    # machine confirms within it, where the default 0.25 s is sometimes short.
    return RedisStore.from_url(
        primary.url,
        defaults=DEFAULTS,
        redis_min_replicas_ack=ack,
        redis_socket_timeout_seconds=2.0,
    )


@pytest.fixture
def primary_and_replica():
    with RedisServer(appendonly=True) as primary:
        with RedisServer(appendonly=True, extra_args=_replica_args(primary)) as replica:
            with primary.client() as client:
                wait_for(lambda: online_replicas(client) == 1, "the replica in sync")
            yield primary, replica


def test_a_change_waits_for_the_replicas_it_asks_for(primary_and_replica):
    primary, replica = primary_and_replica
    store = open_replicated(primary, 1)
    try:
        assert store.ping() is None
        assert store.bump_epoch(actor="a", reason="r", now=T0).epoch == 2
        with replica.client() as client:  # on the replica when the bump answered
            assert client.hget("autologin:{default}:meta", "epoch") == "2"
    finally:
        store.close()


def test_a_change_fewer_replicas_confirm_raises_and_says_it_may_have_been_applied(
    primary_and_replica,
):
    primary, _ = primary_and_replica
    store = open_replicated(primary, 2)
    try:
        assert "REDIS_MIN_REPLICAS_ACK" in store.ping()  # one replica of the two
        for change in (
            lambda: store.bump_epoch(actor="a", reason="r", now=T0),
            lambda: store.revoke_user("42", actor="a", reason="r", now=T0),
            lambda: store.update_settings({"auto_login_enabled": True}, actor="a", now=T0),
            lambda: store.create_tenant(
                "acme", "https://acme.example.com", actor="a", reason="r", now=T0
            ),
        ):
            with pytest.raises(StoreNotAcknowledgedError):
                change()
        assert store.epoch().epoch == 2  # applied on the primary all the same
        assert store.settings().auto_login_enabled is True
        assert "may have been applied" in StoreNotAcknowledgedError.detail
        store.token_state("42")  # reads go on
    finally:
        store.close()


def test_a_change_that_writes_only_sometimes_waits_only_when_it_wrote(primary_and_replica):
    primary, _ = primary_and_replica
    store = open_replicated(primary, 2)
    try:
        args = ("42", T0.timestamp(), "a", "r", 1_000_000_001, 1_000_000_002)
        # As a click's first binding will: WAIT only if the reply says it wrote.
        assert store._run(store._revoke_script, args, change=lambda reply: False) != 0
        with pytest.raises(StoreNotAcknowledgedError):
            store._run(store._revoke_script, args, change=lambda reply: True)
        assert store.token_state("42").user_epoch in (1_000_000_001, 1_000_000_002)
    finally:
        store.close()


@pytest.mark.parametrize("ack", [1, 2])
def test_a_first_binding_waits_for_the_replicas_too(primary_and_replica, ack):
    primary, _ = primary_and_replica
    store = open_replicated(primary, ack)
    try:
        if ack == 2:  # set while one replica is enough to say it was applied
            with pytest.raises(StoreNotAcknowledgedError):
                store.update_settings({"bind_to_first_device": True}, actor="a", now=T0)
        else:
            store.update_settings({"bind_to_first_device": True}, actor="a", now=T0)
        state = store.token_state("42")
        check = LinkCheck(
            "link-0123456789abcd", state.incarnation, state.epoch, 0, "dev-a", 2_000_000_000, 0
        )
        if ack == 1:
            assert store.token_state("42", link=check).bound_device == "dev-a"
        else:  # one replica of two: the binding may have been made, the click is refused
            with pytest.raises(StoreNotAcknowledgedError):
                store.token_state("42", link=check)
            assert store.token_state("42", link=check).bound_device == "dev-a"  # it was
        # A binding that exists already writes nothing: no wait, whatever the replicas.
        assert store.token_state("42", link=check._replace(device="dev-b")).bound_device == "dev-a"
    finally:
        store.close()


def test_a_sentinel_store_with_a_password_follows_the_primary():
    with SentinelSet(replicas=1, password="data-pw") as sentinels:
        store = open_store(sentinels.url, defaults=DEFAULTS, options={"redis_min_replicas_ack": 1})
        try:
            assert store.bump_epoch(actor="a", reason="r", now=T0).epoch == 2
            assert store.ping() is None
            assert store._clicks is None  # the click's read takes redis-py's way here
            with sentinels.client(sentinels.primary()) as client:
                assert client.hget("autologin:{default}:meta", "epoch") == "2"
        finally:
            store.close()
