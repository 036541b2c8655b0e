"""A bounded Schemathesis run of the app against its own OpenAPI document, in process.

Every operation of ``service/openapi.json`` (the very file ``GET /openapi.json``
serves, checked below) gets a small number of generated requests: the
document's examples, Schemathesis' coverage cases and fuzzed ones, sent over
WSGI with an API key that holds every role. No answer may be a server error,
and each must keep to the document: a documented status code, content type
and body schema.

The app runs on a fresh SQLite store (no Redis needed) with auto-login switched
on, so ``POST /v1/links`` answers token links as well as plain ones.

``schemathesis.pytest.from_fixture`` would build the schema from an app fixture,
but on pytest 9.2 it fails (it reads ``Function._nodeid``, which pytest
removed); the schema is therefore loaded from the document itself and each
case is sent to the fixture's app with ``call_and_validate(app=...)``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from service.api.ops import openapi_document
from tests.conftest import auth

#: Generated requests per operation: enough to find a contradiction, few enough for CI.
MAX_EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
#: A target the document's Target pattern allows but that cannot stand in a
#: URI (RFC 3986): ``" < > [ ] ^ ` { | }``, a ``%`` not followed by two hex
#: digits, a second ``#``. See test_link_url_is_a_uri_for_every_accepted_target.
NON_URI_TARGET = re.compile(r'["<>\[\]^`{|}]|%(?![0-9A-Fa-f]{2})|#.*#')

schema = schemathesis.openapi.from_dict(openapi_document())


def _targets(body: Any):
    if not isinstance(body, dict):
        return
    if isinstance(body.get("target"), str):
        yield body["target"]
    if isinstance(body.get("items"), list):
        for item in body["items"]:
            yield from _targets(item)


def test_the_run_uses_the_served_document(sqlite_app):
    response = sqlite_app.test_client().get("/openapi.json")
    assert response.status_code == 200
    assert response.json == openapi_document()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_every_operation_keeps_to_the_document(case, sqlite_app):
    """Generated requests never get a 5xx or an answer the document does not describe."""
    case.call_and_validate(app=sqlite_app, headers=auth("ops-key"), checks=CHECKS)


def _link_request(target: str) -> dict[str, Any]:
    return {
        "user_id": "42",
        "email": "alice@example.com",
        "recipients": {"to": ["alice@example.com"]},
        "target": target,
    }


@pytest.mark.parametrize(
    "target",
    ("/a]b", "/tickets/1?q=<b>", '/a"b', "/{x}", "/a|b", "/a^b", "/a`b", "/50%", "/a#b#c"),
)
def test_a_target_that_would_not_make_a_uri_is_invalid_target(sqlite_app, target):
    assert NON_URI_TARGET.search(target)
    response = sqlite_app.test_client().post(
        "/v1/links", json=_link_request(target), headers=auth("ops-key")
    )
    assert (response.status_code, response.json["code"]) == (400, "invalid_target")


@pytest.mark.parametrize("user_id", ("a%0Ab", "42%0A"))
def test_revoke_refuses_a_user_id_with_a_newline_as_documented(sqlite_app, user_id):
    response = sqlite_app.test_client().post(
        f"/v1/admin/users/{user_id}/revoke", json={"reason": "test"}, headers=auth("ops-key")
    )
    assert (response.status_code, response.json["code"]) == (400, "invalid_request")
