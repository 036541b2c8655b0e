"""Epoch values are never reused, on both stores.

A bump (or a user revocation) that the store loses after tokens were issued
under it (a Redis failover to a replica that never got it; a restored
backup) gives its number back; the next one reuses the number, but draws a
new random identity, so the tokens issued under the lost one stay void.
The loss is made here by putting the store's state back as it was before
the bump, as the replica that took over would have it.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Callable

import pytest

from tests.conftest import LinkActions, auth
from tests.support.redis_keys import meta

ADMIN = auth("admin-key")


def snapshot(app) -> Callable[[], None]:
    """Return a function that puts the default tenant's epochs back as they are now."""
    store = app.extensions["store"]
    if hasattr(store, "redis"):
        key = meta(store.key_prefix)
        data = f"{store.key_prefix}{{default}}:{store.token_state('x').incarnation}:user_epochs"
        saved = store.redis.hgetall(key), store.redis.hgetall(data)

        def restore() -> None:
            for name, fields in ((key, saved[0]), (data, saved[1])):
                store.redis.delete(name)
                store.redis.hset(name, mapping=fields)

        return restore
    path = store.path
    with sqlite3.connect(path) as conn:
        row = conn.execute(
            "SELECT epoch, epoch_id, incarnation FROM tenants WHERE tenant_id = 'default'"
        ).fetchone()
        users = conn.execute("SELECT * FROM user_epochs WHERE tenant = ?", (row[2],)).fetchall()

    def restore() -> None:
        with sqlite3.connect(path) as conn:
            conn.execute(
                "UPDATE tenants SET epoch = ?, epoch_id = ? WHERE tenant_id = 'default'", row[:2]
            )
            conn.execute("DELETE FROM user_epochs WHERE tenant = ?", (row[2],))
            conn.executemany("INSERT INTO user_epochs VALUES (?, ?, ?, ?)", users)

    return restore


@pytest.fixture
def actions(client) -> LinkActions:
    actions = LinkActions(client)
    actions.enable()
    return actions


def token_of(actions: LinkActions, user_id: str = "42") -> str:
    return actions.issue(user_id).json["url"].split("auto_login=", 1)[1]


def link_id_of(token: str) -> str:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"]


def verify(client, token: str) -> tuple[int, str | None]:
    response = client.post("/v1/tokens/verify", json={"token": token}, headers=auth("portal-key"))
    return response.status_code, response.json.get("code")


def test_tokens_issued_under_a_lost_bump_stay_void_after_the_next_one(app, client, actions):
    restore = snapshot(app)
    first = client.get("/v1/admin/epoch", headers=ADMIN).json["epoch"]
    lost = client.post("/v1/admin/epoch/bump", json={"reason": "lost"}, headers=ADMIN)
    assert lost.json["epoch"] == first + 1
    under_lost = token_of(actions)
    assert verify(client, under_lost) == (200, None)
    restore()  # the store never had that bump
    assert client.get("/v1/admin/epoch", headers=ADMIN).json["epoch"] == first
    assert verify(client, under_lost) == (401, "token_revoked")
    again = client.post("/v1/admin/epoch/bump", json={"reason": "again"}, headers=ADMIN)
    assert again.json["epoch"] == first + 1  # the number comes back: displayed as it counts
    assert verify(client, under_lost) == (401, "token_revoked")  # its identity does not
    assert verify(client, token_of(actions)) == (200, None)
    # The ledger says what a verification says.
    link = client.get(f"/v1/admin/links/{link_id_of(under_lost)}", headers=ADMIN)
    assert link.json["status"] == "revoked"


def test_tokens_issued_under_a_lost_user_revocation_stay_void_after_the_next(app, client, actions):
    restore = snapshot(app)
    path = "/v1/admin/users/42/revoke"
    assert client.post(path, json={"reason": "lost"}, headers=ADMIN).status_code == 200
    under_lost = token_of(actions)
    restore()
    assert verify(client, under_lost) == (401, "token_revoked")
    assert client.post(path, json={"reason": "again"}, headers=ADMIN).status_code == 200
    assert verify(client, under_lost) == (401, "token_revoked")  # not "+1" back to its value
    assert verify(client, token_of(actions)) == (200, None)
    assert verify(client, token_of(actions, "43")) == (200, None)  # nobody else's


def test_a_store_from_before_epoch_identities_keeps_its_tokens_until_the_next_bump(
    app, client, actions
):
    store = app.extensions["store"]
    old = token_of(actions)
    # As the version before wrote them: no identity in the store ...
    if hasattr(store, "redis"):
        store.redis.hdel(meta(store.key_prefix), "epoch_id")
    else:
        with sqlite3.connect(store.path) as conn:
            conn.execute("UPDATE tenants SET epoch_id = 0")
    assert store.token_state("42").epoch_id == 0
    # ... and tokens with eid 0, as a token without the claim reads (test_tokens.py).
    assert verify(client, old) == (200, None)
    client.post("/v1/admin/epoch/bump", json={"reason": "r"}, headers=ADMIN)
    assert store.token_state("42").epoch_id != 0
    assert verify(client, old) == (401, "token_revoked")
