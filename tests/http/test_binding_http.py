"""Bound to the first browser, and role mailboxes: both settings, on SQLite and Redis."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.conftest import auth
from tests.support.tenants import ADMIN, assert_problem, get

PHONE = "phone-device-id-0123456789"
LAPTOP = "laptop-device-id-0123456789"


def settings(client, **changes):
    response = client.patch("/v1/admin/settings", json=changes, headers=ADMIN)
    assert response.status_code == 200, response.json
    return response.json


def token_and_id(enabled, user_id="42", **body):
    response = enabled.issue(user_id, **body)
    assert response.json["auto_login"] is True, response.json
    return response.json["url"].split("auto_login=", 1)[1], response.json["link_id"]


def click(enabled, token, device=None, **client):
    if device is not None:
        client["device"] = device
    return enabled.verify(token, client=client) if client else enabled.verify(token)


# -- bound to the first browser --------------------------------------------------


def test_binding_is_off_by_default_and_any_browser_signs_in(client, enabled):
    assert get(client, "/v1/admin/settings")["bind_to_first_device"] is False
    token, _ = token_and_id(enabled)
    assert click(enabled, token, PHONE).status_code == 200
    assert click(enabled, token, LAPTOP).status_code == 200
    assert click(enabled, token).status_code == 200


def test_the_first_browser_keeps_the_link_and_the_second_is_refused(client, enabled):
    settings(client, bind_to_first_device=True)
    token, link_id = token_and_id(enabled)
    assert click(enabled, token, PHONE, ip="203.0.113.7").status_code == 200
    assert click(enabled, token, PHONE).status_code == 200
    refused = click(enabled, token, LAPTOP, ip="198.51.100.1")
    assert_problem(refused, 401, "token_bound_elsewhere")
    entry = get(client, "/v1/admin/signins")["signins"][0]
    assert (entry["outcome"], entry["link_id"], entry["ip"]) == (
        "token_bound_elsewhere",
        link_id,
        "198.51.100.1",
    )
    link = get(client, f"/v1/admin/links/{link_id}")
    assert (link["bound"], link["uses"], link["last_ip"]) == (True, 2, None)


def test_a_link_binds_only_once_it_signs_someone_in(client, enabled):
    settings(client, bind_to_first_device=True)
    token, link_id = token_and_id(enabled)
    enabled.revoke("42")
    assert_problem(click(enabled, token, PHONE), 401, "token_revoked")
    assert get(client, f"/v1/admin/links/{link_id}")["bound"] is False
    other, other_id = token_and_id(enabled)
    assert click(enabled, other, LAPTOP).status_code == 200
    assert get(client, f"/v1/admin/links/{other_id}")["bound"] is True


def test_a_device_is_required_while_binding_is_on(client, enabled):
    settings(client, bind_to_first_device=True)
    token, _ = token_and_id(enabled)
    response = click(enabled, token)
    assert_problem(response, 400, "invalid_request")
    assert "client.device" in response.json["detail"]
    response = click(enabled, token, ip="203.0.113.7")
    assert_problem(response, 400, "invalid_request")


@pytest.mark.parametrize(
    "device", ["short", "x" * 129, "has spaces in it ok", "dots.are.not.base64url", 42, True]
)
@pytest.mark.parametrize("bind", [False, True])
def test_a_malformed_device_is_refused_whatever_the_setting(client, enabled, device, bind):
    settings(client, bind_to_first_device=bind)
    token, _ = token_and_id(enabled)
    response = click(enabled, token, device)
    assert_problem(response, 400, "invalid_request")
    assert "client.device" in response.json["detail"]


def test_turning_binding_off_stops_the_check_and_on_again_restores_it(client, enabled):
    settings(client, bind_to_first_device=True)
    token, _ = token_and_id(enabled)
    assert click(enabled, token, PHONE).status_code == 200
    settings(client, bind_to_first_device=False)
    assert click(enabled, token, LAPTOP).status_code == 200
    settings(client, bind_to_first_device=True)
    assert_problem(click(enabled, token, LAPTOP), 401, "token_bound_elsewhere")
    assert click(enabled, token, PHONE).status_code == 200


def test_a_device_id_is_never_stored_or_shown(client, enabled, app):
    settings(client, bind_to_first_device=True)
    token, link_id = token_and_id(enabled)
    click(enabled, token, PHONE)
    shown = str(get(client, f"/v1/admin/links/{link_id}")) + str(get(client, "/v1/admin/signins"))
    assert PHONE not in shown
    store_url = app.config.get("STORE_URL") or ""
    if store_url.startswith("sqlite:///"):  # the file and its write-ahead log
        path = Path(store_url[len("sqlite:///") :])
        for part in (path, path.with_name(path.name + "-wal")):
            assert not part.exists() or PHONE.encode() not in part.read_bytes()


def test_of_many_first_uses_at_once_on_two_workers_exactly_one_binds(client, enabled, make_app):
    """Twelve browsers click one link at once, through two apps (two workers)."""
    settings(client, bind_to_first_device=True)
    token, link_id = token_and_id(enabled)
    workers = [make_app().test_client(), make_app().test_client()]
    start = threading.Barrier(12)
    codes: list[int] = []
    lock = threading.Lock()

    def first_use(i: int) -> None:
        worker = workers[i % 2]
        start.wait()
        response = worker.post(
            "/v1/tokens/verify",
            json={"token": token, "client": {"device": f"browser-{i:02d}-0123456789abcdef"}},
            headers=auth("portal-key"),
        )
        with lock:
            codes.append(response.status_code)

    threads = [threading.Thread(target=first_use, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [200] + [401] * 11
    assert get(client, f"/v1/admin/links/{link_id}")["bound"] is True


@pytest.mark.parametrize("value", [1, "true", None, [True]])
def test_bind_to_first_device_must_be_a_boolean(client, value):
    response = client.patch(
        "/v1/admin/settings", json={"bind_to_first_device": value}, headers=ADMIN
    )
    assert_problem(response, 400, "invalid_setting")


# -- role mailboxes ------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "support@example.com",
        "Support@Example.com",
        "support+tickets@example.com",
        "INFO+x@example.com",
    ],
)
def test_a_role_mailbox_gets_the_plain_link(enabled, address):
    response = enabled.issue("42", email=address)
    assert response.status_code == 200
    assert (response.json["auto_login"], response.json["reason"]) == (False, "role_mailbox")
    assert response.json["link_id"] is None


def test_the_reasons_come_in_the_contract_s_order(links, enabled):
    two = {"to": ["support@example.com", "alice@example.com"]}
    assert enabled.issue(email="support@example.com", recipients=two).json["reason"] == (
        "multiple_recipients"
    )
    one = {"to": ["bob@example.com"]}
    assert enabled.issue(email="support@example.com", recipients=one).json["reason"] == (
        "recipient_mismatch"
    )
    links.enable(False)
    assert enabled.issue(email="support@example.com").json["reason"] == "disabled"


def test_the_default_list_holds_rfc_2142_and_the_common_names(client):
    names = get(client, "/v1/admin/settings")["role_mailboxes"]
    for name in ("info", "support", "sales", "abuse", "postmaster", "noreply", "helpdesk", "it"):
        assert name in names
    assert names == sorted(set(names))


def test_an_admin_edits_the_list(client, enabled):
    answer = settings(client, role_mailboxes=["team", "alice", "team"])
    assert answer["role_mailboxes"] == ["alice", "team"]
    assert enabled.issue(email="alice+x@example.com").json["reason"] == "role_mailbox"
    assert enabled.issue(email="support@example.com").json["auto_login"] is True
    event = get(client, "/v1/admin/audit")["events"][0]
    assert event["detail"] == {"role_mailboxes": ["alice", "team"]}
    assert settings(client, role_mailboxes=[])["role_mailboxes"] == []
    assert enabled.issue(email="alice@example.com").json["auto_login"] is True


@pytest.mark.parametrize(
    "value",
    [
        "support",
        ["Support"],
        ["support@example.com"],
        ["a+b"],
        [""],
        ["x" * 65],
        ["ok", 3],
        [f"n{i}" for i in range(201)],
        None,
    ],
)
def test_a_bad_role_mailbox_list_is_refused(client, value):
    response = client.patch("/v1/admin/settings", json={"role_mailboxes": value}, headers=ADMIN)
    assert_problem(response, 400, "invalid_setting")
    assert "role_mailboxes" in response.json["detail"]
