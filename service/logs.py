"""Structured logs that never hold a token, a signing secret or an API key.

Two pieces:

- :func:`install_redaction` wraps the process's log record factory, so every
  record of every logger (the service's, Flask's, gunicorn's access and error
  logs) is scrubbed when it is created, before any handler or formatter sees
  it. Anything shaped like a JWS, a bearer credential, a token parameter's
  value or a configured signing secret becomes ``[redacted]``.
- :func:`init_app` writes one JSON line per request: request id, method,
  route (the rule, never the raw path or query), status and duration.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterable
from typing import Any, cast

from flask import Flask, Response, g, request

from service.clock import utcnow

__all__ = ["JsonFormatter", "init_app", "install_redaction", "redact"]

REDACTED = "[redacted]"
# A compact JWS or JWE: base64url segments whose first starts like a JSON
# object ("eyJ"). Matches tokens of any service, ours included.
_JWS = re.compile(r"eyJ[A-Za-z0-9_-]{2,}(?:\.[A-Za-z0-9_-]*){1,4}")
# "Authorization: Bearer <anything>" and "Bearer <anything>".
_BEARER = re.compile(r"(?i)\b(bearer)(\s+|%20|\+)[^\s\"',;&]+")
# A development API key, wherever it appears.
_DEV_KEY = re.compile(r"dev-(?:admin|issuer|portal)-[A-Za-z0-9_-]{8,}")

_secrets: list[str] = []
_params: set[str] = {"auto_login", "token", "api_key", "key"}
_request_log = logging.getLogger("service.access")


def redact(text: str) -> str:
    """Return ``text`` with everything shaped like a credential replaced."""
    if not text:
        return text
    text = _JWS.sub(REDACTED, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _DEV_KEY.sub(REDACTED, text)
    for name in _params:
        if name + "=" in text:
            text = re.sub(rf"(\b{re.escape(name)}=)[^\s&\"'#]+", rf"\1{REDACTED}", text)
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def install_redaction(secrets: Iterable[str] = (), params: Iterable[str] = ()) -> None:
    """Scrub every log record of this process from now on (idempotent).

    :param secrets: literal values never to log (the signing secrets).
    :param params: query parameter names whose values are never logged.
    """
    for secret in secrets:
        if secret and secret not in _secrets:
            _secrets.append(secret)
    _params.update(params)
    factory = logging.getLogRecordFactory()
    if getattr(factory, "_redacting", False):
        return

    def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        if record.name == "service.access":
            return record  # built from the method, the route rule and the status only
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):
            message = str(record.msg)
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return record

    redacting_factory._redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(redacting_factory)


# One encoder for every line: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(default=str)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message and extra fields."""

    _second = -1
    _stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return self._time(record.created)

    def _time(self, created: float) -> str:
        # UTC, to the second; formatted once a second, not once a line.
        second = int(created)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
            self._second = second
        return self._stamp

    def format(self, record: logging.LogRecord) -> str:
        entry = self._entry(record.created, record.levelname, record.name, record.getMessage())
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["error"] = redact(self.formatException(record.exc_info))
        return _ENCODER.encode(entry)

    def _entry(self, created: float, level: str, name: str, message: str) -> dict[str, Any]:
        return {
            "time": self._time(created),
            "level": level.lower(),
            "logger": name,
            "message": message,
        }


_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Request ids: a random prefix per process and a counter. Unique across
# workers and restarts without a call to the kernel's random source per request.
_id_prefix = ""
_id_pid = 0
_id_counter = itertools.count(1)


def request_id(given: str | None) -> str:
    """Return the caller's X-Request-Id when well-formed, else a new unique id."""
    global _id_prefix, _id_pid, _id_counter
    if given and _REQUEST_ID.fullmatch(given):
        return given
    if _id_pid != os.getpid():
        _id_prefix, _id_pid, _id_counter = uuid.uuid4().hex[:16], os.getpid(), itertools.count(1)
    return f"{_id_prefix}-{next(_id_counter)}"


def log_request(rid: str, method: str, route: str, status: int, started: float | None) -> None:
    """Write the one structured line of a request."""
    if not _request_log.isEnabledFor(logging.INFO):
        return
    duration = round((time.perf_counter() - started) * 1000, 3) if started else None
    fields = {
        "request_id": rid,
        "method": method,
        "route": route,
        "status": status,
        "duration_ms": duration,
    }
    handler = _sole_handler()
    if handler is not None:
        # Nothing but our own handler would see the record: write its line
        # directly, the same line, without building a LogRecord and passing
        # it down the logger chain.
        created, message = utcnow().timestamp(), f"{method} {route} {status}"
        formatter = cast(JsonFormatter, handler.formatter)
        # Under the handler's lock, as logging formats: the formatter's
        # once-a-second time stamp is shared by every thread.
        with handler.lock:  # type: ignore[union-attr]
            entry = formatter._entry(created, "info", _request_log.name, message)
            entry.update(fields)
            try:
                handler.stream.write(_ENCODER.encode(entry) + handler.terminator)
                handler.stream.flush()
            except (OSError, ValueError):  # reported as StreamHandler.emit would
                handler.handleError(_request_record(method, route, status, fields))
        return
    _request_log.handle(_request_record(method, route, status, fields))


def _request_record(
    method: str, route: str, status: int, fields: dict[str, Any]
) -> logging.LogRecord:
    # makeRecord + handle rather than info(): the same record and handlers,
    # without the stack walk that finds the caller's file and line, which
    # would cost more than the rest of a fast request.
    return _request_log.makeRecord(
        _request_log.name,
        logging.INFO,
        __file__,
        0,
        "%s %s %s",
        (method, route, status),
        None,
        extra={"fields": fields},
    )


def _sole_handler() -> logging.StreamHandler[Any] | None:
    """The service's own JSON handler, when it is all a request line would reach.

    That is the configuration :func:`init_app` makes. Any other (a root
    handler, a filter, a record factory of somebody else's, pytest's
    ``caplog``) gets the record itself, through ``logging``.
    """
    logger: logging.Logger | None = _request_log
    if logger.disabled or getattr(logging.getLogRecordFactory(), "_redacting", False) is not True:
        return None
    found = None
    while logger is not None:
        if logger.filters:
            return None
        for handler in logger.handlers:
            if found is not None or not getattr(handler, "_autologin", False):
                return None
            found = handler
        if not logger.propagate:
            break
        logger = logger.parent
    if (
        type(found) is not logging.StreamHandler
        or found.filters
        or found.level > logging.INFO
        or type(found.formatter) is not JsonFormatter
    ):
        return None
    return found


def init_app(app: Flask, secrets: Iterable[str], token_param: str) -> None:
    """Install redaction, the JSON formatter, and the per-request log line."""
    install_redaction(secrets, [token_param])
    logger = logging.getLogger("service")
    if not any(getattr(h, "_autologin", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        handler._autologin = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        # Flask's default handler would print every record a second time.
        from flask.logging import default_handler

        logger.removeHandler(default_handler)

    @app.before_request
    def start_request() -> None:
        g.request_id = request_id(request.headers.get("X-Request-Id"))
        g.request_started = time.perf_counter()

    @app.after_request
    def log_each_request(response: Response) -> Response:
        rid = g.get("request_id", "-")
        response.headers["X-Request-Id"] = rid
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        log_request(rid, request.method, rule, response.status_code, g.get("request_started"))
        return response
