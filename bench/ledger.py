"""The ledger's rows of ``make bench`` (issue 12), on SQLite and on a redis-server.

1. **Issuing a batch of 1000 with the ledger on.** What ``POST
   /v1/links/batch`` does besides HTTP: ``store.issue_state`` (one read for
   the batch), then ``issue_links``: ``build_links`` (the tokens and their
   ledger entries) 200 at a time, each chunk handed to
   ``store.record_link_chunks`` (the ledger write, with its bounded cleanup;
   Redis sends each chunk's write at once, while the next is signed), into
   a ledger that already holds 100,000 links (10,000 with ``--quick``: the
   write's cost grows with the ledger on SQLite) issued over the last two
   days (a day's lifetime plus the day the ledger keeps a link after it),
   the measured batches coming at the same rate (a simulated clock), against
   1000 plain ``jwt.encode`` calls of an equivalent payload. This is the
   contract's figure (<= 1.5x); the HTTP section's batch row is the same
   call end to end, ledger on (the default). For information: the same batch
   with the ledger on against the ledger off (the ledger's own share), and
   the batches back to back on the wall clock (a burst of ~100,000 links in
   a minute, all in one hour of SQLite's user index).
2. **Verifying with 100,000 voided links.** One click's store read and
   checks (``verify_token``, ``token_state`` with a ``LinkCheck``,
   ``check_epochs``, ``check_device``), as ``service/fastpath.py`` does them,
   of a live link in a tenant holding 100,000 voided links against the same
   in a tenant with none. Both ledgers hold 100,000 links (written by
   ``record_links``), so the revocations are the only difference. The links
   are voided in bulk, each as ``revoke_link`` writes it (SQLite: its own
   statements in one transaction; Redis: the store's own script, pipelined);
   one real ``revoke_link`` afterwards checks that they read back alike.
3. **The ledger's size after a simulated week.** Batches of links issued
   every two hours for seven days through the real path
   (``issue_state``, ``build_links``, ``record_links``, each given the
   simulated ``now``), a few voided on the way (``revoke_link``), lifetime
   one day: the entries kept at the end against the links issued in the
   last lifetime plus a day (the contract's bound), and against all issued.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt

from bench.harness import KEY, Stores, interleaved, report, ring, us
from service.errors import RevokedTokenError
from service.links import LinkRequest, issue_links
from service.store import LinkCheck, LinkRecord, Settings, Store
from service.tokens import (
    KeyRing,
    check_device,
    check_epochs,
    link_check,
    new_link_id,
    verify_token,
)

#: The actor and reason of everything the benchmark writes.
ACTOR = "bench"
#: The lifetime of the simulated week's links, and the ledger's grace after expiry.
LIFETIME = 86400
GRACE = 86400
#: As the service passes them to revoke_link (MAX_TOKEN_TTL_SECONDS, LEEWAY_SECONDS).
MAX_TTL = 604800
LEEWAY = 30


def _now() -> datetime:
    return datetime.now(UTC)


def requests_for(users: list[str]) -> list[LinkRequest]:
    return [
        LinkRequest(u, f"{u}@example.com", (f"{u}@example.com",), "/tickets/1234", None, None)
        for u in users
    ]


def issue(
    store: Store, keys: KeyRing, batch: list[LinkRequest], now: datetime, *, ledger: bool = True
) -> list[tuple[str, str]]:
    """Issue ``batch`` as ``POST /v1/links/batch`` does besides HTTP; return (token, link id)s."""
    state = store.issue_state([r.user_id for r in batch])

    def write(chunks: Iterable[list[LinkRecord]]) -> None:
        store.record_link_chunks(chunks, state.incarnation, now)

    answers = issue_links(
        batch,
        state,
        write=write if ledger else None,
        ring=keys,
        base_url="https://portal.example.com",
        token_param="auto_login",
        now=now,
        tenant_id=store.tenant_id,
        issued_by=ACTOR,
    )
    return [(a.url.split("auto_login=", 1)[1], a.link_id) for a in answers if a.auto_login]


def void(store: Store, link_id: str, now: datetime) -> None:
    """Void one link as ``POST /v1/admin/links/{id}/revoke`` does (ledger on)."""
    store.revoke_link(
        link_id, ledger=True, max_ttl=MAX_TTL, leeway=LEEWAY, actor=ACTOR, reason="bench", now=now
    )


# -- 1. a batch of 1000 --------------------------------------------------------


def bench_batch(stores: Stores, reps: int, prefill: int) -> None:
    kind = stores.kind
    keys = ring()
    store = stores.open("batch")
    # A ledger of a working deployment, not an empty one: the cost of adding
    # 1000 entries grows with the tables and indexes they go into. Issued over
    # the last lifetime plus a day, as the ledger keeps them.
    kept = timedelta(seconds=LIFETIME + GRACE)
    fill_ledger(store, prefill, _now(), spread=kept)
    thousand = requests_for([f"user-{i}" for i in range(1000)])
    token = issue(store, keys, thousand[:1], _now())[0][0]
    # The measured batches come at the rate that filled the ledger (1000
    # every two days / prefill thousands): a simulated clock, as the week's
    # row keeps. Back to back on the wall clock they would be a burst of
    # some 100,000 links in a minute, measured for information below.
    clock = [_now()]
    arrival = kept * 1000 / prefill
    # The equivalent payload: the claims of one of these tokens, as the HTTP batch row.
    payload = jwt.decode(token, options={"verify_signature": False})

    def encodes() -> None:
        for _ in range(1000):
            jwt.encode(payload, KEY, algorithm="HS256", headers={"kid": "k1"})

    def ledger_on() -> None:
        clock[0] += arrival
        issue(store, keys, thousand, clock[0])

    def ledger_off() -> None:
        clock[0] += arrival
        issue(store, keys, thousand, clock[0], ledger=False)

    def burst() -> None:
        issue(store, keys, thousand, _now())

    # Each side is 1000 links a call: twice the repetitions, as the HTTP batch row.
    a, b, r = interleaved(ledger_on, encodes, n=3, reps=reps * 2)
    report(
        "ledger",
        f"issue a batch of 1000, ledger on, {prefill:,} links in it ({kind}):"
        " issue_state + issue_links (build_links, record_link_chunks) vs 1000 jwt.encode",
        f"{a * 1e3:.1f} ms",
        f"{b * 1e3:.1f} ms",
        1 / r,
        "<= 1.5x time",
        1 / r <= 1.5,
    )
    a, b, r = interleaved(ledger_on, ledger_off, n=3, reps=reps * 2)
    report(
        "ledger",
        f"issue a batch of 1000 ({kind}): ledger on vs off",
        f"{a * 1e3:.1f} ms",
        f"{b * 1e3:.1f} ms",
        1 / r,
        "information",
        None,
    )
    a, b, r = interleaved(burst, encodes, n=3, reps=reps * 2)
    report(
        "ledger",
        f"issue a batch of 1000, ledger on, batches back to back ({kind}):"
        " a burst, every link in the same hour, vs 1000 jwt.encode",
        f"{a * 1e3:.1f} ms",
        f"{b * 1e3:.1f} ms",
        1 / r,
        "information",
        None,
    )


# -- 2. verifying with many voided links ---------------------------------------


def fill_ledger(
    store: Store, count: int, now: datetime, *, spread: timedelta = timedelta(0)
) -> list[str]:
    """Put ``count`` live links into ``store``'s ledger with ``record_links``; return their ids.

    :param spread: the links are issued evenly over this time before ``now``
        (in batches of 1000, ids as the service makes them), each for
        ``LIFETIME``: a working deployment's ledger holds the links of its
        longest lifetime plus a day, not one instant's.
    """
    incarnation = store.token_state("nobody").incarnation
    ids = []
    batches = max(1, -(-count // 1000))
    for n, first in enumerate(range(0, count, 1000)):
        issued = now - spread + spread * n / batches
        batch = [
            LinkRecord(
                new_link_id(int(issued.timestamp())),
                f"user-{i}",
                "/tickets/1234",
                None,
                ACTOR,
                issued,
                issued + timedelta(seconds=LIFETIME),
            )
            for i in range(first, min(count, first + 1000))
        ]
        store.record_links(batch, incarnation, issued)
        ids += [link.link_id for link in batch]
    return ids


def void_in_bulk(stores: Stores, store: Store, name: str, link_ids: list[str]) -> None:
    """Void every link of ``link_ids`` at once, each written as ``revoke_link`` writes it."""
    now = _now()
    at = now.timestamp()
    if stores.kind == "SQLite":
        incarnation = store.token_state("nobody").incarnation
        conn = sqlite3.connect(stores.path(name), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        rows = conn.execute(
            "SELECT link_id, expires_at, user_id FROM links WHERE tenant = ?", (incarnation,)
        ).fetchall()
        wanted = set(link_ids)
        rows = [row for row in rows if row[0] in wanted]
        # The statements of SqliteStore.revoke_link with the ledger on, a link each.
        conn.executemany(
            "INSERT INTO voided_links (tenant, link_id, revoked_at, keep_until)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (tenant, link_id) DO UPDATE"
            " SET revoked_at = excluded.revoked_at,"
            " keep_until = MAX(keep_until, excluded.keep_until)",
            ((incarnation, link_id, at, expires + LEEWAY) for link_id, expires, _ in rows),
        )
        conn.executemany(
            "INSERT INTO audit (tenant, at, actor, action, detail) VALUES (?, ?, ?, ?, ?)",
            (
                (
                    incarnation,
                    at,
                    ACTOR,
                    "link.revoke",
                    json.dumps(
                        {"link_id": link_id, "reason": "bench", "user_id": user}, sort_keys=True
                    ),
                )
                for link_id, _, user in rows
            ),
        )
        conn.execute("COMMIT")
        conn.close()
    else:
        # The store's own script (RedisStore.revoke_link), a thousand per round trip.
        script = store._revoke_link_script  # type: ignore[attr-defined]
        pipe = store.redis.pipeline(transaction=False)  # type: ignore[attr-defined]
        base = store._base  # type: ignore[attr-defined]
        for first in range(0, len(link_ids), 1000):
            for link_id in link_ids[first : first + 1000]:
                args = [base, link_id, "1", repr(at), repr(at + MAX_TTL + LEEWAY)]
                script(
                    keys=store._meta_keys,  # type: ignore[attr-defined]
                    args=[*args, LEEWAY, ACTOR, "bench"],
                    client=pipe,
                )
            pipe.execute()


def clicker(store: Store, keys: KeyRing, token: str):
    """Return one click's store read and checks of ``token`` (as service/fastpath.py)."""

    def verify() -> None:
        claims = verify_token(
            token, keys, tenant_id=store.tenant_id, legacy_before=store.legacy_before
        )
        state = store.token_state(claims.user_id, None, link_check(claims, None))
        check_epochs(claims, state)
        check_device(claims, state, None)

    return verify


def bench_voided(stores: Stores, voided: int, reps: int) -> None:
    kind = stores.kind
    keys = ring()
    now = _now()
    verifiers, opened = [], {}
    for name, redis_db in (("voided", 2), ("none", 3)):
        # On Redis each in a database of its own, so neither keyspace holds the other's keys.
        store = opened[name] = stores.open(name, redis_db=redis_db)
        ids = fill_ledger(store, voided, now)
        if name == "voided":
            void_in_bulk(stores, store, name, ids)
            # One more through the real path: it must read back as the bulk ones.
            real = fill_ledger(store, 1, now)[0]
            void(store, real, _now())
            real_event, bulk_event = store.audit_events(limit=2)
            incarnation = store.token_state("nobody").incarnation
            states = [
                store.token_state(user, None, link_check_of(link_id, incarnation, now))
                for user, link_id in (("user-0", real), (f"user-{voided - 1}", ids[-1]))
            ]
            if (
                bulk_event.action != real_event.action
                or set(bulk_event.detail) != set(real_event.detail)
                or not all(state.link_revoked for state in states)
            ):
                raise RuntimeError(f"{kind}: the bulk revocations do not read back as real ones")
        token = issue(store, keys, requests_for(["42"]), _now())[0][0]
        verify = clicker(store, keys, token)
        verify()  # a live link: it must verify, or this would time an error path
        verifiers.append(verify)
    # And a voided link of the big one is refused (the read finds the revocation).
    big = opened["voided"]
    token, link_id = issue(big, keys, requests_for(["43"]), _now())[0]
    void(big, link_id, _now())
    try:
        clicker(big, keys, token)()
    except RevokedTokenError:
        pass
    else:
        raise RuntimeError(f"{kind}: a voided link still verifies")
    n = 3000 if kind == "SQLite" else 2000
    a, b, r = interleaved(verifiers[0], verifiers[1], n=n, reps=reps)
    report(
        "ledger",
        f"verify a live link, {voided:,} voided links vs none ({kind})",
        us(a),
        us(b),
        1 / r,
        "<= 1.1x cost",
        1 / r <= 1.1,
    )


def link_check_of(link_id: str, incarnation: str, now: datetime):
    """A LinkCheck of a link issued at ``now`` (no device): enough to read its revocation."""
    return LinkCheck(link_id, incarnation, 0, 0, None, int(now.timestamp()) + LIFETIME)


# -- 3. the ledger's size after a week -------------------------------------------


def count_kept(stores: Stores, store: Store, name: str) -> dict[str, int]:
    """Count what the tenant's ledger keeps: entries, their indexes, voided links."""
    incarnation = store.token_state("nobody").incarnation
    if stores.kind == "SQLite":
        conn = sqlite3.connect(stores.path(name))
        try:
            count = lambda table: conn.execute(  # noqa: E731
                f"SELECT COUNT(*) FROM {table} WHERE tenant = ?",  # noqa: S608 (fixed names)
                (incarnation,),
            ).fetchone()[0]
            return {"links": count("links"), "voided": count("voided_links")}
        finally:
            conn.close()
    redis = store.redis  # type: ignore[attr-defined]
    data = f"{store._base}{incarnation}:"  # type: ignore[attr-defined]
    return {
        "links": redis.hlen(f"{data}links"),
        "links_at": redis.zcard(f"{data}links_at"),
        "links_exp": redis.zcard(f"{data}links_exp"),
        "per_user": redis.zcard(f"{data}links_by_user"),
        "voided": redis.hlen(f"{data}voided"),
        "voided_exp": redis.zcard(f"{data}voided_exp"),
    }


def bench_week(stores: Stores, batch: int, voids: int) -> None:
    """Issue ``batch`` links every 2 simulated hours for a week; count what the ledger keeps."""
    kind = stores.kind
    keys = ring()
    store = stores.open("week", redis_db=4)
    step = timedelta(hours=2)
    end = _now().replace(microsecond=0)
    start = end - timedelta(days=7) + step
    pool = 5 * batch  # users rotate through a pool, so users' own indexes empty too
    issued: list[tuple[float, float]] = []  # (issued_at, expires_at) of every link
    voided: list[float] = []  # keep_until of every link voided
    t, n = start, 0
    while t <= end:
        users = [f"user-{(n + i) % pool}" for i in range(batch)]
        n += batch
        links = issue(store, keys, requests_for(users), t)
        issued += [(t.timestamp(), t.timestamp() + LIFETIME)] * len(links)
        for _, link_id in links[:voids]:  # a few leak and are voided at once
            void(store, link_id, t)
            voided.append(t.timestamp() + LIFETIME + LEEWAY)
        t += step
    last = t - step
    kept = count_kept(stores, store, "week")
    cut = last.timestamp() - LIFETIME - GRACE
    bound = sum(1 for at, _ in issued if at >= cut)
    voided_bound = sum(1 for keep in voided if keep >= last.timestamp())
    print(
        f"# {kind}: a week of issuance, {len(issued):,} links in batches of {batch:,} every 2 h, "
        f"lifetime {LIFETIME // 3600} h, {voids} voided per batch; kept at the end: {kept}; "
        f"issued in the last lifetime plus a day: {bound:,}",
        flush=True,
    )
    indexes = [v for k, v in kept.items() if k in ("links_at", "links_exp", "per_user")]
    if any(v != kept["links"] for v in indexes):
        raise RuntimeError(f"{kind}: the ledger's indexes disagree with its entries: {kept}")
    report(
        "ledger",
        f"ledger entries after a simulated week ({kind}): kept vs issued in the lifetime"
        " (1 day) plus a day",
        f"{kept['links']:,}",
        f"{bound:,}",
        kept["links"] / bound,
        "<= 1.00x",
        kept["links"] <= bound,
    )
    report(
        "ledger",
        f"ledger entries after a simulated week ({kind}): kept vs all issued in the week",
        f"{kept['links']:,}",
        f"{len(issued):,}",
        kept["links"] / len(issued),
        "information",
        None,
    )
    report(
        "ledger",
        f"voided links kept after a simulated week ({kind}) vs those of links not yet expired",
        f"{kept['voided']:,}",
        f"{voided_bound:,}",
        kept["voided"] / voided_bound,
        "<= 1.00x",
        kept["voided"] <= voided_bound,
    )


def bench_ledger(tmp: Path, redis_url: str, reps: int, *, quick: bool) -> None:
    """The ledger's rows on each store."""
    voided = 10_000 if quick else 100_000
    batch = 250 if quick else 1000
    for kind in ("SQLite", "Redis"):
        stores = Stores(kind, tmp, redis_url, section="ledger", defaults=Settings(True, LIFETIME))
        try:
            bench_batch(stores, reps, prefill=voided)
            bench_voided(stores, voided, reps)
            bench_week(stores, batch, voids=5)
        finally:
            stores.close()
