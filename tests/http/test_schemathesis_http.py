"""A bounded Schemathesis run of the app against its own OpenAPI document, in process.

Every operation of ``service/openapi.json`` (the very file ``GET /openapi.json``
serves, checked below) gets generated requests in all three phases that apply
to one operation at a time: the document's examples, the coverage phase (the
boundaries of every schema: a float for an integer, one item past a batch's
limit, each keyword violated in turn) and fuzzed ones, with the invalid near
misses below (``Du.@example.com``, ``59.0``, ``https://a b.example.com``)
mixed in. They are sent over WSGI with an API key
that holds every role, and every check Schemathesis has runs on each answer:
no server error; a documented status code, content type, header set and body
schema; data the document calls valid accepted (``positive_data_acceptance``)
and data it calls invalid refused (``negative_data_rejection``); the declared
auth enforced; unsupported methods answered ``405`` with ``Allow``.

Unknown query parameters are not generated (``allow_extra_parameters``): the
document declares the parameters the service reads and says it ignores
others, so a request with one more is not "invalid data" it must refuse.

Random generation seldom lands next to a boundary, so every near miss is also
sent alone, in an otherwise valid body, to every operation with that field
(test_a_near_miss_gets_the_documents_verdict): accepted exactly when the
document's schema allows it.

The app runs on a fresh SQLite store (no Redis needed) with auto-login switched
on, so ``POST /v1/links`` answers token links as well as plain ones.

``schemathesis.pytest.from_fixture`` would build the schema from an app fixture,
but on pytest 9.2 it fails (it reads ``Function._nodeid``, which pytest
removed); the schema is therefore loaded from the document itself and each
operation is pointed at the fixture's app, so that the checks that send
requests of their own (the auth and method probes) reach it too.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig

from service import close_app, create_app
from service.api.ops import openapi_document
from tests.conftest import auth, production_config, sqlite_url
from tests.http.test_openapi_http import validator

#: Generated requests per operation in the fuzzing phase: enough to find a
#: contradiction, few enough for CI (the coverage phase is not bounded by it).
MAX_EXAMPLES = 25
PHASES = ["examples", "coverage", "fuzzing"]
#: A target the document's Target pattern allows but that cannot stand in a
#: URI (RFC 3986): ``" < > [ ] ^ ` { | }``, a ``%`` not followed by two hex
#: digits, a second ``#``. No link the service answers may hold one.
NON_URI_TARGET = re.compile(r'["<>\[\]^`{|}]|%(?![0-9A-Fa-f]{2})|#.*#')

DOC = openapi_document()
#: Values next to a boundary, each judged by the document: those its schema
#: allows must be accepted, the others refused. Random generation alone seldom
#: lands there. All are sent alone (test_a_near_miss_gets_the_documents_verdict);
#: the invalid ones are also mixed into the fuzzing phase's negative cases.
DICTIONARIES = {
    # RFC 5322's dot-atom: no dot first, last or twice in a row in the local part.
    "addresses": [
        "Du.@example.com",
        ".du@example.com",
        "d..u@example.com",
        "d.u@example.com",
        "o'hara+tag@example.com",
        "a@b.example",
    ],
    # Whole numbers spelled as JSON floats are integers to JSON Schema.
    "lifetimes": [37745.0, 86400.0, 60.0, 604800.0, 59.0, 604801.0, 37745.5],
    # A tenant's portal: an https origin and optional path, nothing more.
    "portals": [
        "https://acme.portal.example.com",
        "https://acme.example.com:8443/portal/",
        "https://acme.localhost",
        "http://acme.example.com",
        "ftp://acme.example.com",
        "https://",
        "https://acme.example.com?x=1",
        "https://acme.example.com#top",
        "https://user@acme.example.com",
        "https://a b.example.com",
        "https://acme.example.com/a b",
        "https://acme.example.com/\n",
        "https://exa\tmple.com",
        "https://[",
        "https://acme..example.com",
        "https://-acme.example.com",
        "https://acme.example.com:1",
        "https://acme.example.com:65535",
        "https://acme.example.com:08080",
        "https://acme.example.com:0",
        "https://acme.example.com:65536",
        "https://acme.example.com:100000",
    ],
    # A DNS label: 1 to 63 of a-z 0-9 -, no dash first or last.
    "tenant ids": ["a", "a" * 63, "a-1", "a" * 64, "Acme", "-acme", "acme-", "ac_me", "ac.me", ""],
    # Not blank as Python's str.strip() sees it, which is not ECMA's \s.
    "reasons": ["x", " x ", "\ufeff", "\x1f", "\x85", "\u3000", " ", "a" * 500, "a" * 501],
    "key names": ["k", "A.b_c-9", "k" * 64, "k" * 65, "a b", "a/b", "ké", ""],
}
BINDINGS = {
    "body.email": "addresses",
    "body.recipients.to[*]": "addresses",
    "body.recipients.cc[*]": "addresses",
    "body.recipients.bcc[*]": "addresses",
    "body.ttl_seconds": "lifetimes",
    "body.token_ttl_seconds": "lifetimes",
    "body.portal_base_url": "portals",
    "body.tenant_id": "tenant ids",
    "body.reason": "reasons",
    "body.name": "key names",
}
#: The schema that judges each dictionary's values.
SCHEMA_OF = {
    "addresses": "#/components/schemas/Email",
    "lifetimes": "#/components/schemas/LinkRequest/properties/ttl_seconds",
    "portals": "#/components/schemas/PortalBaseUrl",
    "tenant ids": "#/components/schemas/TenantId",
    "reasons": "#/components/schemas/ReasonRequest/properties/reason",
    "key names": "#/components/schemas/KeyName",
}
#: Only the invalid values go into the fuzzing phase: Schemathesis may judge a
#: dictionary's value against a schema it has already mutated, and would then
#: send a valid one as invalid data (and report the service for accepting it).
INVALID = {
    name: [v for v in values if not validator(DOC, SCHEMA_OF[name]).is_valid(v)]
    for name, values in DICTIONARIES.items()
}
#: What invalid data may be answered.
REFUSALS = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
CONFIG = SchemathesisConfig.from_dict(
    {
        # The key as configuration, not as a header of each call: Schemathesis
        # then knows the credentials it sent and probes the auth by removing them.
        "headers": auth("ops-key"),
        "phases": {name: {"enabled": name in PHASES} for name in (*PHASES, "stateful")},
        "generation": {"allow-extra-parameters": False},
        "checks": {
            "enabled": True,
            # Schemathesis' own default limit.
            "max_response_time": 10.0,
            # Schemathesis' list without 5xx (never an answer to bad data), and
            # with 413: a body over 1 MiB or more than 1000 batch items.
            "negative_data_rejection": {"expected-statuses": REFUSALS},
        },
        "dictionaries": {name: {"values": values} for name, values in INVALID.items()},
        "parameters": {
            key: {"dictionary": name, "probability": 0.3} for key, name in BINDINGS.items()
        },
    }
)
schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG)


def _urls(answer: Any):
    """Every link URL in an answer of ``POST /v1/links`` or its batch."""
    for item in answer.get("items", [answer]) if isinstance(answer, dict) else ():
        if isinstance(item, dict) and isinstance(item.get("url"), str):
            yield item["url"]


def test_the_run_uses_the_served_document(sqlite_app):
    response = sqlite_app.test_client().get("/openapi.json")
    assert response.status_code == 200
    assert response.json == openapi_document()


@schema.parametrize()
@settings(
    derandomize=True,  # the same cases every run: CI never meets a case no run here met
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_every_operation_keeps_to_the_document(case, sqlite_app):
    """Generated requests pass every check: no 5xx, nothing the document does not describe."""
    case.operation.app = case.operation.schema.app = sqlite_app
    # No ``checks=``: every check of the configuration, which enables all.
    response = case.call_and_validate()
    links = case.method.upper() == "POST" and case.path.endswith(("/links", "/links/batch"))
    if links and response.status_code == 200:
        for url in _urls(response.json()):
            assert not NON_URI_TARGET.search(url), url


def test_the_run_enables_every_check_and_phase():
    load_all_checks()
    config = schema.config
    checks = config.checks_config_for()
    assert all(checks.get_by_name(name=n).enabled for n in CHECKS.get_all_names())
    assert checks.max_response_time.enabled
    phases = config.phases_for(operation=None)
    assert all(phases.get_by_name(name=name).enabled for name in PHASES)


# -- near misses, deterministically ---------------------------------------------
#
# The fuzzing phase draws the near misses above only now and then, and a near
# miss among other invalid fields says nothing. So each one is also sent alone,
# in an otherwise valid body, to every operation whose body holds the field:
# the service must accept it exactly when the document's schema does.

LINK = {"user_id": "42", "email": "alice@example.com", "recipients": {"to": ["alice@example.com"]}}
#: Request schema -> (a valid body, where each near miss goes in it).
BODIES: dict[str, tuple[dict[str, Any], dict[tuple[str | int, ...], str]]] = {
    "LinkRequest": (
        LINK,
        {
            ("email",): "addresses",
            ("recipients", "to", 0): "addresses",
            ("recipients", "cc"): "address lists",
            ("recipients", "bcc"): "address lists",
            ("ttl_seconds",): "lifetimes",
        },
    ),
    "BatchRequest": (
        {"items": [LINK, LINK]},
        {
            ("items", 1, "email"): "addresses",
            ("items", 1, "recipients", "to", 0): "addresses",
            ("items", 1, "ttl_seconds"): "lifetimes",
        },
    ),
    "SettingsUpdate": ({"auto_login_enabled": True}, {("token_ttl_seconds",): "lifetimes"}),
    "TenantCreate": (
        {"tenant_id": "new", "portal_base_url": "https://new.example.com", "reason": "test"},
        {("portal_base_url",): "portals", ("tenant_id",): "tenant ids", ("reason",): "reasons"},
    ),
    "KeyCreate": (
        {"name": "new", "roles": ["issuer"], "reason": "test"},
        {("name",): "key names", ("roles",): "role lists", ("reason",): "reasons"},
    ),
    "ReasonRequest": ({"reason": "test"}, {("reason",): "reasons"}),
    "TenantUpdate": (
        {"portal_base_url": "https://acme.example.com", "reason": "test"},
        {("portal_base_url",): "portals"},
    ),
}
NEAR_MISSES = {
    "addresses": DICTIONARIES["addresses"],
    "address lists": [[a] for a in DICTIONARIES["addresses"]],
    "lifetimes": DICTIONARIES["lifetimes"],
    "portals": DICTIONARIES["portals"],
    "tenant ids": DICTIONARIES["tenant ids"],
    "reasons": DICTIONARIES["reasons"],
    "key names": DICTIONARIES["key names"],
    "role lists": [["admin", "admin"], ["portal", "issuer"], [], ["root"], "issuer", [None]],
}
#: A valid body's name for what must be new each time (a tenant, a key).
FRESH = {"TenantCreate": "tenant_id", "KeyCreate": "name"}
#: A tenant other than default, made for the near misses: default's portal cannot move.
PATH_PARAMETERS = {"tenant_id": "acme", "user_id": "42", "link_id": "Qx3vT0bqW2mZ8kLr"}


@pytest.fixture(scope="module")
def near_miss_app(tmp_path_factory):
    """One app for every near miss: each is one request that changes nothing it reads.

    Without the ledger, voiding a link takes any well-formed id: the body
    alone decides the verdict, as for every other call here.
    """
    url = sqlite_url(tmp_path_factory.mktemp("near-misses"))
    app = create_app(production_config(url, LINK_LEDGER=False))
    app.config["TESTING"] = True
    tenant = {"tenant_id": "acme", "portal_base_url": "https://acme.example.com", "reason": "t"}
    made = app.test_client().post("/v1/admin/tenants", json=tenant, headers=auth("ops-key"))
    assert made.status_code == 201, made.json
    yield app
    close_app(app)


def _with(body: Any, where: tuple[str | int, ...], value: Any) -> Any:
    body = copy.deepcopy(body)
    node = body
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    return body


def _near_miss_cases():
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            schema_ref = (
                op.get("requestBody", {})
                .get("content", {})
                .get("application/json", {})
                .get("schema")
            )
            name = (schema_ref or {}).get("$ref", "").rpartition("/")[2]
            if name not in BODIES:
                continue
            base, places = BODIES[name]
            for where, kind in places.items():
                for value in NEAR_MISSES[kind]:
                    yield pytest.param(
                        path,
                        method,
                        name,
                        _with(base, where, value),
                        where,
                        id=f"{method} {path} {'.'.join(map(str, where))}={json.dumps(value)}",
                    )


@pytest.mark.parametrize(("path", "method", "name", "body", "where"), list(_near_miss_cases()))
def test_a_near_miss_gets_the_documents_verdict(near_miss_app, path, method, name, body, where):
    url = re.sub(r"{(\w+)}", lambda m: PATH_PARAMETERS[m.group(1)], path)
    if name in FRESH and where != (FRESH[name],):
        body[FRESH[name]] = f"t{uuid.uuid4().hex}"  # a new tenant or key each time
    response = near_miss_app.test_client().open(
        url, method=method.upper(), json=body, headers=auth("ops-key")
    )
    if name == "BatchRequest":
        # The batch takes any item and answers an invalid one in place.
        item = body["items"][where[1]]
        valid = validator(DOC, "#/components/schemas/LinkRequest").is_valid(item)
        assert response.status_code == 200, response.json
        assert ("error" not in response.json["items"][where[1]]) == valid, response.json
    else:
        valid = validator(DOC, f"#/components/schemas/{name}").is_valid(body)
        accepted = 201 if name in FRESH else 200
        assert response.status_code == (accepted if valid else 400), response.get_data()


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
