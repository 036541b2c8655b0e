"""However malformed the request, the answer is a 4xx problem document, never a 500."""

from __future__ import annotations

import io
import json

import pytest
from werkzeug.test import EnvironBuilder, run_wsgi_app

from tests.conftest import auth

KEY = auth("ops-key")  # every role: only the body is wrong
PROBLEM_FIELDS = {"type", "title", "status", "detail", "code"}
HUGE = "x" * 100_000

#: Every route that takes a body: (method, path).
BODY_ROUTES = (
    ("POST", "/v1/links"),
    ("POST", "/v1/links/batch"),
    ("POST", "/v1/tokens/verify"),
    ("PATCH", "/v1/admin/settings"),
    ("POST", "/v1/admin/epoch/bump"),
    ("POST", "/v1/admin/users/42/revoke"),
    ("POST", "/v1/scrub"),
)
ROUTE_PARAMS = [pytest.param(method, path, id=f"{method} {path}") for method, path in BODY_ROUTES]


def send(client, method, path, data: bytes | str, **headers):
    headers = {**KEY, "Content-Type": "application/json", **headers}
    return client.open(path, method=method, data=data, headers=headers)


def assert_problem(response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.json
    assert set(body) >= PROBLEM_FIELDS
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert "Traceback" not in response.get_data(as_text=True)
    if code is not None:
        assert body["code"] == code


# -- bodies that are not a JSON object ------------------------------------------

NOT_AN_OBJECT = {
    "empty": b"",
    "not-json": b"not json",
    "truncated": b'{"user_id": "42"',
    "single-quotes": b"{'user_id': '42'}",
    "trailing-comma": b'{"user_id": "42",}',
    "invalid-utf8": b'{"user_id": "\xff\xfe"}',
    "invalid-utf8-only": b"\xff\xfe\xfd",
    "array": b"[]",
    "array-of-object": b'[{"user_id": "42"}]',
    "string": b'"hello"',
    "null": b"null",
    "true": b"true",
    "zero": b"0",
    "float": b"-1.5e3",
    "NaN": b"NaN",
    "Infinity": b"Infinity",
    "-Infinity": b"-Infinity",
    "NaN-in-object": b'{"ttl_seconds": NaN, "reason": "x", "token": "x"}',
    "Infinity-in-object": b'{"token_ttl_seconds": Infinity}',
    "deep-nesting": b"[" * 100_000,
    "deep-nesting-in-object": b'{"items": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "5000-digit-integer": b'{"ttl_seconds": ' + b"9" * 5000 + b"}",
    "5000-digit-integer-alone": b"1" * 5000,
    "two-objects": b"{}{}",
    "nul-byte": b"{\x00}",
}


@pytest.mark.parametrize("data", NOT_AN_OBJECT.values(), ids=NOT_AN_OBJECT.keys())
@pytest.mark.parametrize(("method", "path"), ROUTE_PARAMS)
def test_a_body_that_is_not_a_json_object_is_invalid_json(client, method, path, data):
    assert_problem(send(client, method, path, data), 400, "invalid_json")


@pytest.mark.parametrize(("method", "path"), ROUTE_PARAMS)
def test_a_body_over_1_mib_is_payload_too_large(client, method, path):
    data = b'{"text": "' + b"x" * (2 * 1024 * 1024) + b'"}'

    assert_problem(send(client, method, path, data), 413, "payload_too_large")


@pytest.mark.parametrize(("method", "path"), ROUTE_PARAMS)
def test_a_body_just_over_1_mib_is_payload_too_large(client, method, path):
    assert_problem(send(client, method, path, b" " * (1024 * 1024 + 1)), 413, "payload_too_large")


def send_chunked(client, method, path, data: bytes):
    """Send a body without Content-Length, as a chunked request reaches the app."""
    headers = {**KEY, "Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    environ = EnvironBuilder(path=path, method=method, headers=headers).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input"] = io.BytesIO(data)
    environ["wsgi.input_terminated"] = True  # the server says where the body ends
    # Straight to the app: the test client would build the request anew, with a length.
    app = client.application
    body, status, response_headers = run_wsgi_app(app, environ, buffered=True)
    return app.response_class(b"".join(body), status=status, headers=response_headers)


@pytest.mark.parametrize(("method", "path"), ROUTE_PARAMS)
def test_a_chunked_body_over_1_mib_is_payload_too_large_not_cut_short(client, method, path):
    # Its first MiB alone is a valid request: cut there, it would be obeyed.
    data = b'{"reason": "padded", "text": "x"}' + b" " * (2 * 1024 * 1024) + b"garbage"
    assert_problem(send_chunked(client, method, path, data), 413, "payload_too_large")
    assert client.get("/v1/admin/epoch", headers=KEY).json["epoch"] == 1


def test_a_chunked_body_of_exactly_1_mib_is_read_whole(client):
    head = b'{"reason": "exactly one MiB"'
    data = head + b" " * (1024 * 1024 - len(head) - 1) + b"}"
    assert len(data) == 1024 * 1024
    response = send_chunked(client, "POST", "/v1/admin/epoch/bump", data)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json["reason"] == "exactly one MiB"


@pytest.mark.parametrize("content_type", ("text/plain", "application/x-www-form-urlencoded", None))
def test_the_content_type_does_not_make_a_json_object_of_bad_bodies(client, content_type):
    headers = {**KEY}
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post("/v1/links", data=b"user_id=42", headers=headers)

    assert_problem(response, 400, "invalid_json")


# -- wrong types and sizes, field by field --------------------------------------

LINK = {"user_id": "42", "email": "alice@example.com", "recipients": {"to": ["alice@example.com"]}}
#: (method, path, body (raw JSON text when a str), status, code)
FIELD_CASES = [
    # /v1/links
    ("POST", "/v1/links", {**LINK, "user_id": 42}, 400, "invalid_request"),
    ("POST", "/v1/links", {**LINK, "user_id": None}, 400, "invalid_request"),
    ("POST", "/v1/links", {**LINK, "user_id": ["42"]}, 400, "invalid_request"),
    ("POST", "/v1/links", {**LINK, "user_id": {"id": "42"}}, 400, "invalid_request"),
    ("POST", "/v1/links", {**LINK, "user_id": HUGE}, 400, "invalid_request"),
    ("POST", "/v1/links", {**LINK, "email": 42}, 400, "invalid_request"),
    ("POST", "/v1/links", {**LINK, "email": HUGE}, 400, "invalid_request"),
    ("POST", "/v1/links", {**LINK, "email": "a@" + HUGE + ".test"}, 400, "invalid_request"),
    ("POST", "/v1/links", {**LINK, "recipients": 42}, 400, "invalid_request"),
    ("POST", "/v1/links", {**LINK, "recipients": {"to": [HUGE]}}, 400, "invalid_request"),
    ("POST", "/v1/links", {**LINK, "recipients": {"to": [[]]}}, 400, "invalid_request"),
    ("POST", "/v1/links", {**LINK, "recipients": {"to": [], "cc": 5}}, 400, "invalid_request"),
    ("POST", "/v1/links", {**LINK, "target": 42}, 400, "invalid_request"),
    ("POST", "/v1/links", {**LINK, "target": "/" + HUGE}, 400, "invalid_target"),
    ("POST", "/v1/links", {**LINK, "target": ["/"]}, 400, "invalid_request"),
    ("POST", "/v1/links", {**LINK, "ttl_seconds": "60"}, 400, "invalid_request"),
    ("POST", "/v1/links", {**LINK, "ttl_seconds": [60]}, 400, "invalid_request"),
    (
        "POST",
        "/v1/links",
        json.dumps(LINK)[:-1] + ', "ttl_seconds": 1e400}',
        400,
        "invalid_request",
    ),
    ("POST", "/v1/links", {**LINK, "ttl_seconds": 10**100}, 400, "invalid_ttl"),
    # /v1/links/batch
    ("POST", "/v1/links/batch", {"items": 42}, 400, "invalid_request"),
    ("POST", "/v1/links/batch", {"items": HUGE}, 400, "invalid_request"),
    ("POST", "/v1/links/batch", {"items": {"0": LINK}}, 400, "invalid_request"),
    # /v1/tokens/verify
    ("POST", "/v1/tokens/verify", {"token": 42}, 400, "invalid_request"),
    ("POST", "/v1/tokens/verify", {"token": None}, 400, "invalid_request"),
    ("POST", "/v1/tokens/verify", {"token": ["eyJ"]}, 400, "invalid_request"),
    ("POST", "/v1/tokens/verify", {"token": HUGE}, 401, "token_invalid"),
    ("POST", "/v1/tokens/verify", {"token": "x", "client": 42}, 400, "invalid_request"),
    ("POST", "/v1/tokens/verify", {"token": "x", "client": [HUGE]}, 400, "invalid_request"),
    ("POST", "/v1/tokens/verify", {"token": "x", "client": {"ip": HUGE}}, 400, "invalid_request"),
    (
        "POST",
        "/v1/tokens/verify",
        {"token": "x", "client": {"user_agent": HUGE}},
        400,
        "invalid_request",
    ),
    ("POST", "/v1/tokens/verify", {"token": "x", "client": {HUGE: "x"}}, 400, "invalid_request"),
    # PATCH /v1/admin/settings
    ("PATCH", "/v1/admin/settings", {"auto_login_enabled": "true"}, 400, "invalid_setting"),
    ("PATCH", "/v1/admin/settings", {"auto_login_enabled": HUGE}, 400, "invalid_setting"),
    ("PATCH", "/v1/admin/settings", {"token_ttl_seconds": "3600"}, 400, "invalid_setting"),
    ("PATCH", "/v1/admin/settings", '{"token_ttl_seconds": 1e400}', 400, "invalid_setting"),
    ("PATCH", "/v1/admin/settings", {"token_ttl_seconds": 10**100}, 400, "invalid_setting"),
    ("PATCH", "/v1/admin/settings", {HUGE: True}, 400, "invalid_setting"),
    # epoch bump and user revoke
    ("POST", "/v1/admin/epoch/bump", {"reason": 42}, 400, "invalid_request"),
    ("POST", "/v1/admin/epoch/bump", {"reason": None}, 400, "invalid_request"),
    ("POST", "/v1/admin/epoch/bump", {"reason": HUGE}, 400, "invalid_request"),
    ("POST", "/v1/admin/users/42/revoke", {"reason": ["x"]}, 400, "invalid_request"),
    ("POST", "/v1/admin/users/42/revoke", {"reason": HUGE}, 400, "invalid_request"),
    (
        "POST",
        "/v1/admin/users/" + "a" * 10_000 + "/revoke",
        {"reason": "x"},
        400,
        "invalid_request",
    ),
    # /v1/scrub
    ("POST", "/v1/scrub", {"text": 42}, 400, "invalid_request"),
    ("POST", "/v1/scrub", {"text": "x", "content_type": 42}, 400, "invalid_request"),
    ("POST", "/v1/scrub", {"text": "x", "content_type": "image/png"}, 400, "invalid_request"),
]


def _field_params():
    for method, path, body, status, code in FIELD_CASES:
        marks = []
        shown = body if isinstance(body, str) else json.dumps(body)
        label = shown if len(shown) < 60 else shown[:40] + f"...({len(shown)})"
        yield pytest.param(method, path, body, status, code, marks=marks, id=f"{path} {label}")


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), list(_field_params()))
def test_a_wrong_type_or_size_of_a_field_is_a_4xx_problem(client, method, path, body, status, code):
    response = send(client, method, path, body if isinstance(body, str) else json.dumps(body))

    assert_problem(response, status, code)


# -- strings that are not Unicode ------------------------------------------------

#: A lone UTF-16 surrogate: not a Unicode string, and no store can encode it.
LONE_SURROGATES = {
    "escaped": b'"\\ud800"',  # valid JSON text
    # Not UTF-8 (RFC 3629), though json.loads(bytes) would decode it with "surrogatepass".
    "utf8-bytes": b'"\xed\xa0\x80"',
}
SURROGATE_CASES = [
    ("POST", "/v1/links", '{"user_id": %s, "email": "a@b.cd", "recipients": {"to": []}}'),
    ("POST", "/v1/links", '{"user_id": "1", "email": "a@b.cd", "recipients": {"to": [%s]}}'),
    ("POST", "/v1/links", '{"user_id": "42", "email": "a@b.cd", "target": %s}'),
    ("POST", "/v1/links/batch", '{"items": [{"user_id": %s}]}'),
    ("POST", "/v1/tokens/verify", '{"token": %s}'),
    ("POST", "/v1/tokens/verify", '{"token": "x", "client": {"ip": %s}}'),
    ("POST", "/v1/tokens/verify", '{"token": "x", "client": {"user_agent": %s}}'),
    ("PATCH", "/v1/admin/settings", "{%s: true}"),
    ("POST", "/v1/admin/epoch/bump", '{"reason": %s}'),
    ("POST", "/v1/admin/users/42/revoke", '{"reason": %s}'),
]


@pytest.mark.parametrize("surrogate", LONE_SURROGATES.values(), ids=LONE_SURROGATES.keys())
@pytest.mark.parametrize(
    ("method", "path", "template"),
    [pytest.param(*case, id=f"{case[1]} {case[2]}") for case in SURROGATE_CASES],
)
def test_a_lone_surrogate_in_a_string_is_invalid_json(
    links, client, method, path, template, surrogate
):
    """Once a 500: PyJWT, sqlite3 and redis-py raise UnicodeEncodeError on it."""
    links.enable()
    token = links.token()  # a genuine token, so that the client fields reach the log
    data = template.encode().replace(b"%s", surrogate)
    data = data.replace(b'"token": "x"', f'"token": "{token}"'.encode())

    response = send(client, method, path, data)

    assert_problem(response, 400, "invalid_json")


# -- paths and methods ------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    (
        "/",
        "/nope",
        "/v1",
        "/v1/",
        "/v1/links/",
        "/v1/links/x",
        "/v1/tokens",
        "/v1/admin",
        "/v1/admin/nope",
        "/v1/admin/users/42",
        "/v1/admin/users/42/revoke/now",
        "/v2/links",
        "/healthz/x",
        "/%ff",
    ),
)
@pytest.mark.parametrize("headers", ({}, KEY), ids=["no-key", "with-key"])
def test_unknown_path_is_404_problem(client, path, headers):
    response = client.get(path, headers=headers)

    assert_problem(response, 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    (
        ("GET", "/v1/links"),
        ("PUT", "/v1/links"),
        ("DELETE", "/v1/links"),
        ("GET", "/v1/links/batch"),
        ("GET", "/v1/tokens/verify"),
        ("PUT", "/v1/tokens/verify"),
        ("POST", "/v1/admin/settings"),
        ("PUT", "/v1/admin/settings"),
        ("DELETE", "/v1/admin/settings"),
        ("POST", "/v1/admin/epoch"),
        ("GET", "/v1/admin/epoch/bump"),
        ("GET", "/v1/admin/users/42/revoke"),
        ("POST", "/v1/admin/audit"),
        ("DELETE", "/v1/admin/signins"),
        ("POST", "/healthz"),
        ("POST", "/readyz"),
        ("DELETE", "/metrics"),
    ),
)
@pytest.mark.parametrize("headers", ({}, KEY), ids=["no-key", "with-key"])
def test_wrong_method_is_405_problem_with_allow(client, method, path, headers):
    response = client.open(path, method=method, headers=headers)

    assert_problem(response, 405, "method_not_allowed")
    assert method not in response.headers["Allow"]


@pytest.mark.parametrize("path", ("/healthz", "/readyz"))
def test_health_and_readiness_answer_200(client, path):
    response = client.get(path)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
