"""The click's own connections: one to a single Redis, or one per Cluster shard."""

from __future__ import annotations

import os
import threading
from typing import Any

from redis.connection import ConnectionPool
from redis.exceptions import ConnectionError, ResponseError


def _bulk(text: str) -> bytes:
    data = text.encode()
    return b"$%d\r\n%b\r\n" % (len(data), data)


class _ClickConnection:
    """The connection a process keeps for the click's epoch read.

    redis-py's way for one command (pool checkout and release, packing,
    its event hooks) costs this machine more CPU than the round trip
    itself. The click's read is always the same script on the same two
    keys, so its request is packed once, and this connection skips the
    pool. It is used only by one thread at a time and only in the process
    that made it; a caller that finds it busy takes the pool's way.
    """

    __slots__ = ("pid", "lock", "connection", "reused")

    def __init__(self, pool: ConnectionPool) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.connection = pool.make_connection()  # connects on first use
        #: True once a request went through: a failure may then mean that
        #: Redis closed the connection meanwhile (a restart), not that it is down.
        self.reused = False

    def call(self, request: bytes) -> Any:
        """Send one packed request and return its reply (a redis-py error is raised)."""
        while True:
            reused, self.reused = self.reused, False
            try:
                self.connection.send_packed_command([request], check_health=False)
                reply = self.connection.read_response()
            except ResponseError:
                self.reused = True  # an error reply (NOSCRIPT, ...): the connection is fine
                raise
            except ConnectionError:
                self.connection.disconnect()
                if reused:
                    continue  # once more, on a new connection; a read is safe to repeat
                raise
            except BaseException:
                # A timeout, or an interruption between request and reply: a
                # reply left on the connection would answer the next request.
                self.connection.disconnect()
                raise
            self.reused = True
            return reply


class _Clicks:
    """The click connection of this process, shared by every tenant view of a store.

    A view is made per request (:meth:`RedisStore.tenant`); the connection
    must outlive it, or a forked worker would open one a click.
    """

    __slots__ = ("pool", "click")

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.click = _ClickConnection(pool)

    def get(self) -> _ClickConnection:
        """Return this process's click connection (a forked child makes its own, once)."""
        click = self.click
        if click.pid != os.getpid():  # forked: the parent's connection is not ours
            click = self.click = _ClickConnection(self.pool)
        return click


class _ShardClicks:
    """On a Cluster: a click connection per shard primary, chosen by redis-py's slot map.

    The node comes from the cluster client (``get_node_from_key``) on every
    click, never from an address kept here: when redis-py learns that a slot
    moved or a replica was promoted, the next click goes to the new node. A
    node that no longer serves the slot answers ``MOVED`` or ``ASK`` (a
    replica too), and the click then takes redis-py's own way, which follows
    it and updates the map.
    """

    __slots__ = ("pid", "clicks")

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.clicks: dict[str, _ClickConnection] = {}

    def get(self, node: Any) -> _ClickConnection:
        if self.pid != os.getpid():  # forked: the parent's connections are not ours
            self.pid, self.clicks = os.getpid(), {}
        click = self.clicks.get(node.name)
        if click is None:
            click = self.clicks[node.name] = _ClickConnection(node.redis_connection.connection_pool)
        return click

    def close(self) -> None:
        if self.pid == os.getpid():
            for click in self.clicks.values():
                click.connection.disconnect()
