"""Benchmark rows of replicated Redis: the cost of WAIT, and of a Cluster.

- A bump with ``REDIS_MIN_REPLICAS_ACK = 1`` (the script and ``WAIT 1`` in
  one pipeline, answered once a replica holds it) against the same bump
  with 0, on one primary with one replica.
- A click's epoch read on a three-shard Redis Cluster (redis-py's cluster
  client, every key of the script declared) against the same read on one
  Redis (the store's own click connection).

Each row is a ratio measured in the same run (bench/harness.py); the servers
are real, on loopback ports, started and removed here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from bench.harness import interleaved
from service.store import Settings, open_store

__all__ = ["bench_ha"]

Report = Callable[..., None]


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs"


def bench_ha(reps: int, report: Report) -> None:
    """Add the rows of replicated Redis to the table through ``report``."""
    from tests.support.redis_ha import RedisCluster, _replica_args, online_replicas, wait_for
    from tests.support.redis_server import RedisServer

    now = datetime.now(UTC)
    defaults = Settings(True, 86400)
    with RedisServer() as primary, RedisServer(extra_args=_replica_args(primary)):
        with primary.client() as client:
            wait_for(lambda: online_replicas(client) == 1, "the replica in sync")
        acked = open_store(primary.url, defaults=defaults, options={"redis_min_replicas_ack": 1})
        plain = open_store(primary.url, defaults=defaults, options={"redis_min_replicas_ack": 0})
        try:
            a, b, r = interleaved(
                lambda: acked.bump_epoch(actor="bench", reason="bench", now=now),
                lambda: plain.bump_epoch(actor="bench", reason="bench", now=now),
                n=300,
                reps=reps,
            )
            report("redis ha", "bump, REDIS_MIN_REPLICAS_ACK 1 vs 0", _us(a), _us(b), r, "-", None)
        finally:
            acked.close()
            plain.close()

    with RedisCluster(primaries=3) as cluster, RedisServer() as single:
        options = {"redis_min_replicas_ack": 0, "key_prefix": "bench-ha:"}
        on_cluster = open_store(cluster.url, defaults=defaults, options=options)
        on_one = open_store(single.url, defaults=defaults, options=options)
        try:
            a, b, r = interleaved(
                lambda: on_cluster.token_state("42"),
                lambda: on_one.token_state("42"),
                n=2000,
                reps=reps,
            )
            report("redis ha", "epoch read, Cluster vs one Redis", _us(a), _us(b), r, "-", None)
        finally:
            on_cluster.close()
            on_one.close()
