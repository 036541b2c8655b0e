"""The Redis store's URLs: one Redis, a Sentinel-watched primary, or a Cluster.

``redis://``, ``rediss://`` and ``unix://`` name one Redis (redis-py's own
``Redis.from_url``). ``redis+sentinel://`` (``rediss+sentinel://`` for TLS to
the Sentinels and the data nodes) names the primary that Redis Sentinel
names, through redis-py's :class:`~redis.sentinel.Sentinel`, which asks the
Sentinels again whenever it connects, so the store follows a failover by
itself. ``redis+cluster://`` (``rediss+cluster://``) names a Redis Cluster,
through redis-py's :class:`~redis.cluster.RedisCluster`, which routes each
command to its slot's shard and follows ``MOVED`` and ``ASK``. The service
does no failover or slot routing of its own.

Every client gets the service's short timeouts, no retries (a write whose
reply was lost is never sent twice) and RESP2. Only ``ssl_*`` query
parameters (and ``db`` in a ``unix://`` URL, ``sentinel_password`` in a
Sentinel URL) may be in the URL: anything else could override those.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from redis import Redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException, RedisError
from redis.retry import Retry
from redis.sentinel import Sentinel

from service.errors import ConfigError

__all__ = ["CLUSTER", "SENTINEL", "SINGLE", "RedisTarget", "ha_scheme", "parse_store_url"]

SINGLE, SENTINEL, CLUSTER = "single", "sentinel", "cluster"
_SCHEMES = {
    "redis": SINGLE,
    "rediss": SINGLE,
    "unix": SINGLE,
    "redis+sentinel": SENTINEL,
    "rediss+sentinel": SENTINEL,
    "redis+cluster": CLUSTER,
    "rediss+cluster": CLUSTER,
}
_DEFAULT_PORTS = {SENTINEL: 26379, CLUSTER: 6379}
#: TLS options a URL may set, and how their text is read.
_SSL_OPTIONS: dict[str, Callable[[str], Any]] = {
    "ssl_cert_reqs": str,
    "ssl_ca_certs": str,
    "ssl_ca_path": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
    "ssl_password": str,
    "ssl_check_hostname": lambda v: v.lower() in ("1", "true", "yes"),
}


def ha_scheme(url: str) -> bool:
    """Return whether ``url`` names a Sentinel or Cluster store (replicas expected)."""
    return _SCHEMES.get(url.split(":", 1)[0].lower()) in (SENTINEL, CLUSTER)


@dataclass
class RedisTarget:
    """An opened (not yet contacted) Redis client and what it reaches."""

    client: Redis | RedisCluster
    #: ``single``, ``sentinel`` or ``cluster``.
    kind: str
    #: Where, for messages: never the password.
    where: str
    #: Hides the URL's password in a message.
    redact: Callable[[str], str]


def _common(socket_timeout: float, connect_timeout: float) -> dict[str, Any]:
    return {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect_timeout,
        # No retries: a dead Redis answers within one timeout, and a write
        # whose reply was lost is not run twice. A connection that Redis
        # closed (restart) is replaced when it leaves the pool, so no
        # health-check PING is needed either: it would cost a round trip.
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
        # RESP2 works with every Redis, and keeps redis-py's RESP3-only
        # "maintenance notifications" from relaxing our timeouts to 10 s.
        "protocol": 2,
        "decode_responses": True,
    }


def _hosts(netloc: str, kind: str, url: str) -> list[tuple[str, int]]:
    hosts = []
    for item in netloc.split(","):
        host, port = item, str(_DEFAULT_PORTS[kind])
        if item.startswith("["):  # [IPv6]:port
            host, _, rest = item[1:].partition("]")
            if rest:
                port = rest.removeprefix(":")
        elif ":" in item:
            host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"STORE_URL {url!r} has a bad host:port {item!r}")
        hosts.append((host, int(port)))
    return hosts


def parse_store_url(url: str, *, socket_timeout: float, connect_timeout: float) -> RedisTarget:
    """Open the client ``url`` names; raise ``ConfigError`` for a URL that is not right."""
    parts = urlsplit(url)
    kind = _SCHEMES.get(parts.scheme.lower())
    # A password in the netloc, decoded or not, whichever form a message quotes.
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    user, _, secret = userinfo.partition(":")
    secret, user = unquote(secret), unquote(user)

    def redact(text: str) -> str:
        if not secret:
            return text
        return text.replace(quote(secret, safe=""), "***").replace(secret, "***")

    if kind is None:
        raise ConfigError(f"STORE_URL has an unknown Redis scheme {parts.scheme!r}")
    common = _common(socket_timeout, connect_timeout)
    query = parse_qsl(parts.query, keep_blank_values=True)
    unix = parts.scheme == "unix"
    for name, _ in query:
        allowed = name in _SSL_OPTIONS if kind != SINGLE else name.startswith("ssl_")
        allowed = allowed or (unix and name == "db")
        if not (allowed or (kind == SENTINEL and name == "sentinel_password")):
            raise ConfigError(
                f"STORE_URL sets {name!r}; only ssl_* parameters (db in a unix:// URL, "
                "sentinel_password in a Sentinel URL) may be in the URL (timeouts: "
                "REDIS_SOCKET_TIMEOUT_SECONDS, REDIS_CONNECT_TIMEOUT_SECONDS)"
            )
    if kind == SINGLE:
        try:
            client = Redis.from_url(url, **common)
        except ValueError as e:  # from None: the parse error may quote the URL
            raise ConfigError(
                f"STORE_URL {redact(url)!r} is not a valid Redis URL ({redact(str(e))}); "
                "write redis://[:password@]host:port/db"
            ) from None
        kw = client.connection_pool.connection_kwargs
        where = kw.get("path") or f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}"
        return RedisTarget(client, kind, where, redact)

    options = dict(query)
    tls: dict[str, Any] = {}
    if parts.scheme.lower().startswith("rediss"):
        tls = {"ssl": True}
        tls.update({k: _SSL_OPTIONS[k](v) for k, v in options.items() if k in _SSL_OPTIONS})
    auth = {"username": user or None, "password": secret or None}
    hosts_text = parts.netloc.rpartition("@")[2]
    hosts = _hosts(hosts_text, kind, redact(url))
    path = [p for p in parts.path.split("/") if p]
    if kind == SENTINEL:
        if not 1 <= len(path) <= 2 or (len(path) == 2 and not path[1].isdigit()):
            raise ConfigError(
                f"STORE_URL {redact(url)!r}: write redis+sentinel://[:password@]host1:26379,"
                "host2:26379,host3:26379/<primary name>/<db>"
            )
        name, db = unquote(path[0]), int(path[1]) if len(path) == 2 else 0
        sentinel_kwargs = {**common, **tls, "password": options.get("sentinel_password") or None}
        sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_kwargs, **common, **tls, **auth)
        client = sentinel.master_for(name, db=db)
        where = f"the primary {name!r} of the Sentinels at {hosts_text}"
        return RedisTarget(client, kind, where, redact)
    if path not in ([], ["0"]):
        raise ConfigError(
            f"STORE_URL {redact(url)!r}: a Redis Cluster has database 0 only; write "
            "redis+cluster://[:password@]host1:7000,host2:7001,host3:7002/"
        )
    where = f"the Redis Cluster at {hosts_text}"
    try:  # redis-py reads the Cluster's slots now
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in hosts],
            require_full_coverage=True,
            **common,
            **tls,
            **auth,
        )
    except (RedisError, RedisClusterException, OSError) as e:
        raise ConfigError(f"STORE_URL: cannot reach {where}: {redact(str(e))}") from None
    return RedisTarget(cluster, kind, where, redact)
