"""Log redaction and the structured request line."""

from __future__ import annotations

import json
import logging

import pytest
from freezegun import freeze_time

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


@pytest.fixture
def request_lines(monkeypatch):
    """The service's own log handler, as init_app makes it, writing into a buffer."""
    import io

    from flask import Flask

    from service.logs import init_app

    init_app(Flask(__name__), [], "auto_login")
    [handler] = [h for h in logging.getLogger("service").handlers if h._autologin]
    buffer = io.StringIO()
    monkeypatch.setattr(handler, "stream", buffer)
    return buffer


def only_ours(monkeypatch):
    """Take pytest's capture handlers off the root logger (it adds them per test phase)."""
    monkeypatch.setattr(logging.getLogger(), "handlers", [])


def test_a_request_line_written_directly_is_the_line_logging_would_write(
    request_lines, monkeypatch
):
    from service.logs import log_request

    only_ours(monkeypatch)
    access = logging.getLogger("service.access")
    records = []
    with monkeypatch.context() as patch, freeze_time("2026-11-25 10:00:00"):
        patch.setattr(access, "makeRecord", lambda *a, **k: records.append(a))
        log_request("rid-1", "POST", "/v1/tokens/verify", 200, None)
    assert records == []  # no LogRecord was built
    direct = request_lines.getvalue()
    assert json.loads(direct)["time"] == "2026-11-25T10:00:00Z"  # the service's one clock
    record = logging.getLogger("service.access").makeRecord(
        "service.access", logging.INFO, __file__, 0, "%s %s %s", ("POST", "/v1/tokens/verify", 200),
        None, extra={"fields": {"request_id": "rid-1", "method": "POST",
                                "route": "/v1/tokens/verify", "status": 200, "duration_ms": None}},
    )  # fmt: skip
    through_logging = JsonFormatter().format(record) + "\n"
    assert direct.endswith("\n") and direct.count("\n") == 1
    assert list(json.loads(direct)) == list(json.loads(through_logging))
    strip_time = lambda line: {k: v for k, v in json.loads(line).items() if k != "time"}  # noqa: E731
    assert strip_time(direct) == strip_time(through_logging)


def test_a_request_line_reaches_any_other_handler_through_logging(request_lines, monkeypatch):
    from service.logs import log_request

    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record)

    monkeypatch.setattr(logging.getLogger(), "handlers", [Keep()])
    log_request("rid-2", "GET", "/healthz", 200, None)
    assert [r.fields["request_id"] for r in seen] == ["rid-2"]
    assert json.loads(request_lines.getvalue())["request_id"] == "rid-2"  # ours wrote it too


def test_a_request_line_that_cannot_be_written_is_reported_not_raised(
    request_lines, monkeypatch, capsys
):
    from service.logs import log_request

    only_ours(monkeypatch)
    request_lines.close()  # writing raises ValueError now
    log_request("rid-3", "GET", "/healthz", 200, None)
    assert "Logging error" in capsys.readouterr().err
