"""The ledger, link revocations, bindings and the sign-in log's order, in both stores."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from service.errors import LinkNotFoundError
from service.store import LinkCheck, LinkRecord, Settings, Signin, open_store

T0 = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
def store(store_url, tmp_path):
    options = {"instance_path": str(tmp_path), "key_prefix": f"test-{uuid.uuid4().hex[:12]}:"}
    store = open_store(store_url, defaults=Settings(True, 259200), options=options)
    yield store
    store.close()


def record(store, n: int, *, at: datetime, ttl: timedelta, user: str = "42") -> list[str]:
    """Put ``n`` links issued at ``at`` into the ledger; return their ids."""
    state = store.token_state(user)
    links = [
        LinkRecord(uuid.uuid4().hex[:22], user, "/", None, "k", at, at + ttl, state.epoch, 0)
        for _ in range(n)
    ]
    store.record_links(links, state.incarnation, at)
    return [link.link_id for link in links]


def count(store, *, at: datetime) -> int:
    """How many links the ledger holds (expired ones too, until they are dropped)."""
    total, after = 0, None
    while True:
        page, after = store.links(
            user_id=None, status=None, after=after, limit=500, expired_before=at.timestamp()
        )
        total += len(page)
        if after is None:
            return total


def test_the_ledger_stays_bounded_by_the_longest_lifetime_plus_a_day(store):
    """A simulated week of issuance, an hour at a time: old entries go as new ones come."""
    lifetime = timedelta(days=2)
    per_hour = 20
    for hour in range(7 * 24):
        record(store, per_hour, at=T0 + timedelta(hours=hour), ttl=lifetime)
    now = T0 + timedelta(hours=7 * 24 - 1)
    # Kept: the links whose expiry plus a day is not past (3 days of issuance).
    assert count(store, at=now) <= per_hour * (3 * 24 + 1)
    assert count(store, at=now) >= per_hour * (3 * 24 - 1)


def test_a_revocation_goes_with_its_link(store):
    (link_id,) = record(store, 1, at=T0, ttl=timedelta(hours=1))
    store.revoke_link(
        link_id, ledger=True, max_ttl=604800, leeway=30, actor="a", reason="r", now=T0
    )
    state = store.token_state("42")
    check = LinkCheck(link_id, state.incarnation, state.epoch, 0, None, int(T0.timestamp()) + 3600)
    assert store.token_state("42", link=check).link_revoked is True
    # Past its expiry (and the leeway), issuing elsewhere sweeps it away.
    record(store, 1, at=T0 + timedelta(hours=2), ttl=timedelta(hours=1))
    assert store.token_state("42", link=check).link_revoked is False


def test_without_the_ledger_a_revocation_lasts_the_longest_lifetime(store):
    link_id = "C" * 20
    store.revoke_link(link_id, ledger=False, max_ttl=3600, leeway=30, actor="a", reason="r", now=T0)
    state = store.token_state("42")
    check = LinkCheck(link_id, state.incarnation, state.epoch, 0, None, 0)
    assert store.token_state("42", link=check).link_revoked is True
    store.prune(before=T0 - 90 * DAY)  # pruning runs with the real clock: it is later
    assert store.token_state("42", link=check).link_revoked is False


def test_voiding_an_unknown_link_with_the_ledger_on_stores_nothing(store):
    with pytest.raises(LinkNotFoundError):
        store.revoke_link(
            "D" * 20, ledger=True, max_ttl=60, leeway=0, actor="a", reason="r", now=T0
        )
    assert [e.action for e in store.audit_events(limit=5)] == ["store.create"]


def test_of_two_devices_the_first_binding_stays(store):
    store.update_settings({"bind_to_first_device": True}, actor="a", now=T0)
    (link_id,) = record(store, 1, at=T0, ttl=timedelta(hours=1))
    state = store.token_state("42")

    def check(device):
        return LinkCheck(link_id, state.incarnation, state.epoch, 0, device, 2**31)

    assert store.token_state("42", link=check("hash-a")).bound_device == "hash-a"
    assert store.token_state("42", link=check("hash-b")).bound_device == "hash-a"
    # A token of another epoch (revoked) binds nothing.
    (other,) = record(store, 1, at=T0, ttl=timedelta(hours=1))
    stale = LinkCheck(other, state.incarnation, state.epoch + 1, 0, "hash-c", 2**31)
    assert store.token_state("42", link=stale).bound_device is None


def test_the_sign_in_log_is_ordered_by_the_click_not_by_the_write(store):
    """Two workers' buffers reach the store in either order: the log is by click time.

    Many rounds, each with clicks a random fraction of a second apart written
    in a random order: ``limit`` must always take the newest clicks.
    """
    rng = random.Random(12)  # noqa: S311 (the same rounds every run, not a secret)
    for round_ in range(40):
        base = T0 + timedelta(seconds=round_ * 10)
        clicks = [
            Signin(base + timedelta(microseconds=rng.randrange(1, 900_000)), f"u{i}", "ok")
            for i in range(4)
        ]
        batches = [clicks[:2], clicks[2:]]
        rng.shuffle(batches)
        for batch in batches:
            store.record_signins(list(reversed(batch)))
        newest = sorted(clicks, key=lambda s: s.at, reverse=True)
        assert store.signins(user_id=None, limit=3) == newest[:3]


def every_page(store, *, user_id, at, limit):
    """Every link the ledger lists for ``user_id`` (None: everyone's), ``limit`` a page."""
    found, after = [], None
    while True:
        page, after = store.links(
            user_id=user_id, status=None, after=after, limit=limit, expired_before=at.timestamp()
        )
        found += [(link.issued_at, link.link_id) for link in page]
        if after is None:
            return found


def test_one_users_links_are_found_by_the_hour_and_listed_newest_first(store):
    """Users' links spread over days and hours, some in the same instant, read a page at a time."""
    rng = random.Random(7)  # noqa: S311 (a repeatable spread, no secret)
    users = ["7", "42", "42a", "4", "a:b@c+d"]
    issued: dict[str, list[tuple[datetime, str]]] = {user: [] for user in users}
    for step in range(40):
        at = T0 + timedelta(minutes=rng.randrange(0, 3 * 24 * 60), microseconds=step)
        if step % 5 == 0:
            at = T0 + timedelta(hours=5)  # several batches in one instant
        batch = [rng.choice(users) for _ in range(rng.randrange(1, 6))]
        state = store.token_state("nobody")
        links = [
            LinkRecord(uuid.uuid4().hex[:22], user, "/", None, "k", at, at + 7 * DAY, state.epoch)
            for user in batch
        ]
        store.record_links(links, state.incarnation, at)
        for link in links:
            issued[link.user_id].append((at, link.link_id))
    now = T0 + timedelta(hours=1)
    for user in users:
        want = sorted(issued[user], reverse=True)
        for limit in (1, 3, 500):
            assert every_page(store, user_id=user, at=now, limit=limit) == want, (user, limit)
    everyone = sorted((pair for pairs in issued.values() for pair in pairs), reverse=True)
    assert every_page(store, user_id=None, at=now, limit=7) == everyone
    # Another user's link marks a place in the order too; an unknown one is refused.
    other = issued["7"][0]
    page, _ = store.links(
        user_id="42", status=None, after=other[1], limit=500, expired_before=now.timestamp()
    )
    assert [(link.issued_at, link.link_id) for link in page] == [
        pair for pair in sorted(issued["42"], reverse=True) if pair < other
    ]
    with pytest.raises(LinkNotFoundError):
        store.links(user_id="42", status=None, after="X" * 22, limit=5, expired_before=0)


def test_a_user_index_entry_goes_with_its_link(store):
    """Dropping a link past its expiry plus a day drops it from its user's listing too."""
    record(store, 3, at=T0, ttl=timedelta(hours=1), user="9")
    later = T0 + 2 * DAY
    (kept,) = record(store, 1, at=later, ttl=timedelta(hours=1), user="9")
    page, _ = store.links(
        user_id="9", status=None, after=None, limit=50, expired_before=later.timestamp()
    )
    assert [link.link_id for link in page] == [kept]


def test_links_written_a_chunk_at_a_time_are_all_there_when_the_call_returns(store):
    """record_link_chunks: each chunk is made after the one before went out (Redis pipelines)."""
    state = store.token_state("nobody")
    made: list[str] = []

    def chunks():
        for n in range(4):
            chunk = [
                LinkRecord(
                    uuid.uuid4().hex[:22], f"u{i}", "/", None, "k", T0, T0 + DAY, state.epoch
                )
                for i in range(n * 30, n * 30 + 30)
            ]
            made.extend(link.link_id for link in chunk)
            yield chunk

    store.record_link_chunks(chunks(), state.incarnation, T0)
    listed = every_page(store, user_id=None, at=T0, limit=500)
    assert sorted(link_id for _, link_id in listed) == sorted(made)


def test_chunks_sent_after_redis_lost_its_scripts_are_written_all_the_same(store, store_url):
    """A NOSCRIPT reply (Redis restarted, SCRIPT FLUSH) sends that chunk again the script's way."""
    if not store_url.startswith("redis"):
        pytest.skip("Redis only: scripts")
    from redis import Redis

    Redis.from_url(store_url).script_flush()
    state = store.token_state("nobody")
    chunks = [
        [LinkRecord(uuid.uuid4().hex[:22], "7", "/", None, "k", T0, T0 + DAY, state.epoch)]
        for _ in range(3)
    ]
    store.record_link_chunks(iter(chunks), state.incarnation, T0)
    page, _ = store.links(user_id="7", status=None, after=None, limit=50, expired_before=0)
    assert len(page) == 3
