"""A ledger written by the version before its user index by issue time is indexed on the next start.

SQLite: the index by user first (``links_user``) gives way to ``links_user_hour``
and the ``issue_hour`` column; Redis: the per-user sorted sets (layout 2) are
moved into ``links_by_user``.
"""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime, timedelta

from redis import Redis

from service.store import LinkRecord, Settings, open_store

T0 = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)


def record_five(store, step: timedelta) -> list[LinkRecord]:
    """Record five links of users 1 and 2, ``step`` apart; user 1's are the 1st, 3rd and 4th."""
    state = store.token_state("nobody")
    links = [
        LinkRecord(f"{n:02d}" + "L" * 20, user, "/", None, "k", T0 + step * n,
                   T0 + timedelta(days=1), state.epoch, 0)
        for n, user in enumerate(["1", "2", "1", "1", "2"])
    ]  # fmt: skip
    store.record_links(links, state.incarnation, T0)
    return links


def user_ones(store) -> list[str]:
    page, _ = store.links(user_id="1", status=None, after=None, limit=50, expired_before=0)
    return [link.link_id for link in page]


def test_per_user_link_sets_become_links_by_user_once(redis_server):
    prefix = f"test-{uuid.uuid4().hex[:12]}:"
    options = {"key_prefix": prefix}
    store = open_store(redis_server.url, defaults=Settings(True, 259200), options=options)
    state = store.token_state("nobody")
    links = record_five(store, timedelta(seconds=1))
    store.close()
    # Rewrite the user index as layout 2 kept it: a sorted set of ids per user.
    raw = Redis.from_url(redis_server.url, decode_responses=True)
    data = f"{prefix}{{default}}:{state.incarnation}:"
    raw.delete(f"{data}links_by_user")
    for link in links:
        raw.zadd(f"{data}links:{link.user_id}", {link.link_id: link.issued_at.timestamp()})
        raw.sadd(f"{data}link_users", link.user_id)
    raw.hset(f"{prefix}{{_platform}}:info", "layout", "2")

    for _ in range(2):  # the second start finds nothing more to do
        store = open_store(redis_server.url, defaults=Settings(True, 259200), options=options)
        assert user_ones(store) == [links[3].link_id, links[2].link_id, links[0].link_id]
        store.close()
        assert raw.hget(f"{prefix}{{_platform}}:info", "layout") == "3"
        assert raw.keys(f"{data}links:*") == []
        assert not raw.exists(f"{data}link_users")
        assert raw.zcard(f"{data}links_by_user") == 5
    raw.close()


def test_an_sqlite_ledger_indexed_by_user_first_is_indexed_by_hour(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    options = {"instance_path": str(tmp_path)}
    store = open_store(url, defaults=Settings(True, 259200), options=options)
    links = record_five(store, timedelta(hours=1))
    store.close()
    # As the version before wrote it: no issue_hour, the index by user first.
    raw = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    raw.execute("DROP INDEX links_user_hour")
    raw.execute("ALTER TABLE links DROP COLUMN issue_hour")
    raw.execute("CREATE INDEX links_user ON links (tenant, user_id, issued_at, link_id)")
    raw.close()

    for _ in range(2):
        store = open_store(url, defaults=Settings(True, 259200), options=options)
        assert user_ones(store) == [links[3].link_id, links[2].link_id, links[0].link_id]
        store.close()
        raw = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
        rows = raw.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
        indexes = {name for (name,) in rows}
        hours = raw.execute("SELECT issue_hour FROM links ORDER BY issued_at").fetchall()
        raw.close()
        assert "links_user" not in indexes and "links_user_hour" in indexes
        assert [h for (h,) in hours] == [int(link.issued_at.timestamp() // 3600) for link in links]
