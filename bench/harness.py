"""Interleaved measurement (A B A B ..., medians of several repetitions) and the table."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from redis import Redis

from service.store import Settings, Store, open_store
from service.tokens import KeyRing

#: The benchmark's signing key (HS256), the same in every section.
KEY = b"bench-signing-key-0123456789abcdefghijklmnopqrstuvwxyz"


@dataclass
class Row:
    section: str
    what: str
    ours: str
    baseline: str
    ratio: float
    target: str
    met: bool | None

    def line(self) -> str:
        met = {True: "yes", False: "NO", None: "-"}[self.met]
        return (
            f"| {self.section} | {self.what} | {self.ours} | {self.baseline} "
            f"| {self.ratio:.2f}x | {self.target} | {met} |"
        )


#: Every figure of the run, in the order printed.
ROWS: list[Row] = []


def report(section, what, ours, baseline, ratio, target, met) -> None:
    """Print one row of the table (and keep it for the summary)."""
    row = Row(section, what, ours, baseline, ratio, target, met)
    ROWS.append(row)
    print(row.line(), flush=True)


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs"


def ring() -> KeyRing:
    """The key ring every section signs and verifies with."""
    return KeyRing(
        keys={"k1": KEY},
        active_key_id="k1",
        algorithm="HS256",
        issuer="autologin-links",
        audience="helpdesk-portal",
        max_ttl_seconds=604800,
        leeway_seconds=30,
    )


def per_call(fn: Callable[[], object], n: int) -> float:
    """Return the mean seconds per call of ``fn`` over ``n`` calls."""
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def interleaved(
    candidate: Callable[[], object],
    baseline: Callable[[], object],
    *,
    n: int = 2000,
    reps: int = 9,
) -> tuple[float, float, float]:
    """Time both alternately; return (candidate s/op, baseline s/op, throughput ratio).

    The ratio is candidate throughput over baseline throughput, the median
    of the per-repetition ratios, so a noisy neighbour that slows one
    repetition slows both sides of it. The order alternates (A B, B A, ...)
    so that neither side always runs first, after the other has filled the
    caches with its own data.
    """
    for _ in range(max(1, n // 10)):  # warm caches, prepared statements, allocators
        candidate()
        baseline()
    ours, theirs, ratios = [], [], []
    for rep in range(reps):
        if rep % 2:
            b = per_call(baseline, n)
            a = per_call(candidate, n)
        else:
            a = per_call(candidate, n)
            b = per_call(baseline, n)
        ours.append(a)
        theirs.append(b)
        ratios.append(b / a)
    return statistics.median(ours), statistics.median(theirs), statistics.median(ratios)


class Stores:
    """Opens fresh stores of one kind for a bench section: SQLite files, or Redis key prefixes.

    :param section: names the files (``<section>-<name>.db``) and key prefixes
        (``bench-<section>-<name>:``), so sections never share a store.
    :param defaults: the settings a new store starts with.
    """

    def __init__(
        self, kind: str, tmp: Path, redis_url: str, *, section: str, defaults: Settings
    ) -> None:
        self.kind, self.tmp, self.redis_url = kind, tmp, redis_url
        self.section, self.defaults = section, defaults
        self.opened: list[Store] = []

    def open(self, name: str, *, redis_db: int = 0) -> Store:
        """Open store ``name``; on Redis in database ``redis_db`` (each has its own keyspace)."""
        store = self.opener(name, redis_db=redis_db)()
        self.opened.append(store)
        return store

    def opener(self, name: str, *, redis_db: int = 0) -> Callable[[], Store]:
        """Return what opens store ``name`` anew (picklable: a reaper's process calls it)."""
        if self.kind == "SQLite":
            url = f"sqlite:///{self.path(name)}"
            options: dict[str, Any] = {"instance_path": str(self.tmp)}
        else:
            url = self._redis_url(redis_db)
            options = {"key_prefix": f"bench-{self.section}-{name}:"}
        return partial(open_store, url, defaults=self.defaults, options=options)

    def path(self, name: str) -> Path:
        return self.tmp / f"{self.section}-{name}.db"

    def client(self, *, redis_db: int = 0) -> Redis:
        """A plain client of database ``redis_db``, without the store's short timeouts."""
        return Redis.from_url(self._redis_url(redis_db), decode_responses=True)

    def _redis_url(self, redis_db: int) -> str:
        return urlsplit(self.redis_url)._replace(path=f"/{redis_db}").geturl()

    def close(self) -> None:
        for store in self.opened:
            store.close()
