"""``/v1/admin``: settings, epochs, revocation, audit and sign-in logs, and the CLI."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest

from tests.conftest import PORTAL, auth
from tests.support.tenants import LINK_SETTINGS

ADMIN = auth("admin-key")
DEFAULTS = {
    "auto_login_enabled": False,
    "token_ttl_seconds": 259200,
    "max_token_ttl_seconds": 604800,
    # The tenant's portal address, read-only: default's is the deployment's.
    "portal_base_url": PORTAL,
    **LINK_SETTINGS,
}
T0_ISO = "2026-11-25T10:00:00Z"


def get(client, path, **query):
    return client.get(path, query_string=query, headers=ADMIN)


def patch_settings(client, body):
    return client.patch("/v1/admin/settings", json=body, headers=ADMIN)


def audit(client, **query) -> list[dict]:
    response = get(client, "/v1/admin/audit", **query)
    assert response.status_code == 200
    return response.json["events"]


# -- settings ------------------------------------------------------------------


def test_new_store_has_the_default_settings(client):
    response = get(client, "/v1/admin/settings")

    assert response.status_code == 200
    assert response.json == DEFAULTS


@pytest.mark.parametrize(
    "change",
    (
        {"auto_login_enabled": True},
        {"auto_login_enabled": False},
        {"token_ttl_seconds": 3600},
        {"token_ttl_seconds": 60},
        {"token_ttl_seconds": 604800},
        {"auto_login_enabled": True, "token_ttl_seconds": 86400},
    ),
)
def test_patch_changes_the_fields_sent_and_keeps_the_others(client, change):
    response = patch_settings(client, change)

    assert response.status_code == 200
    assert response.json == {**DEFAULTS, **change}
    assert get(client, "/v1/admin/settings").json == {**DEFAULTS, **change}


def test_a_lifetime_written_as_a_whole_float_is_an_integer(client):
    # JSON Schema's "integer" includes 86400.0; the OpenAPI document says integer.
    response = patch_settings(client, {"token_ttl_seconds": 86400.0})

    assert response.status_code == 200
    assert response.json["token_ttl_seconds"] == 86400
    assert type(response.json["token_ttl_seconds"]) is int


def test_settings_change_reaches_another_app_on_the_same_store(client, make_app):
    other = make_app().test_client()

    patch_settings(client, {"auto_login_enabled": True, "token_ttl_seconds": 7200})

    assert get(other, "/v1/admin/settings").json == {
        **DEFAULTS,
        "auto_login_enabled": True,
        "token_ttl_seconds": 7200,
    }


@pytest.mark.parametrize(
    "body",
    (
        {},
        {"unknown": 1},
        {"auto_login_enabled": True, "unknown": 1},
        {"max_token_ttl_seconds": 100},
        {"max_token_ttl_seconds": 604800},
        {"auto_login_enabled": True, "max_token_ttl_seconds": 604800},
        {"auto_login_enabled": "yes"},
        {"auto_login_enabled": "true"},
        {"auto_login_enabled": 1},
        {"auto_login_enabled": None},
        {"token_ttl_seconds": True},
        {"token_ttl_seconds": "3600"},
        {"token_ttl_seconds": 3600.5},
        {"token_ttl_seconds": None},
        {"token_ttl_seconds": [3600]},
        {"token_ttl_seconds": 59},
        {"token_ttl_seconds": 0},
        {"token_ttl_seconds": -3600},
        {"token_ttl_seconds": 604801},
        {"auto_login_enabled": True, "token_ttl_seconds": 59},
    ),
)
def test_bad_settings_change_is_invalid_setting_and_changes_nothing(client, body):
    response = patch_settings(client, body)

    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json["code"] == "invalid_setting"
    assert get(client, "/v1/admin/settings").json == DEFAULTS
    assert [e["action"] for e in audit(client)] == ["store.create"]


def test_lifetime_above_a_lower_configured_maximum_is_invalid_setting(make_app):
    client = make_app(MAX_TOKEN_TTL_SECONDS=86400).test_client()

    assert get(client, "/v1/admin/settings").json["max_token_ttl_seconds"] == 86400
    assert patch_settings(client, {"token_ttl_seconds": 86400}).status_code == 200
    response = patch_settings(client, {"token_ttl_seconds": 86401})
    assert response.status_code == 400
    assert response.json["code"] == "invalid_setting"


# -- the epoch -----------------------------------------------------------------


def test_new_store_starts_at_epoch_1_by_system(frozen, client):
    response = get(client, "/v1/admin/epoch")

    assert response.status_code == 200
    assert response.json["epoch"] == 1
    assert response.json["changed_by"] == "system"
    assert set(response.json) == {"epoch", "changed_at", "changed_by", "reason"}


def test_bump_returns_the_next_epoch_with_actor_and_reason(frozen, client):
    response = client.post("/v1/admin/epoch/bump", json={"reason": "laptop stolen"}, headers=ADMIN)

    expected = {
        "epoch": 2,
        "changed_at": T0_ISO,
        "changed_by": "admin-key",
        "reason": "laptop stolen",
    }
    assert response.status_code == 200
    assert response.json == expected
    assert get(client, "/v1/admin/epoch").json == expected


def test_each_bump_adds_one_and_names_its_key(frozen, client, links):
    links.bump("first")
    frozen.tick(timedelta(minutes=1))

    response = client.post(
        "/v1/admin/epoch/bump", json={"reason": "second"}, headers=auth("ops-key")
    )

    assert response.json == {
        "epoch": 3,
        "changed_at": "2026-11-25T10:01:00Z",
        "changed_by": "ops-key",
        "reason": "second",
    }


def test_reason_is_stripped_and_500_characters_are_enough(client):
    response = client.post("/v1/admin/epoch/bump", json={"reason": "x" * 500}, headers=ADMIN)

    assert response.status_code == 200
    assert response.json["reason"] == "x" * 500
    assert (
        client.post("/v1/admin/epoch/bump", json={"reason": "  spaced  "}, headers=ADMIN).json[
            "reason"
        ]
        == "spaced"
    )


BAD_REASONS = (
    {},
    {"reason": ""},
    {"reason": "   "},
    {"reason": "x" * 501},
    {"reason": " " + "x" * 499 + "  "},  # 501 characters as sent: the limit is on what is sent
    {"reason": None},
    {"reason": 42},
    {"reason": ["leak"]},
    {"reason": {"text": "leak"}},
    {"reason": True},
)


@pytest.mark.parametrize("body", BAD_REASONS)
def test_bump_without_a_proper_reason_is_invalid_request(client, body):
    response = client.post("/v1/admin/epoch/bump", json=body, headers=ADMIN)

    assert response.status_code == 400
    assert response.json["code"] == "invalid_request"
    assert "reason" in response.json["detail"]
    assert get(client, "/v1/admin/epoch").json["epoch"] == 1


# -- per-user revocation -------------------------------------------------------


def test_revoke_answers_user_id_and_revoked_at(frozen, client):
    response = client.post("/v1/admin/users/42/revoke", json={"reason": "left"}, headers=ADMIN)

    assert response.status_code == 200
    assert response.json == {"user_id": "42", "revoked_at": T0_ISO}


def test_revoke_does_not_change_the_global_epoch(client, links):
    links.revoke("42")

    assert get(client, "/v1/admin/epoch").json["epoch"] == 1


@pytest.mark.parametrize("user_id", ("a@b.example", "user:7", "x+y-z_1.2", "a" * 128))
def test_revoke_takes_any_valid_user_id(client, user_id):
    response = client.post(f"/v1/admin/users/{user_id}/revoke", json={"reason": "r"}, headers=ADMIN)

    assert response.status_code == 200
    assert response.json["user_id"] == user_id


@pytest.mark.parametrize("user_id", ("a" * 129, "bad%20id", "a/b", "%C3%BC"))
def test_revoke_of_an_invalid_user_id_is_invalid_request(client, user_id):
    response = client.post(f"/v1/admin/users/{user_id}/revoke", json={"reason": "r"}, headers=ADMIN)

    assert response.status_code == 400
    assert response.json["code"] == "invalid_request"
    assert "user_id" in response.json["detail"]


@pytest.mark.parametrize("body", BAD_REASONS)
def test_revoke_without_a_proper_reason_is_invalid_request(client, body):
    response = client.post("/v1/admin/users/42/revoke", json=body, headers=ADMIN)

    assert response.status_code == 400
    assert response.json["code"] == "invalid_request"
    assert "reason" in response.json["detail"]
    assert [e["action"] for e in audit(client)] == ["store.create"]


# -- the audit log -------------------------------------------------------------


def test_audit_log_lists_every_change_newest_first(frozen, client, links):
    links.enable()
    frozen.tick(timedelta(minutes=1))
    client.post("/v1/admin/epoch/bump", json={"reason": "leak"}, headers=auth("ops-key"))
    frozen.tick(timedelta(minutes=1))
    links.revoke("42", reason="left the company")

    events = audit(client)

    assert [(e["action"], e["actor"]) for e in events] == [
        ("user.revoke", "admin-key"),
        ("epoch.bump", "ops-key"),
        ("settings.update", "admin-key"),
        ("store.create", "system"),
    ]
    assert [e["at"] for e in events[:3]] == [
        "2026-11-25T10:02:00Z",
        "2026-11-25T10:01:00Z",
        T0_ISO,
    ]
    assert events[0]["detail"]["user_id"] == "42"
    assert events[0]["detail"]["reason"] == "left the company"
    assert events[1]["detail"]["reason"] == "leak"
    assert events[1]["detail"]["epoch"] == 2
    assert events[2]["detail"] == {"auto_login_enabled": True}


@pytest.mark.parametrize("path", ("/v1/admin/audit", "/v1/admin/signins"))
@pytest.mark.parametrize(
    "limit",
    (
        "0",
        "501",
        "abc",
        "-1",
        "",
        "1.5",
        "1e2",
        " 5",
        "5 ",
        "0x10",
        "²",
        "٣",
        "1" * 5000,  # int() itself refuses over 4300 digits: never a 500
    ),
    ids=lambda limit: limit if len(limit) < 20 else f"{len(limit)} digits",
)
def test_limit_outside_1_to_500_is_invalid_request(client, path, limit):
    response = get(client, path, limit=limit)

    assert response.status_code == 400
    assert response.json["code"] == "invalid_request"
    assert "limit" in response.json["detail"]


def test_audit_limit_defaults_to_50_and_is_honoured(client, links):
    for i in range(55):
        links.bump(f"bump {i}")

    assert len(audit(client)) == 50
    assert len(audit(client, limit=500)) == 56
    newest = audit(client, limit=3)
    assert [e["detail"]["reason"] for e in newest] == ["bump 54", "bump 53", "bump 52"]
    assert len(audit(client, limit=1)) == 1


# -- the sign-in log -----------------------------------------------------------


def signins(client, **query) -> list[dict]:
    response = get(client, "/v1/admin/signins", **query)
    assert response.status_code == 200
    return response.json["signins"]


def test_signins_filter_by_user_id(frozen, client, links):
    links.enable()
    alice = links.token("alice")
    bob = links.token("bob", email="bob@example.com")
    links.verify(alice, client={"ip": "203.0.113.7", "user_agent": "UA"})
    frozen.tick(timedelta(seconds=10))
    links.verify(bob)
    links.verify(alice)

    assert [s["user_id"] for s in signins(client)] == ["alice", "bob", "alice"]
    link = jwt.decode(alice, options={"verify_signature": False})["jti"]
    assert signins(client, user_id="alice") == [
        {
            "at": "2026-11-25T10:00:10Z",
            "user_id": "alice",
            "outcome": "ok",
            "ip": None,
            "user_agent": None,
            "link_id": link,
        },
        {
            "at": T0_ISO,
            "user_id": "alice",
            "outcome": "ok",
            "ip": "203.0.113.7",
            "user_agent": "UA",
            "link_id": link,
        },
    ]
    assert signins(client, user_id="carol") == []


def test_signins_limit_defaults_to_50_and_is_honoured(client, links):
    links.enable()
    token = links.token()
    for _ in range(52):
        links.verify(token)

    assert len(signins(client)) == 50
    assert len(signins(client, limit=500)) == 52
    assert len(signins(client, user_id="42", limit=2)) == 2


@pytest.mark.parametrize("user_id", ("", "bad id", "a" * 129))
def test_signins_of_an_invalid_user_id_is_invalid_request(client, user_id):
    response = get(client, "/v1/admin/signins", user_id=user_id)

    assert response.status_code == 400
    assert response.json["code"] == "invalid_request"
    assert "user_id" in response.json["detail"]


# -- retention -----------------------------------------------------------------


def test_log_entries_older_than_the_retention_are_pruned(frozen, make_app):
    client = make_app(LOG_RETENTION_DAYS=1).test_client()
    client.patch("/v1/admin/settings", json={"auto_login_enabled": True}, headers=ADMIN)
    issue = {
        "user_id": "42",
        "email": "alice@example.com",
        "recipients": {"to": ["alice@example.com"]},
        "ttl_seconds": 604800,
    }

    def verify_new_token():
        url = client.post("/v1/links", json=issue, headers=auth("issuer-key")).json["url"]
        body = {"token": url.split("auto_login=", 1)[1]}
        response = client.post("/v1/tokens/verify", json=body, headers=auth("portal-key"))
        assert response.status_code == 200

    # Pruning runs when the sign-in log is written or either log is read,
    # at most every 5 minutes per process (service/signins.py).
    verify_new_token()  # T0
    assert len(signins(client)) == 1  # the first prune: nothing is old yet
    frozen.tick(timedelta(days=1, minutes=-2))
    verify_new_token()  # T0 + 1 day - 2 min: nothing is older than a day yet
    assert len(signins(client)) == 2
    assert [e["action"] for e in audit(client)] == ["settings.update", "store.create"]

    frozen.tick(timedelta(minutes=5))
    verify_new_token()  # T0 + 1 day + 3 min: a prune is due, everything from T0 goes
    assert audit(client) == []
    assert [s["at"] for s in signins(client)] == [
        "2026-11-26T10:03:00Z",
        "2026-11-26T09:58:00Z",
    ]


# -- the CLI -------------------------------------------------------------------


def test_cli_bump_raises_the_epoch_and_is_audited_as_cli(client, runner, links):
    links.enable()
    token = links.token()

    result = runner.invoke(args=["epoch", "bump", "--reason", "cli test"])

    assert result.exit_code == 0, result.output
    assert "epoch 2" in result.output
    epoch = get(client, "/v1/admin/epoch").json
    assert (epoch["epoch"], epoch["changed_by"], epoch["reason"]) == (2, "cli", "cli test")
    newest = audit(client)[0]
    assert (newest["action"], newest["actor"]) == ("epoch.bump", "cli")
    assert newest["detail"]["reason"] == "cli test"
    assert links.verify(token).json["code"] == "token_revoked"


@pytest.mark.parametrize(
    "args",
    (
        ["epoch", "bump"],
        ["epoch", "bump", "--reason", ""],
        ["epoch", "bump", "--reason", "x" * 501],
    ),
)
def test_cli_bump_without_a_proper_reason_fails_and_changes_nothing(client, runner, args):
    result = runner.invoke(args=args)

    assert result.exit_code != 0
    assert get(client, "/v1/admin/epoch").json["epoch"] == 1


def test_cli_show_prints_the_epoch(runner, links):
    links.bump()

    result = runner.invoke(args=["epoch", "show"])

    assert result.exit_code == 0
    assert "epoch 2" in result.output
    assert "admin-key" in result.output
