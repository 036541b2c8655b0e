"""Every live link accounted for: link ids, the ledger, voiding one link, scrub's revoke.

Each test runs on SQLite and on Redis (the ``client`` fixture's store).
"""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest

from tests.conftest import PORTAL, auth
from tests.support.tenants import ADMIN, assert_problem, get

T0_ISO = "2026-11-25T10:00:00Z"


def link_id_of(token: str) -> str:
    return jwt.decode(token, options={"verify_signature": False})["jti"]


def issued(enabled, user_id="42", **body) -> tuple[str, str]:
    """Issue a token link; return (token, link id) after checking the answer names the link."""
    response = enabled.issue(user_id, **body)
    assert response.status_code == 200, response.json
    token = response.json["url"].split("auto_login=", 1)[1].split("#")[0]
    assert response.json["link_id"] == link_id_of(token)
    return token, response.json["link_id"]


def ledger(client, **query) -> dict:
    return get(client, "/v1/admin/links", **query)


def void(client, link_id, reason="leaked", headers=ADMIN):
    return client.post(
        f"/v1/admin/links/{link_id}/revoke", json={"reason": reason}, headers=headers
    )


# -- link ids and the ledger ---------------------------------------------------


def test_every_token_link_names_its_link_and_a_plain_one_none(enabled):
    _, link_id = issued(enabled)
    assert 16 <= len(link_id) <= 32
    plain = enabled.issue(recipients={"to": ["alice@example.com", "bob@example.com"]})
    assert plain.json["link_id"] is None


def test_the_batch_names_each_link(client, enabled):
    items = [
        {"user_id": "1", "email": "a@example.com", "recipients": {"to": ["a@example.com"]}},
        {"user_id": "2", "email": "b@example.com", "recipients": {"to": ["x@example.com"]}},
    ]
    answers = client.post(
        "/v1/links/batch", json={"items": items}, headers=auth("issuer-key")
    ).json["items"]
    token = answers[0]["url"].split("auto_login=", 1)[1]
    assert answers[0]["link_id"] == link_id_of(token)
    assert answers[1]["link_id"] is None


def test_every_link_of_a_big_batch_is_in_the_ledger_when_its_answer_returns(client, enabled):
    """A batch over one ledger chunk (written while the next is signed) is all there, at once."""
    items = [
        {"user_id": str(n % 7), "email": f"u{n % 7}@example.com",
         "recipients": {"to": [f"u{n % 7}@example.com"]}}
        for n in range(620)
    ]  # fmt: skip
    answers = client.post(
        "/v1/links/batch", json={"items": items}, headers=auth("issuer-key")
    ).json["items"]
    listed, after = [], None
    while True:
        page = ledger(client, limit=500, **({"after": after} if after else {}))
        listed += [link["link_id"] for link in page["links"]]
        if (after := page["next"]) is None:
            break
    assert sorted(listed) == sorted(answer["link_id"] for answer in answers)
    assert len(set(listed)) == 620


def test_a_link_is_in_the_ledger_when_its_answer_returns(frozen, client, enabled):
    _, link_id = issued(enabled, target="/tickets/7", reference="ticket 7, reply 2")
    expected = {
        "link_id": link_id,
        "user_id": "42",
        "target": "/tickets/7",
        "reference": "ticket 7, reply 2",
        "issued_by": "issuer-key",
        "issued_at": T0_ISO,
        "expires_at": "2026-11-28T10:00:00Z",
        "status": "active",
        "uses": 0,
        "first_used_at": None,
        "last_used_at": None,
        "last_ip": None,
        "bound": False,
    }
    assert get(client, f"/v1/admin/links/{link_id}") == expected
    assert ledger(client) == {"links": [expected], "next": None}


def test_uses_count_successful_sign_ins_only(frozen, client, enabled):
    token, link_id = issued(enabled)
    assert enabled.verify(token, client={"ip": "203.0.113.7"}).status_code == 200
    frozen.tick(timedelta(minutes=5))
    assert enabled.verify(token, client={"ip": "198.51.100.9"}).status_code == 200
    enabled.revoke("42")
    assert enabled.verify(token).status_code == 401
    link = get(client, f"/v1/admin/links/{link_id}")
    assert (link["uses"], link["first_used_at"], link["last_used_at"], link["last_ip"]) == (
        2,
        T0_ISO,
        "2026-11-25T10:05:00Z",
        "198.51.100.9",
    )
    assert link["status"] == "revoked"


@pytest.mark.parametrize("change", ["bump", "user", "link"])
def test_status_is_what_a_verification_would_answer(frozen, client, enabled, change):
    token, link_id = issued(enabled, ttl_seconds=3600)
    other, other_id = issued(enabled, "43", email="bob@example.com")
    if change == "bump":
        enabled.bump()
    elif change == "user":
        enabled.revoke("42")
    else:
        assert void(client, link_id).status_code == 200
    assert get(client, f"/v1/admin/links/{link_id}")["status"] == "revoked"
    assert enabled.verify(token).json["code"] == "token_revoked"
    survivor = "revoked" if change == "bump" else "active"
    assert get(client, f"/v1/admin/links/{other_id}")["status"] == survivor
    frozen.tick(timedelta(seconds=3600 + 31))  # past expiry and the leeway
    assert get(client, f"/v1/admin/links/{link_id}")["status"] == "expired"


def test_the_ledger_is_newest_first_filtered_and_paged(frozen, client, enabled):
    ids = []
    for user in ("1", "2", "1", "1"):
        ids.append(issued(enabled, user, email=f"u{user}@example.com")[1])
        frozen.tick(timedelta(microseconds=1500))  # finer than a second
    assert [link["link_id"] for link in ledger(client)["links"]] == ids[::-1]

    first = ledger(client, user_id="1", limit=2)
    assert [link["link_id"] for link in first["links"]] == [ids[3], ids[2]]
    assert first["next"] == ids[2]
    second = ledger(client, user_id="1", limit=2, after=first["next"])
    assert second == {"links": [get(client, f"/v1/admin/links/{ids[0]}")], "next": None}

    assert void(client, ids[2]).status_code == 200
    assert [link["link_id"] for link in ledger(client, status="revoked")["links"]] == [ids[2]]
    active = ledger(client, status="active")["links"]
    assert [link["link_id"] for link in active] == [ids[3], ids[1], ids[0]]


def test_links_of_one_batch_share_their_time_and_are_ordered_by_id(client, enabled):
    items = [
        {
            "user_id": str(i),
            "email": f"u{i}@example.com",
            "recipients": {"to": [f"u{i}@example.com"]},
        }
        for i in range(5)
    ]
    answers = client.post(
        "/v1/links/batch", json={"items": items}, headers=auth("issuer-key")
    ).json["items"]
    ids = sorted((a["link_id"] for a in answers), reverse=True)
    listed = ledger(client)["links"]
    assert [link["link_id"] for link in listed] == ids
    assert len({link["issued_at"] for link in listed}) == 1


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"status": "void"}, "invalid_request"),
        ({"limit": "0"}, "invalid_request"),
        ({"limit": "501"}, "invalid_request"),
        ({"user_id": "a b"}, "invalid_request"),
        ({"after": "short"}, "invalid_request"),
        ({"after": "x" * 33}, "invalid_request"),
    ],
)
def test_a_bad_ledger_query_is_refused(client, query, code):
    response = client.get("/v1/admin/links", query_string=query, headers=ADMIN)
    assert_problem(response, 400, code)


def test_paging_after_a_link_not_in_the_ledger_is_link_not_found(client):
    response = client.get("/v1/admin/links", query_string={"after": "A" * 16}, headers=ADMIN)
    assert_problem(response, 404, "link_not_found")


def test_an_unknown_or_malformed_link(client):
    assert_problem(client.get("/v1/admin/links/" + "A" * 16, headers=ADMIN), 404, "link_not_found")
    assert_problem(
        client.get("/v1/admin/links/bad!id-but-long-enough", headers=ADMIN), 400, "invalid_request"
    )
    assert_problem(void(client, "A" * 16), 404, "link_not_found")
    assert_problem(void(client, "a.b"), 400, "invalid_request")


@pytest.mark.parametrize(
    "reference", ["", "x" * 129, "line\nbreak", "tab\there", "bell\x07", "del\x7f", 42, ["a"]]
)
def test_a_bad_reference_is_refused(enabled, reference):
    response = enabled.issue(reference=reference)
    assert_problem(response, 400, "invalid_request")
    assert "reference" in response.json["detail"]


def test_the_ledger_keeps_no_token_and_no_address(client, enabled, app):
    token, link_id = issued(enabled, reference="ticket 1")
    enabled.verify(token)
    text = str(get(client, f"/v1/admin/links/{link_id}"))
    assert token not in text and "alice@example.com" not in text


# -- voiding one link ------------------------------------------------------------


def test_voiding_one_link_leaves_every_other_link_of_the_user(frozen, client, enabled):
    leaked, leaked_id = issued(enabled)
    kept, _ = issued(enabled)
    answer = void(client, leaked_id, reason="forwarded to a stranger")
    assert answer.status_code == 200
    assert answer.json == {"link_id": leaked_id, "revoked_at": T0_ISO, "expired": False}
    assert_problem(enabled.verify(leaked), 401, "token_revoked")
    assert enabled.verify(kept).status_code == 200
    event = get(client, "/v1/admin/audit")["events"][0]
    assert (event["actor"], event["action"]) == ("admin-key", "link.revoke")
    assert event["detail"] == {
        "link_id": leaked_id,
        "reason": "forwarded to a stranger",
        "user_id": "42",
    }
    # The refusal is in the sign-in log, with its link.
    entry = get(client, "/v1/admin/signins")["signins"][1]
    assert (entry["outcome"], entry["link_id"]) == ("token_revoked", leaked_id)


def test_voiding_is_seen_by_another_worker_at_once(client, enabled, make_app):
    token, link_id = issued(enabled)
    other = make_app().test_client()
    assert (
        other.post(
            "/v1/tokens/verify", json={"token": token}, headers=auth("portal-key")
        ).status_code
        == 200
    )
    assert void(client, link_id).status_code == 200
    refused = other.post("/v1/tokens/verify", json={"token": token}, headers=auth("portal-key"))
    assert_problem(refused, 401, "token_revoked")


def test_voiding_an_expired_link_stores_nothing(frozen, client, enabled):
    _, link_id = issued(enabled, ttl_seconds=60)
    frozen.tick(timedelta(seconds=60 + 31))
    before = get(client, "/v1/admin/audit")["events"]
    answer = void(client, link_id)
    assert answer.status_code == 200
    assert answer.json["expired"] is True
    assert get(client, "/v1/admin/audit")["events"] == before


def test_a_void_belongs_to_its_tenant(client, enabled):
    made = client.post(
        "/v1/admin/tenants",
        json={"tenant_id": "acme", "portal_base_url": "https://acme.example.com", "reason": "t"},
        headers=ADMIN,
    )
    assert made.status_code == 201
    _, link_id = issued(enabled)
    assert_problem(
        client.get(f"/v1/tenants/acme/admin/links/{link_id}", headers=ADMIN), 404, "link_not_found"
    )
    response = client.post(
        f"/v1/tenants/acme/admin/links/{link_id}/revoke", json={"reason": "x"}, headers=ADMIN
    )
    assert_problem(response, 404, "link_not_found")
    assert get(client, f"/v1/admin/links/{link_id}")["status"] == "active"


def test_without_the_ledger_any_well_formed_id_is_voided(make_app):
    client = make_app(LINK_LEDGER=False).test_client()
    client.patch("/v1/admin/settings", json={"auto_login_enabled": True}, headers=ADMIN)
    response = client.post(
        "/v1/links",
        json={"user_id": "42", "email": "a@example.com", "recipients": {"to": ["a@example.com"]}},
        headers=auth("issuer-key"),
    )
    token = response.json["url"].split("auto_login=", 1)[1]
    assert get(client, "/v1/admin/links") == {"links": [], "next": None}
    assert void(client, response.json["link_id"]).json["expired"] is False
    assert void(client, "B" * 20).status_code == 200
    refused = client.post("/v1/tokens/verify", json={"token": token}, headers=auth("portal-key"))
    assert_problem(refused, 401, "token_revoked")


# -- scrub voids what it found ------------------------------------------------------


def test_scrub_with_revoke_voids_the_links_it_found(client, enabled):
    leaked, leaked_id = issued(enabled)
    kept, _ = issued(enabled)
    reply = (
        f"Thanks! > {PORTAL}/tickets/1?auto_login={leaked} and again {PORTAL}/?auto_login={leaked}"
    )
    answer = client.post(
        "/v1/scrub", json={"text": reply, "revoke": True}, headers=auth("issuer-key")
    ).json
    assert answer["removed"] == 2
    assert answer["revoked_link_ids"] == [leaked_id]
    assert_problem(enabled.verify(leaked), 401, "token_revoked")
    assert enabled.verify(kept).status_code == 200
    event = get(client, "/v1/admin/audit")["events"][0]
    assert (event["actor"], event["action"]) == ("issuer-key", "link.revoke")
    assert event["detail"]["reason"] == "found in a stored reply"


def test_scrub_without_revoke_voids_nothing(client, enabled):
    token, _ = issued(enabled)
    answer = client.post(
        "/v1/scrub", json={"text": f"{PORTAL}/?auto_login={token}"}, headers=auth("portal-key")
    ).json
    assert "revoked_link_ids" not in answer
    assert enabled.verify(token).status_code == 200


@pytest.mark.parametrize("revoke", ["yes", 1, None])
def test_scrub_s_revoke_must_be_a_boolean(client, revoke):
    response = client.post(
        "/v1/scrub", json={"text": "x", "revoke": revoke}, headers=auth("issuer-key")
    )
    assert_problem(response, 400, "invalid_request")
