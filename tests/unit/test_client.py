"""The email side's client: real links from the real service, the plain link on any failure."""

from __future__ import annotations

import json
import logging

import pytest

import service.client
from service.client import EmailLinkRequest, LinkClient
from tests.conftest import API_KEYS, PORTAL, LinkActions
from tests.support.gunicorn_server import free_port

ISSUER_KEY = API_KEYS["issuer-key"][0]


@pytest.fixture
def actions(service_app) -> LinkActions:
    return LinkActions(service_app.test_client())


def make_client(url: str, key: str = ISSUER_KEY, **options) -> LinkClient:
    return LinkClient(url, key, portal_base_url=PORTAL, **options)


def logged(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records)


def test_one_recipient_gets_a_token_link(service_url, actions, caplog):
    caplog.set_level(logging.DEBUG)
    actions.enable()
    with make_client(service_url) as client:
        link = client.link("42", "alice@example.com", to=["Alice@Example.com"], target="/tickets/1")
    assert link.auto_login is True
    assert link.reason is None
    assert link.url.startswith(f"{PORTAL}/tickets/1?auto_login=ey")
    assert link.expires_at.endswith("Z")
    assert str(link) == link.url
    token = link.url.split("auto_login=")[1]
    assert token not in logged(caplog)
    assert ISSUER_KEY not in logged(caplog)


def test_a_single_address_string_is_one_recipient(service_url, actions):
    actions.enable()
    with make_client(service_url) as client:
        link = client.link("42", "alice@example.com", to="alice@example.com")
    assert link.auto_login is True


@pytest.mark.parametrize(
    ("recipients", "reason"),
    (
        ({"to": ["alice@example.com"], "cc": ["bob@example.com"]}, "multiple_recipients"),
        ({"to": ["alice@example.com"], "bcc": ["audit@example.com"]}, "multiple_recipients"),
        ({"to": ["bob@example.com"]}, "recipient_mismatch"),
    ),
)
def test_the_service_decides_a_plain_link(service_url, actions, recipients, reason):
    actions.enable()
    with make_client(service_url) as client:
        link = client.link("42", "alice@example.com", target="/tickets/1", **recipients)
    assert (link.url, link.auto_login, link.reason) == (f"{PORTAL}/tickets/1", False, reason)


def test_disabled_is_a_plain_link(service_url):
    with make_client(service_url) as client:
        link = client.link("42", "alice@example.com", to=["alice@example.com"])
    assert (link.url, link.auto_login, link.reason) == (f"{PORTAL}/", False, "disabled")


def test_batch_answers_in_order_and_a_bad_item_fails_alone(service_url, actions, caplog):
    actions.enable()
    items = [
        EmailLinkRequest("42", "alice@example.com", to=["alice@example.com"], target="/a"),
        {"user_id": "43", "email": "bob@example.com", "to": ["bob@example.com"], "cc": ["x@y.z"]},
        EmailLinkRequest("44", "not-an-address", to=["not-an-address"], target="/c"),
        EmailLinkRequest("45", "eve@example.com", to=["eve@example.com"], target="//evil.test"),
    ]
    with make_client(service_url) as client:
        links = client.links(items)
    assert [(link.auto_login, link.reason) for link in links] == [
        (True, None),
        (False, "multiple_recipients"),
        (False, "service_error"),
        (False, "service_error"),
    ]
    assert links[0].url.startswith(f"{PORTAL}/a?auto_login=")
    assert [link.url for link in links[1:]] == [f"{PORTAL}/", f"{PORTAL}/c", f"{PORTAL}/"]
    assert "invalid_request" in logged(caplog)
    assert "user 44" in logged(caplog)


def test_a_large_batch_is_sent_in_chunks(service_url, actions, monkeypatch):
    actions.enable()
    monkeypatch.setattr(service.client, "BATCH_SIZE", 2)
    items = [
        EmailLinkRequest(str(i), f"u{i}@example.com", to=[f"u{i}@example.com"], target=f"/t/{i}")
        for i in range(5)
    ]
    with make_client(service_url) as client:
        links = client.links(items)
    assert [link.url.split("?")[0] for link in links] == [f"{PORTAL}/t/{i}" for i in range(5)]
    assert all(link.auto_login for link in links)


def test_sends_the_key_as_bearer_and_the_contract_body(canned):
    canned.body = json.dumps(
        {"url": f"{PORTAL}/t?auto_login=x", "auto_login": True, "reason": None, "expires_at": "Z"}
    ).encode()
    with make_client(canned.url) as client:
        client.link("42", "a@example.com", to=["a@example.com"], cc=["b@example.com"], target="/t")
        client.link("42", "a@example.com", to=["a@example.com"], ttl_seconds=600)
    first, second = canned.requests
    assert first["path"] == "/v1/links"
    assert first["authorization"] == f"Bearer {ISSUER_KEY}"
    assert first["json"] == {
        "user_id": "42",
        "email": "a@example.com",
        "recipients": {"to": ["a@example.com"], "cc": ["b@example.com"], "bcc": []},
        "target": "/t",
    }
    assert second["json"]["ttl_seconds"] == 600
    assert ISSUER_KEY not in repr(client)


# --- the service fails: the email still goes out, with the plain link ---------


def _fallback_case(request, canned, service_url):
    """Return the URL to call for each failure of the service."""
    case = request.param
    if case == "connection refused":
        return f"http://127.0.0.1:{free_port()}", "service_unavailable", "cannot connect"
    if case == "wrong key":
        return service_url, "service_error", "HTTP 401 unauthorized"
    canned.status, canned.body = {
        "503": (503, b'{"code": "store_unavailable"}'),
        "500 html": (500, b"<html>oops</html>"),
        "bad json": (200, b"{not json"),
        "json of the wrong shape": (200, b'{"link": "x"}'),
        "a list": (200, b"[]"),
        "link to another host": (200, b'{"url": "https://evil.test/t", "auto_login": false}'),
        "timeout": (200, b"{}"),
    }[case]
    canned.slow = case == "timeout"
    why = {
        "503": "HTTP 503 store_unavailable",
        "500 html": "HTTP 500, body is not JSON",
        "bad json": "HTTP 200, body is not JSON",
        "json of the wrong shape": "answer without url and auto_login",
        "a list": "answer is not a JSON object",
        "link to another host": "answer's link is not on the configured portal",
        "timeout": "timed out",
    }[case]
    reason = "service_error" if case == "link to another host" else "service_unavailable"
    return canned.url, reason, why


FAILURES = [
    "connection refused",
    "wrong key",
    "503",
    "500 html",
    "bad json",
    "json of the wrong shape",
    "a list",
    "link to another host",
    "timeout",
]


@pytest.fixture(params=FAILURES)
def failing(request, canned, service_url):
    return _fallback_case(request, canned, service_url)


def test_a_failing_service_gives_the_plain_link_and_logs_why(failing, caplog):
    caplog.set_level(logging.DEBUG)
    url, reason, why = failing
    key = "wrong-key-0123456789abcdefghijklmnop" if reason == "service_error" else ISSUER_KEY
    with make_client(url, key, connect_timeout=0.5, read_timeout=0.3) as client:
        link = client.link("42", "alice@example.com", to=["alice@example.com"], target="/t/9?x=1")
    assert (link.url, link.auto_login, link.reason) == (f"{PORTAL}/t/9?x=1", False, reason)
    assert link.expires_at is None
    record = next(r for r in caplog.records if r.name == "service.client")
    assert record.levelno == logging.WARNING
    assert why in record.getMessage()
    assert "plain link" in record.getMessage()
    assert key not in logged(caplog)


def test_a_failing_batch_gives_every_email_its_plain_link(caplog):
    url = f"http://127.0.0.1:{free_port()}"
    with make_client(url) as client:
        links = client.links(
            [
                EmailLinkRequest(str(i), "a@example.com", to=["a@example.com"], target=f"/{i}")
                for i in range(3)
            ]
        )
    assert [(link.url, link.reason) for link in links] == [
        (f"{PORTAL}/{i}", "service_unavailable") for i in range(3)
    ]
    # Only the client's own records: a server thread of an earlier test may still log.
    (record,) = [r for r in caplog.records if r.name == "service.client"]
    assert record.getMessage() == (
        "auto-login links for 3 emails: cannot connect; they get plain links"
    )


def test_a_batch_answer_of_the_wrong_length_is_not_trusted(canned):
    canned.body = json.dumps({"items": []}).encode()
    with make_client(canned.url) as client:
        links = client.links([EmailLinkRequest("1", "a@example.com", to=["a@example.com"])])
    assert [(link.url, link.reason) for link in links] == [(f"{PORTAL}/", "service_unavailable")]


@pytest.mark.parametrize("target", ["https://evil.test/", "//evil.test", "/\\evil.test", "x"])
def test_a_target_that_is_not_a_portal_path_is_never_sent_nor_linked(canned, target):
    with make_client(canned.url) as client:
        link = client.link("42", "a@example.com", to=["a@example.com"], target=target)
    assert (link.url, link.reason) == (f"{PORTAL}/", "service_error")
    assert canned.requests == []
