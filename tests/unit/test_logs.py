"""Log redaction and the structured request line."""

from __future__ import annotations

import json
import logging

import pytest

from service.logs import REDACTED, JsonFormatter, install_redaction, redact

TOKEN = (
    "eyJhbGciOiJIUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0"
    ".eyJzdWIiOiI0MiJ9.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU"
)


@pytest.mark.parametrize(
    "text",
    (
        f"verify {TOKEN}",
        f"GET /tickets/1?auto_login={TOKEN} HTTP/1.1",
        "GET /tickets/1?tab=x&auto_login=not-even-a-jwt HTTP/1.1",
        "Authorization: Bearer test-issuer-0123456789abcdefghijklmnop",
        "bearer%20abc.def",
        "key dev-admin-ce6dHri4VS7YC5qycR9d9IPsSfiiPb77 printed",
        "five segments eyJhbGciOiJkaXIifQ..abc.def.ghi",
    ),
)
def test_credential_shapes_are_redacted(text):
    clean = redact(text)
    assert REDACTED in clean
    assert TOKEN not in clean
    assert "0123456789abcdefghijklmnop" not in clean
    assert "not-even-a-jwt" not in clean
    assert "ce6dHri4VS7YC5qycR9d9IPsSfiiPb77" not in clean


@pytest.mark.parametrize(
    "text",
    (
        "token refused: expired (user 42)",
        "GET /v1/links 200",
        "store unavailable: Error 111 connecting to 127.0.0.1:6379",
        "created a new store under 'autologin:'",
    ),
)
def test_ordinary_messages_are_left_alone(text):
    assert redact(text) == text


def test_configured_secrets_are_redacted_in_every_record(caplog):
    secret = "a-configured-signing-secret-0123456789abcdef"
    install_redaction([secret])
    with caplog.at_level(logging.INFO):
        logging.getLogger("some.library").info("connecting with %s", secret)
        logging.getLogger("gunicorn.access").info(
            "%(r)s", {"r": f"GET /x?auto_login={TOKEN} HTTP/1.1"}
        )
    text = caplog.text
    assert secret not in text
    assert TOKEN not in text
    assert text.count(REDACTED) == 2


def test_json_formatter_writes_one_object_a_line_with_fields():
    record = logging.LogRecord("service.access", logging.INFO, __file__, 1, "GET %s", ("/x",), None)
    record.fields = {"request_id": "abc", "status": 200}
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert "\n" not in line
    assert entry["message"] == "GET /x"
    assert entry["request_id"] == "abc"
    assert entry["status"] == 200
    assert entry["level"] == "info"
