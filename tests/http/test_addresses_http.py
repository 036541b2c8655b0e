"""Addresses: the service refuses exactly what the document's Email pattern refuses.

The local part is RFC 5322's dot-atom: ``atext`` characters with single dots
between them, never a dot first, last or twice in a row. A generic OpenAPI
client found ``Du.@example.com`` accepted while the document called it
invalid; this table keeps the two in step, for ``email``, every recipient
list and a batch item.
"""

from __future__ import annotations

import json

import pytest

from service.api.ops import openapi_document
from tests.conftest import auth
from tests.http.test_openapi_http import validator

ADDRESSES = [
    ("alice@example.com", True),
    ("Alice@Example.COM", True),
    ("a.b.c@example.com", True),
    ("o'hara+tag@example.com", True),
    ("!#$%&'*+/=?^_`{|}~-@example.com", True),
    ("a" * 64 + "@example.com", True),
    ("a." * 31 + "ab@example.com", True),  # 64 characters
    ("Du.@example.com", False),
    (".du@example.com", False),
    ("d..u@example.com", False),
    (".@example.com", False),
    ("..@example.com", False),
    ("a" * 65 + "@example.com", False),
    ("a." * 32 + "a@example.com", False),  # 65 characters
    ("@example.com", False),
    ("alice@localhost", False),
    ("alice@.example.com", False),
    ("alice@example..com", False),
    ("alice@-example.com", False),
    ("alice@example.com.", False),
    ("a@b@example.com", False),
    ('"a b"@example.com', False),
    ("Alice <alice@example.com>", False),
    ("alice@example.com\n", False),
    ("alicé@example.com", False),
    ("a@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 63 + "." + "e" * 60, True),  # 254
    ("a@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 63 + "." + "e" * 61, False),  # 255
    ("a@" + "b" * 64 + ".example.com", False),
]
IDS = [json.dumps(address)[:50] for address, _ in ADDRESSES]


@pytest.fixture
def client(service_app):
    service_app.config["TESTING"] = True
    return service_app.test_client()


def _issue(client, email: str, recipient: str, field: str = "to"):
    body = {"user_id": "42", "email": email, "recipients": {"to": [], field: [recipient]}}
    return client.post("/v1/links", json=body, headers=auth("issuer-key"))


@pytest.mark.parametrize(("address", "valid"), ADDRESSES, ids=IDS)
def test_the_document_says_what_the_service_does(address, valid):
    # validator() reads the pattern as JSON Schema does (ECMA 262: a closing
    # $ is the end of the string, so a final newline is refused too).
    schema = validator(openapi_document(), "#/components/schemas/Email")
    assert schema.is_valid(address) == valid


@pytest.mark.parametrize(("address", "valid"), ADDRESSES, ids=IDS)
def test_email_field(client, address, valid):
    response = _issue(client, address, "alice@example.com")
    if valid:
        assert response.status_code == 200, response.json
        assert response.json["reason"] in ("disabled", "recipient_mismatch")
    else:
        assert (response.status_code, response.json["code"]) == (400, "invalid_request")
        assert response.json["detail"].startswith("email:")


@pytest.mark.parametrize("field", ("to", "cc", "bcc"))
@pytest.mark.parametrize(("address", "valid"), ADDRESSES, ids=IDS)
def test_recipient_lists(client, field, address, valid):
    response = _issue(client, "alice@example.com", address, field)
    if valid:
        assert response.status_code == 200, response.json
    else:
        assert (response.status_code, response.json["code"]) == (400, "invalid_request")
        assert response.json["detail"].startswith(f"recipients.{field}[0]:")


def test_batch_item_with_an_invalid_address_is_an_error_item(client):
    good = {"user_id": "42", "email": "a.b@example.com", "recipients": {"to": ["a.b@example.com"]}}
    bad = {**good, "email": "Du.@example.com"}
    response = client.post(
        "/v1/links/batch", json={"items": [good, bad]}, headers=auth("issuer-key")
    )
    assert response.status_code == 200
    first, second = response.json["items"]
    assert "url" in first
    assert second["error"]["code"] == "invalid_request"
    assert second["error"]["detail"].startswith("email:")
