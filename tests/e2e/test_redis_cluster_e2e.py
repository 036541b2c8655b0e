"""On a Redis Cluster: gunicorn on three shards, each with a replica.

Each tenant's keys share its hash tag, so tenants spread over the shards
and every script runs on one of them: the Cluster itself refuses a script
whose keys span two slots, so every call working is that check. A slot
moved to another shard while clicks go on answers no 500 (redis-py follows
MOVED and ASK; a script refused while the slot is half moved is a 503), and
a shard's failover keeps every bump acknowledged with REDIS_MIN_REPLICAS_ACK 1.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter

import pytest
import redis
import requests

from tests.support.ha_load import Load, call, link, token_of
from tests.support.redis_ha import RedisCluster, keyslot, wait_for


@pytest.fixture(scope="module")
def shared_cluster():
    with RedisCluster(primaries=3, replicas=1) as cluster:
        yield cluster


def tenants_on_every_shard(cluster: RedisCluster, per_shard: int = 1) -> dict[str, int]:
    """Return tenant ids (-> their primary's port), ``per_shard`` on each primary."""
    found: dict[str, int] = {}
    counts: Counter = Counter()
    for i in range(1000):
        tenant = f"t{i}-{secrets.token_hex(2)}"
        port = cluster.owner(keyslot(f"{{{tenant}}}", cluster.servers)).port
        if counts[port] < per_shard:
            counts[port] += 1
            found[tenant] = port
        if len(counts) == cluster.primaries and min(counts.values()) == per_shard:
            return found
    raise AssertionError("no tenant ids for every shard")


def ok(response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json() if response.content else {}


def make_tenant(base: str, tenant: str) -> None:
    portal = f"https://{tenant}.portal.example.com"
    body = {"tenant_id": tenant, "portal_base_url": portal, "reason": "cluster test"}
    ok(call(base, "POST", "/v1/admin/tenants", body), 201)
    settings = {"auto_login_enabled": True}
    ok(call(base, "PATCH", f"/v1/tenants/{tenant}/admin/settings", settings))


def issue(base: str, tenant: str, user_id: str = "42") -> str:
    token = token_of(call(base, "POST", f"/v1/tenants/{tenant}/links", link(user_id)))
    assert token
    return token


def verify(base: str, tenant: str, token: str) -> tuple[int, str | None]:
    response = call(base, "POST", f"/v1/tenants/{tenant}/tokens/verify", {"token": token})
    return response.status_code, response.json().get("code")


def keys_by_port(cluster: RedisCluster, pattern: str) -> dict[int, int]:
    counts = {}
    for server in cluster.primaries_now():
        with cluster.client(server) as client:
            counts[server.port] = sum(1 for _ in client.scan_iter(match=pattern, count=1000))
    return counts


def test_tenants_spread_over_the_shards_and_every_call_works(shared_cluster, launch):
    server = launch(shared_cluster.url)
    base = server.url
    tenants = tenants_on_every_shard(shared_cluster)
    assert len(set(tenants.values())) == 3  # one tenant on each of the three shards
    for tenant in tenants:
        make_tenant(base, tenant)
        admin = f"/v1/tenants/{tenant}/admin"
        # A tenant key of its own, used as the portal's.
        made = ok(
            call(
                base,
                "POST",
                f"{admin}/keys",
                {"name": "portal", "roles": ["portal"], "reason": "r"},
            ),
            201,
        )
        portal = {"Authorization": f"Bearer {made['key']}"}
        token = issue(base, tenant)
        answer = requests.post(
            f"{base}/v1/tokens/verify", json={"token": token}, headers=portal, timeout=10
        )
        assert answer.status_code == 200, answer.text  # the key's own tenant, one trip
        assert verify(base, tenant, token) == (200, None)
        ok(call(base, "POST", f"{admin}/users/42/revoke", {"reason": "r"}))
        assert verify(base, tenant, token) == (401, "token_revoked")
        token = issue(base, tenant)
        assert ok(call(base, "POST", f"{admin}/epoch/bump", {"reason": "r"}))["epoch"] == 2
        assert verify(base, tenant, token) == (401, "token_revoked")
        actions = [e["action"] for e in ok(call(base, "GET", f"{admin}/audit"))["events"]]
        assert actions[:3] == ["epoch.bump", "user.revoke", "key.create"]
        ok(call(base, "DELETE", f"{admin}/keys/portal", {"reason": "r"}), 204)
        patch = {"portal_base_url": f"https://new.{tenant}.example.com", "reason": "r"}
        ok(call(base, "PATCH", f"/v1/admin/tenants/{tenant}", patch))
        ok(call(base, "GET", f"{admin}/signins"))
    # Each tenant's keys are on its own shard, and only there.
    for tenant, port in tenants.items():
        counts = keys_by_port(shared_cluster, f"{server.prefix}{{{tenant}}}*")
        assert counts[port] > 0 and sum(counts.values()) == counts[port], counts
    listed = ok(call(base, "GET", "/v1/admin/tenants?limit=2"))
    rest = ok(call(base, "GET", f"/v1/admin/tenants?limit=10&after={listed['next']}"))
    ids = [t["tenant_id"] for t in listed["tenants"] + rest["tenants"]]
    assert sorted(ids) == sorted([*tenants, "default"])
    # Deleted and made again at once: a new tenant, the old tokens revoked there.
    gone = next(iter(tenants))
    old = issue(base, gone)
    ok(call(base, "DELETE", f"/v1/admin/tenants/{gone}", {"reason": "r"}), 204)
    make_tenant(base, gone)
    assert verify(base, gone, old) == (401, "token_revoked")
    ready = ok(call(base, "GET", "/readyz"))
    assert ready == {"status": "ready"}
    # Behind the requests too: the sign-in log is written, the deleted tenant reaped.
    signins = f"/v1/tenants/{list(tenants)[-1]}/admin/signins"
    wait_for(lambda: ok(call(base, "GET", signins))["signins"], "the sign-in log written")
    trash = redis.RedisCluster(host="127.0.0.1", port=shared_cluster.servers[0].port)
    try:
        wait_for(lambda: trash.scard(f"{server.prefix}{{_platform}}:trash") == 0, "reaped")
    finally:
        trash.close()
    for warning in ("tenant reaper:", "sign-in log:", "wrong shape", "Traceback"):
        assert warning not in server.log()


def test_a_slot_moving_to_another_shard_while_clicks_go_on_answers_no_500(shared_cluster, launch):
    server = launch(shared_cluster.url)
    base = server.url
    tenant = next(iter(tenants_on_every_shard(shared_cluster)))
    make_tenant(base, tenant)
    tokens = [issue(base, tenant, f"u{i}") for i in range(20)]
    for token in tokens:  # sign-ins too: the tenant's logs move with it
        assert verify(base, tenant, token) == (200, None)
    slot = keyslot(f"{{{tenant}}}", shared_cluster.servers)
    source = shared_cluster.owner(slot)
    target = next(s for s in shared_cluster.primaries_now() if s is not source)

    statuses: Counter = Counter()
    wrong: list = []
    stop = threading.Event()

    def click(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            calls = [
                (f"/v1/tenants/{tenant}/tokens/verify", {"token": tokens[(n + i) % 20]}),
                (f"/v1/tenants/{tenant}/links", link(f"u{i % 20}")),
            ]
            if n == 0:  # changes too (WAIT on the slot's primary), of a user without tokens
                calls.append((f"/v1/tenants/{tenant}/admin/users/other/revoke", {"reason": "r"}))
            for path, body in calls:
                response = call(base, "POST", path, body)
                statuses[response.status_code] += 1
                if response.status_code not in (200, 503):
                    wrong.append((path, response.status_code, response.text[:200]))

    threads = [threading.Thread(target=click, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)
        moved = shared_cluster.move_slot(slot, target, batch=2, between=lambda: time.sleep(0.1))
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    print(f"moved {moved} keys of slot {slot}; answers during the move: {dict(statuses)}")
    assert moved >= 8  # the tenant's meta, epochs, logs, ... all moved
    assert shared_cluster.owner(slot) is target
    assert not wrong, wrong
    assert statuses[200] > 0
    # The tenant moved whole: same incarnation (its tokens verify), same settings, its log.
    for token in tokens:
        assert verify(base, tenant, token) == (200, None)
    settings = ok(call(base, "GET", f"/v1/tenants/{tenant}/admin/settings"))
    assert settings["auto_login_enabled"] is True
    ok(call(base, "POST", f"/v1/tenants/{tenant}/admin/epoch/bump", {"reason": "after"}))
    assert verify(base, tenant, tokens[0]) == (401, "token_revoked")
    events = ok(call(base, "GET", f"/v1/tenants/{tenant}/admin/audit?limit=500"))["events"]
    actions = [e["action"] for e in events if e["action"] != "user.revoke"]
    assert actions == ["epoch.bump", "settings.update", "tenant.create"]
    counts = keys_by_port(shared_cluster, f"{server.prefix}{{{tenant}}}*")
    assert counts[target.port] == sum(counts.values()) > 0


def test_a_shard_failover_under_load_keeps_every_acknowledged_bump(launch):
    with RedisCluster(primaries=3, replicas=1) as cluster:
        server = launch(cluster.url)  # REDIS_MIN_REPLICAS_ACK defaults to 1 here
        tenant = next(iter(tenants_on_every_shard(cluster)))
        make_tenant(server.url, tenant)
        load = Load(server.url, prefix=f"/v1/tenants/{tenant}").start()
        try:
            wait_for(lambda: len(load.acked) >= 5, "bumps acknowledged before the failover")
            old = cluster.owner(keyslot(f"{{{tenant}}}", cluster.servers))
            load.mark_failure()
            old.kill()
            wait_for(
                lambda: cluster.owner(keyslot(f"{{{tenant}}}", cluster.servers)) is not old,
                "the replica promoted",
            )
            # The shard has no replica now: changes there answer 503, /readyz says why.
            ready = wait_for(
                lambda: (r := call(server.url, "GET", "/readyz")).status_code == 200 and r.json(),
                "/readyz answers again",
            )
            assert ready["status"] == "degraded", ready
            old.start()  # the old primary comes back, as the new one's replica
            load.wait_back()
            wait_for(lambda: len(load.acked_after_failure()) >= 3, "bumps after the failover")
        finally:
            load.stop()
        print(load.outage(), f"({len(load.acked)} bumps acknowledged, {load.unsure} answered 503)")
        assert not load.wrong, load.wrong
        assert load.statuses[503] > 0
        epochs = [a.epoch for a in load.acked]
        assert epochs == sorted(set(epochs)), epochs
        assert not load.lost()
        for acked in load.acked:
            assert verify(server.url, tenant, acked.token) == (401, "token_revoked")


def test_the_cluster_refuses_a_script_whose_keys_span_two_slots(shared_cluster):
    """The check the tests above rely on: a script of one tenant touching another's fails."""
    one, other = list(tenants_on_every_shard(shared_cluster))[:2]  # on two shards
    client = redis.RedisCluster(host="127.0.0.1", port=shared_cluster.servers[0].port)
    try:
        with pytest.raises(redis.exceptions.RedisClusterException, match="same (key )?slot"):
            client.eval("return 1", 2, f"{{{one}}}:a", f"{{{other}}}:a")  # declared
        script = f"redis.call('SET', KEYS[1], 1) return redis.call('GET', '{{{other}}}:a')"
        with pytest.raises(redis.exceptions.ResponseError, match="non local key"):
            client.eval(script, 1, f"{{{one}}}:a")  # undeclared, on another shard
    finally:
        client.close()
