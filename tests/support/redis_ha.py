"""Replicated Redis for tests: a primary, replicas and Sentinels; a Redis Cluster.

Every process is a real ``redis-server`` on a free ``127.0.0.1`` port with its
own temporary directory, append-only where a guarantee needs it, started and
removed by the tests. Failure detection is tuned down (Sentinel's
``down-after-milliseconds``, the Cluster's ``cluster-node-timeout``) so that
a failover takes a few seconds, not the production default of 30.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import redis

from tests.support.redis_server import (
    START_TIMEOUT_SECONDS,
    RedisServer,
    _answering_pid,
    _free_port,
    redis_server_binary,
)

__all__ = ["PRIMARY_NAME", "RedisCluster", "SentinelSet", "wait_for"]

#: The name Sentinel knows the primary by.
PRIMARY_NAME = "links"
#: How long a node may not answer before Sentinel (or the Cluster) calls it down.
DOWN_AFTER_MS = 1000
#: Longest wait for a replicated setup to settle (sync, failover, slot table).
SETTLE_SECONDS = 30.0
T = TypeVar("T")


def wait_for(check: Callable[[], T], what: str, timeout: float = SETTLE_SECONDS) -> T:
    """Return ``check()``'s first true answer; raise naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = check()
        except (redis.RedisError, OSError):
            answer = None
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def online_replicas(client: redis.Redis) -> int:
    """Return how many replicas are attached to the server of ``client`` and in sync."""
    info = client.info("replication")
    return sum(
        1
        for name, value in info.items()
        if name.startswith("slave") and isinstance(value, dict)
        if value.get("state") == "online"
    )


def _replica_args(primary: RedisServer) -> list[str]:
    return [
        "--replicaof", "127.0.0.1", str(primary.port),
        "--repl-diskless-sync", "yes",
        "--repl-diskless-sync-delay", "0",
    ]  # fmt: skip


class _Sentinel:
    """One Sentinel process (``redis-server <conf> --sentinel``)."""

    def __init__(self, primary_port: int, extra_conf: str = "") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sentinel-test-"))
        self.port = _free_port()
        self.conf = self.dir / "sentinel.conf"
        self.conf.write_text(
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            f"dir {self.dir}\n"
            "logfile sentinel.log\n"
            f"sentinel monitor {PRIMARY_NAME} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {PRIMARY_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {PRIMARY_NAME} 5000\n"
            f"sentinel parallel-syncs {PRIMARY_NAME} 2\n" + extra_conf
        )
        self.process = subprocess.Popen(
            [redis_server_binary(), str(self.conf), "--sentinel"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while _answering_pid(self.port) != self.process.pid:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"redis sentinel did not start:\n{self.log()}")
            time.sleep(0.02)

    def log(self) -> str:
        try:
            return (self.dir / "sentinel.log").read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelSet:
    """A primary, ``replicas`` replicas and three Sentinels watching them, all append-only."""

    def __init__(self, replicas: int = 2, *, password: str | None = None) -> None:
        self.password = password
        self.servers: list[RedisServer] = []
        self.sentinels: list[_Sentinel] = []
        self._replicas = replicas

    def start(self) -> SentinelSet:
        # A password is set once a server answers (RedisServer's PING has none).
        auth = ["--masterauth", self.password] if self.password else []
        try:
            primary = RedisServer(appendonly=True, extra_args=auth).start()
            self.servers.append(primary)
            self._require_password(primary)
            for _ in range(self._replicas):
                replica = RedisServer(appendonly=True, extra_args=_replica_args(primary) + auth)
                self.servers.append(replica.start())
                self._require_password(replica)
            wait_for(lambda: self.online_replicas(primary) == self._replicas, "replicas in sync")
            # The Sentinels log in to the data nodes with the password.
            conf = f"sentinel auth-pass {PRIMARY_NAME} {self.password}\n" if self.password else ""
            for _ in range(3):
                self.sentinels.append(_Sentinel(primary.port, conf))
            # Each Sentinel has found the others and both replicas.
            wait_for(self._sentinels_settled, "Sentinels aware of each other and the replicas")
        except BaseException:
            self.close()
            raise
        return self

    def _require_password(self, server: RedisServer) -> None:
        if self.password:
            with redis.Redis(port=server.port) as client:
                client.config_set("requirepass", self.password)

    def _sentinels_settled(self) -> bool:
        for sentinel in self.sentinels:
            with redis.Redis(port=sentinel.port, decode_responses=True) as client:
                state = client.sentinel_master(PRIMARY_NAME)
                if state["num-other-sentinels"] < 2 or state["num-slaves"] < self._replicas:
                    return False
        return True

    def client(self, server: RedisServer) -> redis.Redis:
        return redis.Redis(port=server.port, password=self.password, decode_responses=True)

    def online_replicas(self, server: RedisServer) -> int:
        with self.client(server) as client:
            return online_replicas(client)

    @property
    def url(self) -> str:
        """The service's ``redis+sentinel://`` URL of this set (database 0)."""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        auth = f":{self.password}@" if self.password else ""
        return f"redis+sentinel://{auth}{hosts}/{PRIMARY_NAME}/0"

    def primary(self) -> RedisServer:
        """Return the server the Sentinels name as primary now."""
        with redis.Redis(port=self.sentinels[0].port, decode_responses=True) as client:
            _, port = client.sentinel_get_master_addr_by_name(PRIMARY_NAME)
        return next(s for s in self.servers if s.port == int(port))

    def replicas(self) -> list[RedisServer]:
        primary = self.primary()
        return [s for s in self.servers if s is not primary and s.running]

    def wait_for_new_primary(self, old: RedisServer) -> RedisServer:
        """Wait until the Sentinels promoted another server than ``old``, which answers."""

        def promoted() -> RedisServer | None:
            new = self.primary()
            if new is old or not new.running:
                return None
            with self.client(new) as client:
                return new if client.info("replication")["role"] == "master" else None

        return wait_for(promoted, "a replica promoted by the Sentinels")

    def close(self) -> None:
        for sentinel in self.sentinels:
            sentinel.close()
        for server in self.servers:
            server.close()
        self.sentinels, self.servers = [], []

    def __enter__(self) -> SentinelSet:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _redis_cli() -> str:
    path = shutil.which("redis-cli")
    if not path:
        raise RuntimeError("redis-cli not found: install redis-tools")
    return path


class RedisCluster:
    """A Redis Cluster of ``primaries`` shards with ``replicas`` replicas each, append-only."""

    def __init__(self, primaries: int = 3, replicas: int = 0) -> None:
        self.primaries, self.replicas_per_primary = primaries, replicas
        self.servers: list[RedisServer] = []

    def start(self) -> RedisCluster:
        args = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(DOWN_AFTER_MS),
            "--repl-diskless-sync", "yes",
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        try:
            for _ in range(self.primaries * (1 + self.replicas_per_primary)):
                # The cluster bus listens on a port of its own (free, like the node's).
                bus = ["--cluster-port", str(_free_port())]
                server = RedisServer(appendonly=True, extra_args=args + bus)
                server.port = _free_port()  # started on it (a bus port must be below 65536)
                self.servers.append(server)
                server.start()
            subprocess.run(
                [
                    _redis_cli(),
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{s.port}" for s in self.servers),
                    "--cluster-replicas",
                    str(self.replicas_per_primary),
                    "--cluster-yes",
                ],  # fmt: skip
                check=True,
                capture_output=True,
                timeout=SETTLE_SECONDS,
            )
            wait_for(self._settled, "every node sees the cluster ok, replicas in sync")
        except BaseException:
            self.close()
            raise
        return self

    def client(self, server: RedisServer) -> redis.Redis:
        return redis.Redis(port=server.port, decode_responses=True)

    def _settled(self) -> bool:
        running = [s for s in self.servers if s.running]
        masters = 0
        for server in running:
            with self.client(server) as client:
                if "cluster_state:ok" not in str(client.execute_command("CLUSTER", "INFO")):
                    return False
                info = client.info("replication")
                if info["role"] == "master":
                    masters += 1
                    online = sum(
                        1
                        for name, value in info.items()
                        if name.startswith("slave") and isinstance(value, dict)
                        if value.get("state") == "online"
                    )
                    if online < self.replicas_per_primary:
                        return False
                elif info.get("master_link_status") != "up":
                    return False
        return masters == self.primaries

    def wait_until_settled(self) -> None:
        wait_for(self._settled, "the cluster settled")

    @property
    def url(self) -> str:
        """The service's ``redis+cluster://`` URL, naming every node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in self.servers) + "/"

    def node_id(self, server: RedisServer) -> str:
        with self.client(server) as client:
            return client.execute_command("CLUSTER", "MYID")

    def owner(self, slot: int) -> RedisServer:
        """Return the primary that serves ``slot`` now (as the running nodes see it)."""
        server = next(s for s in self.servers if s.running)
        with self.client(server) as client:
            for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    port = int(primary[1])
                    return next(s for s in self.servers if s.port == port)
        raise LookupError(f"slot {slot} is served by no node")

    def primaries_now(self) -> list[RedisServer]:
        out = []
        for server in self.servers:
            if server.running:
                with self.client(server) as client:
                    if client.info("replication")["role"] == "master":
                        out.append(server)
        return out

    def replica_of(self, primary: RedisServer) -> RedisServer:
        node = self.node_id(primary)
        for server in self.servers:
            if server.running and server is not primary:
                with self.client(server) as client:
                    info = client.info("replication")
                if info["role"] == "slave" and int(info["master_port"]) == primary.port:
                    return server
        raise LookupError(f"no replica of node {node}")

    def move_slot(
        self,
        slot: int,
        target: RedisServer,
        *,
        batch: int = 2,
        between: Callable[[], Any] = lambda: None,
    ) -> int:
        """Move ``slot`` to ``target`` as ``redis-cli --cluster reshard`` does; return keys moved.

        Keys go ``batch`` at a time with ``MIGRATE``, calling ``between``
        after each batch, so a test can act while the slot is half moved.
        """
        source = self.owner(slot)
        source_id, target_id = self.node_id(source), self.node_id(target)
        with self.client(source) as src, self.client(target) as dst:
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
            moved = 0
            while True:
                keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch)
                if not keys:
                    break
                src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
                moved += len(keys)
                between()
            for server in self.primaries_now():
                with self.client(server) as client:
                    client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        return moved

    def close(self) -> None:
        for server in self.servers:
            server.close()
        self.servers = []

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def keyslot(key: str, servers: Sequence[RedisServer]) -> int:
    """Return the Cluster slot of ``key`` (CLUSTER KEYSLOT on any running node)."""
    server = next(s for s in servers if s.running)
    with redis.Redis(port=server.port, decode_responses=True) as client:
        return int(client.execute_command("CLUSTER", "KEYSLOT", key))
