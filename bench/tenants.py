"""The tenants' rows of ``make bench``, on SQLite and on a redis-server of their own.

1. **Creating tenants.** ``count`` tenants (100,000 in a full run), every one
   through ``store.create_tenant``, the path ``POST /v1/admin/tenants`` takes:
   the time per tenant of the last 1,000 against the first 1,000, and, timed
   interleaved, creating one more tenant in that store against creating one
   in a store that holds one.
2. **Verifying with many tenants.** The store read and the checks of one
   click (the tenant's view, ``verify_token`` with the tenant,
   ``check_epochs`` on ``token_state``), as the in-process and growth rows
   measure it, of a tenant in the store of step 1 against the same tenant in
   a store holding it alone. The store of step 1 is the fill: its tenants
   were made by the service's own create path.
3. **Deleting a big tenant.** A tenant with ``users`` revoked users is
   deleted (``store.delete_tenant``, then the service's
   :class:`~service.tenants.Reaper` removes its data in the background,
   ``store.reap(budget=...)`` step by step, as after ``DELETE
   /v1/admin/tenants/{id}``) while another tenant's token is verified in a
   loop, many times over (30 deletes per place on Redis, 3 on SQLite). The
   figure is that tenant's p99 over every verification made while a delete
   call or its reap ran (pooled over the deletes), against the p99 of as many
   verifications made with no delete running, in windows interleaved with
   the deletes. Twice: with the delete and its reaper in threads of the
   verifying process (the worker that answered the delete: they share its
   GIL), and in another process (the other workers and hosts: only the store
   and the cores are shared). Interleaved with those deletes, as many of a
   tenant of 100 revoked users (the control, for information: what the
   delete's few calls cost those windows whatever the tenant's size), and
   the p99 during the big deletes against the p99 during the tiny ones.

The revoked users are written in bulk, each as ``store.revoke_user`` writes
one (SQLite: its own statements, in one transaction; Redis: the store's own
revoke script, pipelined, into a template tenant whose keys each deleted
tenant then gets a copy of); one real ``revoke_user`` afterwards checks that
the bulk rows read back alike.
"""

from __future__ import annotations

import gc
import itertools
import json
import multiprocessing
import sqlite3
import statistics
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path

from bench.harness import Stores, interleaved, report, ring, us
from service.store import EPOCH_VALUES, Settings, Store, fresh_epoch_value
from service.tenants import Reaper
from service.tokens import KeyRing, check_epochs, issue_token, verify_token

#: Tenants created one by one are timed in blocks of this many.
BLOCK = 1000
#: The actor and reason of everything the benchmark writes.
ACTOR = "bench"
#: Revoked users of the control tenant: a delete whose reaping has next to nothing to do.
CONTROL_USERS = 100
#: Verifications before each measured window, not counted.
WARM_UP_SECONDS = 0.05


def _now() -> datetime:
    return datetime.now(UTC)


def tenant_id(i: int) -> str:
    return f"t{i:06d}"


def create(store: Store, tid: str) -> None:
    """Create one tenant the way ``POST /v1/admin/tenants`` does."""
    store.create_tenant(
        tid, f"https://{tid}.portal.example.com", actor=ACTOR, reason="bench", now=_now()
    )


def verifier(store: Store, tid: str, keys: KeyRing) -> Callable[[], None]:
    """Return one click's store read and checks of a fresh token of ``tid``."""
    view = store.tenant(tid)
    token, _ = issue_token(
        "42",
        view.token_state("42"),
        target="/tickets/1234",
        ring=keys,
        ttl=86400,
        now=_now(),
        tenant_id=tid,
    )

    def verify() -> None:
        # What the verify call does for a named tenant (service/fastpath.py).
        view = store.tenant(tid)
        claims = verify_token(token, keys, tenant_id=tid, legacy_before=view.legacy_before)
        check_epochs(claims, view.token_state(claims.user_id))

    verify()  # a token that does not verify would measure an error path
    return verify


# -- 1 and 2: many tenants ----------------------------------------------------


def bench_many(stores: Stores, count: int, reps: int) -> None:
    kind = stores.kind
    keys = ring()
    big = stores.open("big")
    per_tenant = []
    start = time.perf_counter()
    for first in range(0, count, BLOCK):
        last = min(count, first + BLOCK)
        t0 = time.perf_counter()
        for i in range(first, last):
            create(big, tenant_id(i))
        per_tenant.append((time.perf_counter() - t0) / (last - first))
    total = time.perf_counter() - start
    print(
        f"# {kind}: {count:,} tenants created one by one in {total:.1f} s, "
        f"{us(total / count)} per tenant on average",
        flush=True,
    )
    report(
        "tenants",
        f"create {count:,} tenants one by one ({kind}): the last 1,000 vs the first 1,000",
        us(per_tenant[-1]),
        us(per_tenant[0]),
        per_tenant[-1] / per_tenant[0],
        "information",
        None,
    )

    # 2. The same tenant's click in the store of ``count`` tenants and in one of its own.
    middle = tenant_id(count // 2)
    # On Redis in a database of its own: a keyspace without the big store's keys.
    small = stores.open("small", redis_db=1)
    create(small, middle)
    n = 3000 if kind == "SQLite" else 2000
    a, b, r = interleaved(
        verifier(big, middle, keys), verifier(small, middle, keys), n=n, reps=reps
    )
    report(
        "tenants",
        f"verify, {count:,} tenants vs 1 ({kind})",
        us(a),
        us(b),
        1 / r,
        "<= 1.1x cost",
        1 / r <= 1.1,
    )

    # 1 again, interleaved: one more tenant in the big store against one in the small.
    more_big, more_small = itertools.count(count), itertools.count(count)
    a, b, r = interleaved(
        lambda: create(big, tenant_id(next(more_big))),
        lambda: create(small, tenant_id(next(more_small))),
        n=100 if kind == "SQLite" else 50,
        reps=reps,
    )
    report(
        "tenants",
        f"create a tenant, store of {count:,} tenants vs of 1 ({kind})",
        us(a),
        us(b),
        1 / r,
        "<= 1.1x cost",
        1 / r <= 1.1,
    )


# -- 3. deleting a tenant with many revoked users -------------------------------


def revoke_in_bulk(stores: Stores, store: Store, name: str, tid: str, users: int) -> None:
    """Revoke ``users`` users of ``tid`` at once, each written as ``revoke_user`` writes it."""
    view = store.tenant(tid)
    now = time.time()
    user = [f"user-{i}" for i in range(users)]
    # revoke_user gives each user a fresh random epoch value (never reused).
    epoch = {u: fresh_epoch_value() for u in user}
    if stores.kind == "SQLite":
        incarnation = view.token_state("nobody").incarnation
        conn = sqlite3.connect(stores.path(name), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        # The statements of SqliteStore.revoke_user, a row per user.
        conn.executemany(
            "INSERT INTO user_epochs (tenant, user_id, epoch, revoked_at) VALUES (?, ?, ?, ?)",
            ((incarnation, u, epoch[u], now) for u in user),
        )
        conn.executemany(
            "INSERT INTO audit (tenant, at, actor, action, detail) VALUES (?, ?, ?, ?, ?)",
            (
                (
                    incarnation,
                    now,
                    ACTOR,
                    "user.revoke",
                    json.dumps(
                        {"reason": "bench", "user_epoch": epoch[u], "user_id": u}, sort_keys=True
                    ),
                )
                for u in user
            ),
        )
        conn.execute("COMMIT")
        conn.close()
    else:
        # The store's own revoke script (RedisStore.revoke_user), a thousand per round trip.
        script = view._revoke_script  # type: ignore[attr-defined]
        pipe = view.redis.pipeline(transaction=False)  # type: ignore[attr-defined]
        for first in range(0, users, 1000):
            for u in user[first : first + 1000]:
                script(
                    keys=view._meta_keys,  # type: ignore[attr-defined]
                    args=[
                        view._base,
                        u,
                        now,
                        ACTOR,
                        "bench",
                        epoch[u],
                        fresh_epoch_value(epoch[u]),
                    ],  # type: ignore[attr-defined]
                    client=pipe,
                )
            pipe.execute()
    # One more through the real path: the bulk rows must read back as its row does.
    view.revoke_user("user-real", actor=ACTOR, reason="bench", now=_now())
    real, bulk = view.audit_events(limit=2)
    if (
        view.token_state(user[-1]).user_epoch != epoch[user[-1]]
        or bulk.action != real.action
        or set(bulk.detail) != set(real.detail)
    ):
        raise RuntimeError(f"{stores.kind}: the bulk revocations do not read back as real ones")


def copy_revocations(stores: Stores, store: Store, template: str, tid: str) -> None:
    """Give ``tid`` (Redis) the revoked users of ``template``, a copy of its keys.

    ``COPY`` of the hash and sorted sets that ``revoke_in_bulk`` filled with
    the store's own revoke script (user epochs, audit log), so each tenant
    holds what as many ``revoke_user`` calls write, in tens of milliseconds
    instead of seconds; the user epochs' incarnation mark is the tenant's own.
    """
    source = store.tenant(template)._data()  # type: ignore[attr-defined]
    view = store.tenant(tid)
    incarnation = view.token_state("nobody").incarnation
    target = view._data()  # type: ignore[attr-defined]
    # Copying 100,000 entries takes longer than the store's socket timeout allows.
    client = stores.client()
    try:
        pipe = client.pipeline(transaction=False)
        for name in ("user_epochs", "seq", "audit", "audit_at"):
            pipe.copy(f"{source}{name}", f"{target}{name}", replace=True)
        pipe.hset(f"{target}user_epochs", "\n", incarnation)
        pipe.execute()
    finally:
        client.close()
    state = view.token_state("user-0")
    if state.incarnation != incarnation or not EPOCH_VALUES[0] <= state.user_epoch:
        raise RuntimeError(f"{tid}: the copied revocations do not read back")


class Filler:
    """Gives each doomed tenant ``users`` revoked users, each as ``revoke_user`` writes it.

    On SQLite in bulk (:func:`revoke_in_bulk`) each time; on Redis, where the
    store's script takes seconds for 100,000 users, once into a template
    tenant that is never deleted, then copied (:func:`copy_revocations`).
    """

    def __init__(self, stores: Stores, store: Store, name: str, users: int) -> None:
        self.stores, self.store, self.name, self.users = stores, store, name, users
        self.template: str | None = None

    def fill(self, tid: str) -> None:
        if self.stores.kind == "SQLite" or self.users <= CONTROL_USERS:
            revoke_in_bulk(self.stores, self.store, self.name, tid, self.users)
            return
        if self.template is None:
            self.template = "template"
            create(self.store, self.template)
            revoke_in_bulk(self.stores, self.store, self.name, self.template, self.users)
        copy_revocations(self.stores, self.store, self.template, tid)


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


def verify_for(verify: Callable[[], None], seconds: float) -> list[float]:
    """Verify in a loop for ``seconds``; return each call's time."""
    samples = []
    clock = time.perf_counter
    end = clock() + seconds
    while (t := clock()) < end:
        verify()
        samples.append(clock() - t)
    return samples


def verify_times(verify: Callable[[], None], count: int) -> list[float]:
    """Verify ``count`` times; return each call's time."""
    samples = []
    clock = time.perf_counter
    for _ in range(count):
        t = clock()
        verify()
        samples.append(clock() - t)
    return samples


#: When a delete ran, on ``time.perf_counter``'s clock: (start, the call's end, the reap's end).
#: On Linux that clock is CLOCK_MONOTONIC, one clock for every process of the machine,
#: so the times of a delete in another process compare with this process's samples.
Span = tuple[float, float, float]


def _delete(store: Store, reaper: Reaper, tid: str) -> Span:
    """Delete ``tid`` as ``DELETE /v1/admin/tenants/{id}`` does; return when it ran."""
    t0 = time.perf_counter()
    # service/api/tenants.py delete_tenant: the store's delete, then the reaper.
    store.delete_tenant(tid, actor=ACTOR, reason="bench", now=_now())
    call = time.perf_counter()
    reaper.kick()
    reaper.wait()  # until the data is gone
    return t0, call, time.perf_counter()


#: A verification's (start, end) on ``time.perf_counter``'s clock.
Sample = tuple[float, float]


def _verify_until(verify: Callable[[], None], done: Callable[[], bool]) -> list[Sample]:
    """Verify until ``done()``; return each call's (start, end)."""
    samples = []
    clock = time.perf_counter
    while not done():
        t = clock()
        verify()
        samples.append((t, clock()))
    return samples


def delete_in_this_process(
    stores: Stores, name: str, store: Store, reaper: Reaper, tid: str, verify: Callable[[], None]
) -> tuple[list[Sample], Span]:
    """Delete ``tid`` in a thread of this process while verifying here.

    The process is then the worker that answered the delete: its reaper
    thread, and the call itself, share the GIL with the verifications.
    Returns the verifications' (start, end) and when the delete ran.
    """
    spans: list[Span] = []
    done = threading.Event()

    def delete() -> None:
        try:
            spans.append(_delete(store, reaper, tid))
        finally:
            done.set()

    admin = threading.Thread(target=delete, name="bench-delete")
    admin.start()
    samples = _verify_until(verify, done.is_set)
    admin.join()
    if not spans:
        raise RuntimeError(f"deleting {tid} failed")
    return samples, spans[0]


def _delete_there(stores: Stores, name: str, tid: str, conn: Connection) -> None:
    """The other process: its own store and reaper; delete on the word, report when."""
    store = stores.open(name)
    reaper = Reaper(store, stores.opener(name))
    conn.send("ready")
    conn.recv()
    conn.send(_delete(store, reaper, tid))
    reaper.close()
    store.close()


def delete_in_another_process(
    stores: Stores, name: str, store: Store, reaper: Reaper, tid: str, verify: Callable[[], None]
) -> tuple[list[Sample], Span]:
    """Delete ``tid`` in another process (another worker, another host) while verifying here.

    Only the store and the two cores are shared. Returns the verifications'
    (start, end) and when the delete ran.
    """
    ours, theirs = multiprocessing.get_context("fork").Pipe()
    child = multiprocessing.get_context("fork").Process(
        target=_delete_there, args=(stores, name, tid, theirs)
    )
    child.start()
    if ours.recv() != "ready":
        raise RuntimeError("the deleting process did not start")
    ours.send("go")
    samples = _verify_until(verify, ours.poll)
    span = ours.recv()
    child.join()
    return samples, span


#: Where the delete runs: (row label, function).
PLACES = (
    ("in the verifying process", delete_in_this_process),
    ("in another process", delete_in_another_process),
)


class Pool:
    """The samples of one place and tenant size, pooled over its deletes."""

    def __init__(self) -> None:
        self.during: list[float] = []
        self.without: list[float] = []
        #: Verifications during each delete, and how long its call and call+reap took.
        self.counts: list[int] = []
        self.calls: list[float] = []
        self.wholes: list[float] = []


def bench_delete(stores: Stores, users: int, deletes: int) -> None:
    """``deletes`` deletes per place and size, alternating, each with a window without one.

    The tenants deleted alternate between ``users`` revoked users and
    :data:`CONTROL_USERS` (the control: a delete whose reap has next to
    nothing to do), and between the two places. Each figure pools the
    verifications of every delete of one place and size: those made while a
    delete call or its reap ran (each one that overlaps the span from the
    call to the reaper's end, and no other), against as many made with no
    delete running, in windows interleaved with the deletes (after the
    delete, or before it every other time), each after the same warm-up. A
    Redis delete lasts milliseconds, so one window holds a few dozen
    verifications: only many deletes pooled give a p99 that is not the
    worst one or two of a window.
    """
    kind = stores.kind
    name = "delete"
    store = stores.open(name)
    create(store, "busy")
    verify = verifier(store, "busy", ring())
    reaper = Reaper(store, stores.opener(name))
    sizes = (users, CONTROL_USERS)
    fillers = {size: Filler(stores, store, name, size) for size in sizes}
    pools = {(label, size): Pool() for label, _ in PLACES for size in sizes}
    cases = [(place, size) for size in sizes for place in PLACES]
    for rep in range(deletes * len(cases)):
        (label, delete), size = cases[rep % len(cases)]
        pool = pools[label, size]
        doomed = f"doomed-{rep}"
        create(store, doomed)
        fillers[size].fill(doomed)
        gc.collect()  # the fill's garbage, not the service's, collected before the windows
        # The window without first every other time (the fill left the caches
        # cold), as many verifications as this case's deletes had so far (median).
        first = (rep // len(cases)) % 2 and pool.counts
        if first:
            verify_for(verify, WARM_UP_SECONDS)
            pool.without += verify_times(verify, round(statistics.median(pool.counts)))
        verify_for(verify, WARM_UP_SECONDS)
        samples, (start, call, end) = delete(stores, name, store, reaper, doomed, verify)
        mine = [e - s for s, e in samples if e > start and s < end]
        pool.during += mine
        pool.counts.append(len(mine))
        pool.calls.append(call - start)
        pool.wholes.append(end - start)
        if not first:
            verify_for(verify, WARM_UP_SECONDS)
            pool.without += verify_times(verify, len(mine))
    reaper.close()
    for label, _ in PLACES:
        for size in sizes:
            pool = pools[label, size]
            ms = lambda seconds: f"{seconds * 1e3:.1f} ms"  # noqa: E731
            print(
                f"# {kind}: deleting a tenant with {size:,} revoked users {label}, {deletes} "
                f"times: the call {ms(statistics.median(pool.calls))}, call and background "
                f"reap {ms(statistics.median(pool.wholes))} (medians; {ms(min(pool.wholes))} "
                f"to {ms(max(pool.wholes))}); {len(pool.during):,} verifications during "
                f"({min(pool.counts)} to {max(pool.counts)} a delete), {len(pool.without):,} "
                f"without; p50 {us(statistics.median(pool.during))} vs "
                f"{us(statistics.median(pool.without))}, max {ms(max(pool.during))} vs "
                f"{ms(max(pool.without))}",
                flush=True,
            )
            a, b = p99(pool.during), p99(pool.without)
            control = size != users
            report(
                "tenants",
                f"verify p99 of a tenant while another with {size:,} revoked users "
                f"is deleted and reaped {label} ({kind}), {deletes} deletes pooled",
                us(a),
                us(b),
                a / b,
                "information" if control else "<= 1.5x",
                None if control else a / b <= 1.5,
            )
        # What the tenant's size adds: the same windows, big tenant against tiny.
        a, b = p99(pools[label, users].during), p99(pools[label, CONTROL_USERS].during)
        report(
            "tenants",
            f"verify p99 during those deletes {label} ({kind}): {users:,} revoked users "
            f"vs {CONTROL_USERS}",
            us(a),
            us(b),
            a / b,
            "information",
            None,
        )


def bench_tenants(tmp: Path, reps: int, *, count: int, users: int, quick: bool) -> None:
    """The three tenants' rows on each store; Redis in a redis-server of this section's own."""
    from tests.support.redis_server import RedisServer

    with RedisServer() as server:
        for kind in ("SQLite", "Redis"):
            stores = Stores(
                kind, tmp, server.url, section="tenants", defaults=Settings(False, 86400)
            )
            # Deletes per place and size (this process, another; big, tiny): a
            # SQLite delete and reap of the big tenant lasts seconds, thousands
            # of verifications each; a Redis one milliseconds, a few dozen, so
            # many more of them are pooled.
            deletes = (2 if quick else 3) if kind == "SQLite" else (8 if quick else 30)
            try:
                bench_many(stores, count, reps)
                bench_delete(stores, users, deletes)
            finally:
                stores.close()
