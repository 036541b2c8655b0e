"""Upgrading in place: a store of the version before tenants is taken over as ``default``.

The stores in tests/fixtures/ were written by that version itself (commit
f81ead8, see tests/fixtures/make_legacy_stores.py), on 2026-11-20: auto-login
on with a lifetime of 7200 seconds, epoch 2, user 42 revoked, four audit
events, two sign-ins. Its tokens are minted here with the claims and header
the old version wrote (recorded beside the stores), only the times, the user
and the epochs changed: tokens live at most 7 days, the fixtures for ever.
"""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
import redis

from service.tokens import LEGACY_PURPOSE, tenant_claim
from tests.conftest import PORTAL, SIGNING_KEYS, auth
from tests.support.tenants import LINK_SETTINGS

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FACTS = json.loads((FIXTURES / "legacy_facts_f81ead8.json").read_text())
SQLITE_FIXTURE = FIXTURES / "legacy_store_f81ead8.db"
REDIS_FIXTURE = FIXTURES / "legacy_redis_f81ead8.json"
#: The `frozen` instant: the upgrade happens five days after the fixtures were made.
T0 = 1795600800  # 2026-11-25T10:00:00Z
ADMIN = auth("admin-key")
PORTAL_KEY = auth("portal-key")
OLD_AUDIT = ["user.revoke", "epoch.bump", "settings.update", "store.create"]
OLD_SIGNINS = [
    {
        "at": "2026-11-20T09:06:00Z",
        "user_id": "42",
        "outcome": "token_revoked",
        "ip": "203.0.113.7",
        "user_agent": "fixture",
        "link_id": None,  # written before link ids
    },
    {
        "at": "2026-11-20T09:03:00Z",
        "user_id": "43",
        "outcome": "ok",
        "ip": "203.0.113.7",
        "user_agent": "fixture",
        "link_id": None,  # written before link ids
    },
]


def load_redis_dump(url: str, prefix: str) -> None:
    """Write the old version's Redis keys under ``prefix``, as it left them."""
    dump = json.loads(REDIS_FIXTURE.read_text())
    raw = redis.Redis.from_url(url, decode_responses=True)
    try:
        assert not raw.keys(prefix + "*"), "the prefix must be empty"
        for name, entry in dump["keys"].items():
            key, value = prefix + name, entry["value"]
            if entry["type"] == "hash":
                raw.hset(key, mapping=value)
            elif entry["type"] == "zset":
                raw.zadd(key, {member: score for member, score in value})
            elif entry["type"] == "string":
                raw.set(key, value)
            else:
                raise AssertionError(f"{name}: unknown type {entry['type']}")
    finally:
        raw.close()


@pytest.fixture
def legacy_incarnation(store_url, config) -> str:
    """Lay the old version's store where ``config`` points; return its incarnation."""
    if store_url.startswith("sqlite:"):
        shutil.copyfile(SQLITE_FIXTURE, store_url[len("sqlite:///") :])
        return FACTS["sqlite_incarnation"]
    load_redis_dump(store_url, config["STORE_KEY_PREFIX"])
    return FACTS["redis_incarnation"]


@pytest.fixture
def upgraded(frozen, legacy_incarnation, make_app):
    """The first start of this version on the old store, at T0."""
    return make_app()


@pytest.fixture
def client(upgraded):
    return upgraded.test_client()


@pytest.fixture
def legacy(legacy_incarnation):
    """Mint a token as the version before tenants issued them."""

    def mint(user_id="43", *, iat=T0 - 3600, epoch=2, user_epoch=0, ttl=7200, **claims):
        payload = {
            **FACTS["token_claims"],
            "sub": user_id,
            "iat": iat,
            "exp": iat + ttl,
            "jti": uuid.uuid4().hex[:16],
            "sid": legacy_incarnation,
            "ep": epoch,
            "uep": user_epoch,
            **claims,
        }
        header = FACTS["token_header"]
        return jwt.encode(
            payload, SIGNING_KEYS[header["kid"]], algorithm=header["alg"], headers=header
        )

    return mint


def verify(client, token: str, path: str = "/v1/tokens/verify", headers=PORTAL_KEY):
    return client.post(path, json={"token": token}, headers=headers)


def get(client, path: str, **query):
    response = client.get(path, query_string=query, headers=ADMIN)
    assert response.status_code == 200, response.json
    return response.json


def audit_actions(client) -> list[str]:
    return [e["action"] for e in get(client, "/v1/admin/audit")["events"]]


def test_the_fixture_tokens_are_what_the_old_version_issued():
    # The claims recorded from the old version are the legacy format the new one accepts.
    assert FACTS["token_claims"]["pur"] == LEGACY_PURPOSE
    assert set(FACTS["token_claims"]) == {
        "iss", "aud", "sub", "iat", "exp", "jti", "pur", "sid", "ep", "uep", "tgt",
    }  # fmt: skip
    assert FACTS["token_header"] == {"alg": "HS256", "kid": "k1", "typ": "JWT"}


# -- what is kept --------------------------------------------------------------


def test_the_old_store_is_default_with_its_epoch(client):
    epoch = get(client, "/v1/admin/epoch")

    assert epoch == {
        "epoch": 2,
        "changed_at": "2026-11-20T09:02:00Z",
        "changed_by": "admin-key",
        "reason": "fixture bump",
    }
    assert get(client, "/v1/tenants/default/admin/epoch") == epoch


def test_the_old_settings_are_kept(client):
    assert get(client, "/v1/admin/settings") == {
        "auto_login_enabled": True,
        "token_ttl_seconds": 7200,
        "max_token_ttl_seconds": 604800,
        "portal_base_url": PORTAL,
        # A store taken over gets the new settings' defaults (secure by default).
        **LINK_SETTINGS,
    }


def test_the_old_audit_and_sign_in_logs_are_kept(client):
    assert audit_actions(client) == OLD_AUDIT
    events = get(client, "/v1/admin/audit")["events"]
    assert events[0]["detail"] == {"reason": "fixture revoke", "user_epoch": 1, "user_id": "42"}
    assert events[-1]["at"] == "2026-11-20T09:00:00Z"
    assert get(client, "/v1/admin/signins")["signins"] == OLD_SIGNINS
    assert get(client, "/v1/admin/signins", user_id="43")["signins"] == OLD_SIGNINS[1:]


def test_default_is_listed_as_made_when_the_old_store_was(client):
    tenants = get(client, "/v1/admin/tenants")

    assert tenants == {
        "tenants": [
            {
                "tenant_id": "default",
                "portal_base_url": PORTAL,
                "created_at": "2026-11-20T09:00:00Z",
                "auto_login_enabled": True,
                "token_ttl_seconds": 7200,
            }
        ],
        "next": None,
    }


def test_the_platform_audit_starts_empty(client):
    assert get(client, "/v1/admin/platform/audit") == {"events": []}


# -- the old tokens --------------------------------------------------------------


@pytest.mark.parametrize("path", ("/v1/tokens/verify", "/v1/tenants/default/tokens/verify"))
def test_an_old_token_of_a_current_user_still_verifies(client, legacy, path):
    response = verify(client, legacy("43"), path)

    assert response.status_code == 200, response.json
    assert response.json == {
        "user_id": "43",
        "target": "/",
        "issued_at": "2026-11-25T09:00:00Z",
        "expires_at": "2026-11-25T11:00:00Z",
    }


def test_an_old_token_verifies_for_a_tenant_key_of_default_too(client, legacy):
    # A tenant key goes through Flask's view, not the fast path of platform keys.
    made = client.post(
        "/v1/admin/keys",
        json={"name": "portal", "roles": ["portal"], "reason": "upgrade test"},
        headers=ADMIN,
    )
    assert made.status_code == 201, made.json
    key = {"Authorization": f"Bearer {made.json['key']}"}

    assert verify(client, legacy("43"), headers=key).status_code == 200
    revoked = verify(client, legacy("42"), headers=key)
    assert revoked.status_code == 401
    assert revoked.json["code"] == "token_revoked"


def test_an_old_token_of_the_revoked_user_stays_revoked(client, legacy):
    response = verify(client, legacy("42", user_epoch=0))

    assert response.status_code == 401
    assert response.json["code"] == "token_revoked"
    # Issued after that revocation by the old version: still good.
    assert verify(client, legacy("42", user_epoch=1)).status_code == 200


def test_an_old_token_from_before_the_bump_stays_revoked(client, legacy):
    response = verify(client, legacy("43", epoch=1))

    assert response.status_code == 401
    assert response.json["code"] == "token_revoked"


def test_an_old_token_of_another_store_is_revoked(client, legacy):
    response = verify(client, legacy("43", sid="AAAAAAAAAAAA"))

    assert response.status_code == 401
    assert response.json["code"] == "token_revoked"


def test_a_token_without_a_tenant_issued_after_the_takeover_is_invalid(frozen, client, legacy):
    frozen.tick(timedelta(minutes=10))

    after = verify(client, legacy("43", iat=T0 + 60))
    before = verify(client, legacy("43", iat=T0 - 60))

    assert after.status_code == 401
    assert after.json["code"] == "token_invalid"
    assert before.status_code == 200
    # Invalid, so nobody's sign-in: the log holds the good one only.
    assert [s["outcome"] for s in get(client, "/v1/admin/signins")["signins"]] == [
        "ok",
        "token_revoked",
        "ok",
    ]


def test_an_old_token_is_invalid_in_any_other_tenant(client, legacy):
    made = client.post(
        "/v1/admin/tenants",
        json={"tenant_id": "acme", "portal_base_url": "https://acme.example.com", "reason": "t"},
        headers=ADMIN,
    )
    assert made.status_code == 201, made.json

    response = verify(client, legacy("43"), "/v1/tenants/acme/tokens/verify")

    assert response.status_code == 401
    assert response.json["code"] == "token_invalid"
    assert get(client, "/v1/tenants/acme/admin/signins")["signins"] == []
    assert get(client, "/v1/admin/signins")["signins"] == OLD_SIGNINS


def test_scrub_in_default_reports_the_user_of_an_old_token(client, legacy):
    text = f"see {PORTAL}/?auto_login={legacy('43')} and the rest"

    response = client.post("/v1/scrub", json={"text": text}, headers=PORTAL_KEY)

    assert response.status_code == 200, response.json
    assert response.json == {
        "text": f"see {PORTAL}/ and the rest",
        "removed": 1,
        "user_ids": ["43"],
    }


# -- new tokens -------------------------------------------------------------------


def test_new_tokens_carry_default_s_tenant_purpose(client, legacy_incarnation):
    response = client.post(
        "/v1/links",
        json={
            "user_id": "43",
            "email": "bob@example.com",
            "recipients": {"to": ["bob@example.com"]},
        },
        headers=auth("issuer-key"),
    )
    assert response.status_code == 200, response.json
    token = response.json["url"].split("auto_login=", 1)[1]

    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["pur"] == tenant_claim("default")
    assert (claims["sid"], claims["ep"], claims["uep"]) == (legacy_incarnation, 2, 0)
    assert claims["exp"] - claims["iat"] == 7200
    assert verify(client, token).status_code == 200


# -- starting again ------------------------------------------------------------------


def test_a_second_start_changes_nothing(frozen, upgraded, client, legacy, make_app):
    first = upgraded.extensions["store"]
    assert first.legacy_before == T0
    frozen.tick(timedelta(hours=1))

    second = make_app()
    again = second.test_client()

    store = second.extensions["store"]
    assert store.legacy_before == first.legacy_before
    assert store.token_state("43") == first.token_state("43")
    assert store.token_state("42").user_epoch == 1
    assert get(again, "/v1/admin/epoch")["epoch"] == 2
    assert audit_actions(again) == OLD_AUDIT
    assert get(again, "/v1/admin/signins")["signins"] == OLD_SIGNINS
    assert [t["tenant_id"] for t in get(again, "/v1/admin/tenants")["tenants"]] == ["default"]
    # The boundary did not move to the second start: a token without a tenant
    # made between the two starts is still refused, an older one still good.
    between = verify(again, legacy("43", iat=T0 + 1800))
    assert between.status_code == 401
    assert between.json["code"] == "token_invalid"
    assert verify(again, legacy("43", iat=T0 - 60)).status_code == 200


def test_a_change_after_the_upgrade_reaches_the_second_start(upgraded, client, legacy, make_app):
    assert (
        client.post(
            "/v1/admin/epoch/bump", json={"reason": "after upgrade"}, headers=ADMIN
        ).status_code
        == 200
    )

    again = make_app().test_client()

    assert get(again, "/v1/admin/epoch")["epoch"] == 3
    response = verify(again, legacy("43"))
    assert response.status_code == 401
    assert response.json["code"] == "token_revoked"
