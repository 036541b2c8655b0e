"""The OpenAPI document: served, complete, well-formed, and true to the answers."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator, ValidationError, validators
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from service.api.ops import openapi_document
from tests.conftest import API_KEYS, auth

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
DOC_URI = "urn:autologin:openapi"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return openapi_document()


def operations(doc: dict[str, Any]):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref}: only local references are used"
    node: Any = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{ref}: does not resolve"
        node = node[part]
    return node


def deref(doc: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = resolve(doc, node["$ref"])
    return node


def all_refs(node: Any):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from all_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from all_refs(value)


def ecma_end(pattern: str) -> str:
    r"""``pattern`` with its closing ``$`` spelled ``\Z``.

    JSON Schema reads patterns as ECMA 262, where ``$`` (no multiline flag) is
    the end of the string; Python's ``$`` also matches before a final newline,
    so ``"a@example.com\n"`` would pass for a valid address.
    """
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        return pattern[:-1] + r"\Z"
    return pattern


def _ecma_pattern(checker, pattern, instance, schema):
    if checker.is_type(instance, "string") and not re.search(ecma_end(pattern), instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


#: Draft 2020-12 with patterns read as ECMA 262 reads them (their closing $).
EcmaValidator = validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})


def validator(doc: dict[str, Any], ref: str) -> Draft202012Validator:
    """A 2020-12 validator of the schema at ``ref``, resolving refs inside the document."""
    registry = Registry().with_resource(
        DOC_URI, Resource.from_contents(doc, default_specification=DRAFT202012)
    )
    return EcmaValidator(
        {"$ref": DOC_URI + ref},
        registry=registry,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def check_answer(doc: dict[str, Any], response, path: str, method: str) -> None:
    """Assert ``response`` is documented for the operation and matches its schema."""
    status = str(response.status_code)
    responses = doc["paths"][path][method]["responses"]
    assert status in responses, f"{method.upper()} {path}: {status} is not documented"
    documented = deref(doc, responses[status])
    if "content" not in documented:
        assert not response.get_data(), f"{method.upper()} {path} {status}: a body"
        return
    media = response.mimetype
    assert media in documented["content"], f"{method.upper()} {path} {status}: {media}"
    for name, header in documented.get("headers", {}).items():
        if header.get("required"):
            assert name in response.headers, f"{method.upper()} {path} {status}: {name}"
    ref = pointer("paths", path, method, "responses", status, "content", media, "schema")
    if "$ref" in responses[status]:
        ref = responses[status]["$ref"] + pointer("content", media, "schema")[1:]
    body = response.get_data(as_text=True) if media == "text/plain" else response.json
    errors = sorted(validator(doc, ref).iter_errors(body), key=str)
    assert not errors, f"{method.upper()} {path} {status}: {errors[0].message}"


# -- the document itself ------------------------------------------------------


def test_served_as_json(client, doc):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.json["openapi"] == "3.1.0"
    assert response.json == doc
    assert doc["info"]["title"] == "Auto-login link service"
    assert doc["info"]["version"] == "0.1.0"


def test_paths_match_the_url_map(app, doc):
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((path, method.lower()))
    documented = {(path, method) for path, method, _ in operations(doc)}
    assert documented == routes


def test_scrub_is_not_documented_until_it_exists(app, doc):
    served = {rule.rule for rule in app.url_map.iter_rules()}
    assert ("/v1/scrub" in doc["paths"]) == ("/v1/scrub" in served)


def test_every_ref_resolves(doc):
    refs = set(all_refs(doc))
    assert refs
    for ref in refs:
        resolve(doc, ref)


def test_secured_operations_document_401_and_403(doc):
    schemes = doc["components"]["securitySchemes"]
    for path, method, op in operations(doc):
        security = op.get("security", doc.get("security", []))
        for requirement in security:
            assert set(requirement) <= set(schemes), f"{method} {path}"
        if security:
            assert {"401", "403"} <= set(op["responses"]), f"{method} {path}"
            assert op.get("x-roles"), f"{method} {path}: no role"
            for role in op["x-roles"]:
                assert f"`{role}`" in op["description"], f"{method} {path}: role not described"
            unauthorized = deref(doc, op["responses"]["401"])
            assert "WWW-Authenticate" in unauthorized.get("headers", {}), f"{method} {path}"
        else:
            assert path in {"/healthz", "/readyz", "/metrics", "/openapi.json"}, path


def test_problem_answers_use_the_problem_schema(doc):
    problem = "#/components/schemas/Problem"
    for path, method, op in operations(doc):
        for status, response in op["responses"].items():
            response = deref(doc, response)
            if status.startswith(("4", "5")):
                content = response["content"]
                assert list(content) == ["application/problem+json"], f"{method} {path} {status}"
                schema = content["application/problem+json"]["schema"]
                refs = set(all_refs(schema))
                assert problem in refs, f"{method} {path} {status}"
                codes = schema["allOf"][1]["properties"]["code"]["enum"]
                assert codes, f"{method} {path} {status}: codes not listed"


# A structural subset of the OpenAPI 3.1 schema: no new dependency, strict where it matters.
_OPERATION = {
    "type": "object",
    "required": ["operationId", "responses", "summary", "description", "security"],
    "properties": {
        "operationId": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9]*$"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "summary": {"type": "string"},
        "description": {"type": "string"},
        "security": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
            },
        },
        "parameters": {"type": "array", "items": {"$ref": "#/$defs/parameterOrRef"}},
        "requestBody": {
            "type": "object",
            "required": ["content"],
            "properties": {"content": {"$ref": "#/$defs/content"}},
        },
        "responses": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": "^([1-5][0-9]{2}|[1-5]XX|default)$"},
            "additionalProperties": {"$ref": "#/$defs/responseOrRef"},
        },
    },
    "patternProperties": {"^x-": {}},
    "additionalProperties": False,
}
OPENAPI_SUBSET = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["openapi", "info", "paths", "components"],
    "properties": {
        "openapi": {"type": "string", "pattern": r"^3\.1\.\d+$"},
        "jsonSchemaDialect": {"type": "string"},
        "info": {
            "type": "object",
            "required": ["title", "version", "description"],
            "properties": {
                "title": {"type": "string"},
                "version": {"type": "string"},
                "description": {"type": "string", "minLength": 1},
            },
        },
        "tags": {"type": "array", "items": {"type": "object", "required": ["name"]}},
        "paths": {
            "type": "object",
            "propertyNames": {"pattern": "^/"},
            "additionalProperties": {
                "type": "object",
                "propertyNames": {"enum": sorted(METHODS) + ["parameters", "summary"]},
                "additionalProperties": _OPERATION,
            },
        },
        "components": {
            "type": "object",
            "properties": {
                "schemas": {"type": "object", "additionalProperties": {"type": "object"}},
                "parameters": {
                    "type": "object",
                    "additionalProperties": {"$ref": "#/$defs/parameter"},
                },
                "responses": {
                    "type": "object",
                    "additionalProperties": {"$ref": "#/$defs/response"},
                },
                "securitySchemes": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["type"],
                        "properties": {
                            "type": {"enum": ["apiKey", "http", "oauth2", "openIdConnect"]}
                        },
                        "if": {"properties": {"type": {"const": "http"}}},
                        "then": {"required": ["scheme"]},
                    },
                },
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
    "$defs": {
        "parameter": {
            "type": "object",
            "required": ["name", "in", "schema"],
            "properties": {
                "name": {"type": "string"},
                "in": {"enum": ["path", "query", "header", "cookie"]},
                "required": {"type": "boolean"},
                "schema": {"type": "object"},
            },
            "if": {"properties": {"in": {"const": "path"}}},
            "then": {"required": ["required"], "properties": {"required": {"const": True}}},
        },
        "parameterOrRef": {
            "oneOf": [
                {"type": "object", "required": ["$ref"], "maxProperties": 1},
                {"$ref": "#/$defs/parameter"},
            ]
        },
        "content": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": "^[a-z]+/[a-z0-9.+-]+$"},
            "additionalProperties": {
                "type": "object",
                "required": ["schema"],
                "properties": {"schema": {"type": "object"}},
            },
        },
        "response": {
            "type": "object",
            "required": ["description"],
            "properties": {
                "description": {"type": "string"},
                "content": {"$ref": "#/$defs/content"},
                "headers": {
                    "type": "object",
                    "additionalProperties": {"type": "object", "required": ["schema"]},
                },
            },
        },
        "responseOrRef": {
            "oneOf": [
                {"type": "object", "required": ["$ref"], "maxProperties": 1},
                {"$ref": "#/$defs/response"},
            ]
        },
    },
}


def test_structure_is_openapi_3_1(doc):
    Draft202012Validator.check_schema(OPENAPI_SUBSET)
    errors = sorted(Draft202012Validator(OPENAPI_SUBSET).iter_errors(doc), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]
    ids = [op["operationId"] for _, _, op in operations(doc)]
    assert len(ids) == len(set(ids))
    for path, method, op in operations(doc):
        templated = set(re.findall(r"{([^}]+)}", path))
        parameters = [deref(doc, p) for p in op.get("parameters", [])]
        declared = {p["name"] for p in parameters if p["in"] == "path"}
        assert templated == declared, f"{method} {path}"


def test_every_schema_is_a_valid_2020_12_schema(doc):
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    for path, method, op in operations(doc):
        for parameter in op.get("parameters", []):
            Draft202012Validator.check_schema(deref(doc, parameter)["schema"])
        for response in op["responses"].values():
            for media in deref(doc, response).get("content", {}).values():
                Draft202012Validator.check_schema(media["schema"])
        if "requestBody" in op:
            assert op["requestBody"]["content"].keys() == {"application/json"}, f"{method} {path}"


def test_document_is_pretty_printed(project_root):
    text = (project_root / "service" / "openapi.json").read_text()
    assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"


# -- the document against the service -----------------------------------------


#: A value for each path parameter: names that exist (or, for a key, that need not).
PATH_VALUES = {"{user_id}": "42", "{tenant_id}": "default", "{name}": "no-such-key"}


def _url(path: str) -> str:
    for name, value in PATH_VALUES.items():
        path = path.replace(name, value)
    return path


def _call(client, path: str, method: str, headers: dict[str, str]):
    return client.open(_url(path), method=method.upper(), headers=headers)


def test_roles_are_what_the_service_enforces(client, doc):
    keys = {roles[0]: name for name, (_, roles) in API_KEYS.items() if len(roles) == 1}
    for path, method, op in operations(doc):
        if not op["security"]:
            continue
        response = _call(client, path, method, {})
        assert response.status_code == 401, f"{method} {path}"
        check_answer(doc, response, path, method)
        for role, key in keys.items():
            response = _call(client, path, method, auth(key))
            if role in op["x-roles"]:
                assert response.status_code != 403, f"{method} {path} {role}"
            else:
                assert response.status_code == 403, f"{method} {path} {role}"
                check_answer(doc, response, path, method)


def test_answers_match_the_document(client, doc, links):
    issued = links.issue()
    check_answer(doc, issued, "/v1/links", "post")
    assert issued.json["auto_login"] is False

    check_answer(
        doc,
        client.get("/v1/admin/settings", headers=auth("admin-key")),
        "/v1/admin/settings",
        "get",
    )
    patched = client.patch(
        "/v1/admin/settings", json={"auto_login_enabled": True}, headers=auth("admin-key")
    )
    check_answer(doc, patched, "/v1/admin/settings", "patch")

    issued = links.issue(target="/tickets/1234?tab=notes")
    check_answer(doc, issued, "/v1/links", "post")
    assert issued.json["auto_login"] is True
    plain = links.issue(recipients={"to": ["alice@example.com"], "cc": ["bob@example.com"]})
    check_answer(doc, plain, "/v1/links", "post")
    assert plain.json["reason"] == "multiple_recipients"

    batch = client.post(
        "/v1/links/batch",
        json={
            "items": [
                {
                    "user_id": "42",
                    "email": "a@example.com",
                    "recipients": {"to": ["a@example.com"]},
                },
                {
                    "user_id": "43",
                    "email": "b@example.com",
                    "recipients": {"to": ["c@example.com"]},
                },
                {"user_id": "44", "email": "d@example.com", "recipients": {"to": []}},
                {
                    "user_id": "45",
                    "email": "e@example.com",
                    "recipients": {"to": ["e@example.com"]},
                    "target": "//evil.test",
                },
            ]
        },
        headers=auth("issuer-key"),
    )
    check_answer(doc, batch, "/v1/links/batch", "post")
    assert [("error" in item) for item in batch.json["items"]] == [False, False, True, True]

    token = links.token()
    verified = links.verify(token, client={"ip": "203.0.113.7", "user_agent": "test"})
    check_answer(doc, verified, "/v1/tokens/verify", "post")
    check_answer(doc, links.verify("not-a-token"), "/v1/tokens/verify", "post")

    check_answer(
        doc, client.get("/v1/admin/epoch", headers=auth("admin-key")), "/v1/admin/epoch", "get"
    )
    check_answer(doc, links.bump(), "/v1/admin/epoch/bump", "post")
    check_answer(doc, links.verify(token), "/v1/tokens/verify", "post")
    check_answer(doc, links.revoke("42"), "/v1/admin/users/{user_id}/revoke", "post")

    signins = client.get("/v1/admin/signins?user_id=42", headers=auth("admin-key"))
    check_answer(doc, signins, "/v1/admin/signins", "get")
    assert [s["outcome"] for s in signins.json["signins"]] == ["token_revoked", "ok"]
    audit = client.get("/v1/admin/audit?limit=10", headers=auth("admin-key"))
    check_answer(doc, audit, "/v1/admin/audit", "get")
    assert {e["action"] for e in audit.json["events"]} == {
        "store.create",
        "settings.update",
        "epoch.bump",
        "user.revoke",
    }

    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        check_answer(doc, client.get(path), path, "get")


# -- tenants -----------------------------------------------------------------

TWIN = "/v1/tenants/{tenant_id}"
PLATFORM = ("/v1/tenants/", "/v1/admin/tenants", "/v1/admin/platform/")


def codes(doc: dict[str, Any], response: dict[str, Any]) -> list[str]:
    """The problem codes a documented response lists."""
    schema = deref(doc, response)["content"]["application/problem+json"]["schema"]
    return schema["allOf"][1]["properties"]["code"]["enum"]


def test_every_tenant_scoped_call_has_its_twin(doc):
    """A twin is its call plus the tenant_id parameter, 400 invalid_request and 404."""
    twins = {p for p in doc["paths"] if p.startswith(TWIN + "/")}
    scoped = {p for p in doc["paths"] if p.startswith("/v1/") and not p.startswith(PLATFORM)}
    assert {"/v1" + t[len(TWIN) :] for t in twins} == scoped
    for twin in twins:
        path = "/v1" + twin[len(TWIN) :]
        assert doc["paths"][twin].keys() == doc["paths"][path].keys(), twin
        for method, op in doc["paths"][path].items():
            copy = doc["paths"][twin][method]
            assert copy["operationId"] == op["operationId"] + "InTenant"
            for key in ("tags", "security", "x-roles", "requestBody"):
                assert copy.get(key) == op.get(key), f"{method} {twin}: {key}"
            assert copy["parameters"][0] == {"$ref": "#/components/parameters/TenantId"}
            assert copy["parameters"][1:] == op.get("parameters", [])
            assert copy["responses"].keys() == op["responses"].keys() | {"400"}, twin
            for status, response in op["responses"].items():
                if status == "400":
                    assert set(codes(doc, response)) <= set(codes(doc, copy["responses"][status]))
                elif status != "404":
                    assert copy["responses"][status] == response, f"{method} {twin} {status}"
            assert "invalid_request" in codes(doc, copy["responses"]["400"])
            assert "tenant_not_found" in codes(doc, copy["responses"]["404"])


def _tenant_key(client, doc, tenant: str, roles: list[str]) -> str:
    made = client.post(
        f"/v1/tenants/{tenant}/admin/keys",
        json={"name": f"{tenant}-key", "roles": roles, "reason": "test"},
        headers=auth("admin-key"),
    )
    check_answer(doc, made, TWIN + "/admin/keys", "post")
    assert made.json["key"].startswith(f"tk.{tenant}.")
    return made.json["key"]


def test_tenant_answers_match_the_document(client, doc):
    admin = auth("admin-key")
    acme = {"tenant_id": "acme", "portal_base_url": "https://acme.example.com", "reason": "t"}

    def check(response, path: str, method: str, status: int):
        assert response.status_code == status, response.get_data(as_text=True)
        check_answer(doc, response, path, method)
        return response

    tenants = "/v1/admin/tenants"
    check(client.post(tenants, json=acme, headers=admin), tenants, "post", 201)
    check(client.post(tenants, json=acme, headers=admin), tenants, "post", 409)
    check(
        client.post(tenants, json={**acme, "tenant_id": "Acme"}, headers=admin),
        tenants,
        "post",
        400,
    )
    first = check(client.get(f"{tenants}?limit=1", headers=admin), tenants, "get", 200)
    assert [t["tenant_id"] for t in first.json["tenants"]] == ["acme"]
    assert first.json["next"] == "acme"
    last = check(client.get(f"{tenants}?after=acme", headers=admin), tenants, "get", 200)
    assert ([t["tenant_id"] for t in last.json["tenants"]], last.json["next"]) == (
        ["default"],
        None,
    )

    one = tenants + "/{tenant_id}"
    check(client.get(f"{tenants}/acme", headers=admin), one, "get", 200)
    check(client.get(f"{tenants}/globex", headers=admin), one, "get", 404)
    check(client.get(f"{tenants}/-globex", headers=admin), one, "get", 400)
    moved = {"portal_base_url": "https://acme.portal.example.com", "reason": "moved"}
    check(client.patch(f"{tenants}/acme", json=moved, headers=admin), one, "patch", 200)
    check(client.patch(f"{tenants}/default", json=moved, headers=admin), one, "patch", 400)

    settings = check(
        client.get("/v1/tenants/acme/admin/settings", headers=admin),
        TWIN + "/admin/settings",
        "get",
        200,
    )
    assert settings.json["portal_base_url"] == "https://acme.portal.example.com"
    assert settings.json["auto_login_enabled"] is False
    check(
        client.get("/v1/tenants/globex/admin/epoch", headers=admin),
        TWIN + "/admin/epoch",
        "get",
        404,
    )
    check(
        client.get("/v1/tenants/Globex/admin/epoch", headers=admin),
        TWIN + "/admin/epoch",
        "get",
        400,
    )

    key = _tenant_key(client, doc, "acme", ["admin", "issuer"])
    again = client.post(
        "/v1/tenants/acme/admin/keys",
        json={"name": "acme-key", "roles": ["portal"], "reason": "test"},
        headers=admin,
    )
    check(again, TWIN + "/admin/keys", "post", 409)
    listed = check(
        client.get("/v1/tenants/acme/admin/keys", headers=admin), TWIN + "/admin/keys", "get", 200
    )
    assert [k["name"] for k in listed.json["keys"]] == ["acme-key"]

    own = {"Authorization": f"Bearer {key}"}
    mine = check(client.get("/v1/admin/settings", headers=own), "/v1/admin/settings", "get", 200)
    assert mine.json["portal_base_url"] == "https://acme.portal.example.com"
    for other in ("default", "globex", "Not-An-Id"):
        check(
            client.get(f"/v1/tenants/{other}/admin/settings", headers=own),
            TWIN + "/admin/settings",
            "get",
            403,
        )
    check(client.get(tenants, headers=own), tenants, "get", 403)
    check(
        client.get("/v1/admin/platform/audit", headers=own), "/v1/admin/platform/audit", "get", 403
    )
    link = {"user_id": "42", "email": "a@example.com", "recipients": {"to": ["a@example.com"]}}
    issued = check(client.post("/v1/links", json=link, headers=own), "/v1/links", "post", 200)
    assert issued.json["url"].startswith("https://acme.portal.example.com/")

    revoke = TWIN + "/admin/keys/{name}"
    gone = client.delete("/v1/tenants/acme/admin/keys/nope?reason=test", headers=admin)
    check(gone, revoke, "delete", 404)
    assert gone.json["code"] == "key_not_found"
    check(
        client.delete("/v1/tenants/acme/admin/keys/acme-key?reason=t", headers=admin),
        revoke,
        "delete",
        204,
    )
    check(client.get("/v1/admin/settings", headers=own), "/v1/admin/settings", "get", 401)

    audit = check(
        client.get("/v1/tenants/acme/admin/audit", headers=admin), TWIN + "/admin/audit", "get", 200
    )
    assert {e["action"] for e in audit.json["events"]} == {
        "tenant.create",
        "tenant.update",
        "key.create",
        "key.revoke",
    }
    check(client.delete(f"{tenants}/acme", json={"reason": "t"}, headers=admin), one, "delete", 204)
    check(client.delete(f"{tenants}/acme?reason=t", headers=admin), one, "delete", 404)
    check(client.delete(f"{tenants}/default?reason=t", headers=admin), one, "delete", 400)
    platform = check(
        client.get("/v1/admin/platform/audit", headers=admin),
        "/v1/admin/platform/audit",
        "get",
        200,
    )
    assert [e["action"] for e in platform.json["events"]] == [
        "tenant.delete",
        "key.revoke",
        "key.create",
        "tenant.update",
        "tenant.create",
    ]
    assert {e["detail"]["tenant_id"] for e in platform.json["events"]} == {"acme"}


@pytest.mark.parametrize(
    ("path", "method", "body", "query"),
    [
        ("/v1/links", "post", b"[1]", ""),
        ("/v1/links", "post", {"user_id": "a b", "email": "a@example.com"}, ""),
        (
            "/v1/links",
            "post",
            {
                "user_id": "42",
                "email": "a@example.com",
                "recipients": {"to": ["a@example.com"]},
                "target": "/\\evil",
            },
            "",
        ),
        (
            "/v1/links",
            "post",
            {
                "user_id": "42",
                "email": "a@example.com",
                "recipients": {"to": ["a@example.com"]},
                "ttl_seconds": 5,
            },
            "",
        ),
        ("/v1/links/batch", "post", {"items": []}, ""),
        ("/v1/links/batch", "post", b"x" * (1024 * 1024 + 1), ""),
        ("/v1/tokens/verify", "post", {"token": 1}, ""),
        ("/v1/tokens/verify", "post", {"token": "x", "client": {"os": "x"}}, ""),
        ("/v1/admin/settings", "patch", {}, ""),
        ("/v1/admin/settings", "patch", {"max_token_ttl_seconds": 60}, ""),
        ("/v1/admin/epoch/bump", "post", {"reason": "  "}, ""),
        ("/v1/admin/users/{user_id}/revoke", "post", {"reason": "x"}, "bad id"),
        ("/v1/admin/signins", "get", None, "?limit=0"),
        ("/v1/admin/audit", "get", None, "?limit=501"),
    ],
)
def test_error_answers_match_the_document(client, doc, path, method, body, query):
    keys = {"/v1/links": "issuer-key", "/v1/tokens/verify": "portal-key"}
    key = next((k for prefix, k in keys.items() if path.startswith(prefix)), "admin-key")
    url = path.replace("{user_id}", query or "42") if "{" in path else path + query
    kwargs: dict[str, Any] = {"headers": auth(key)}
    if isinstance(body, bytes):
        kwargs["data"] = body
        kwargs["content_type"] = "application/json"
    elif body is not None:
        kwargs["json"] = body
    response = client.open(url, method=method.upper(), **kwargs)
    assert response.status_code in (400, 413), response.json
    check_answer(doc, response, path, method)


LINK_CASES = [
    {},
    {"target": "/tickets/1234?tab=notes#top", "ttl_seconds": 60, "unknown": 1},
    {"ttl_seconds": None},
    {"ttl_seconds": 604800},
    {"ttl_seconds": 604801},
    {"ttl_seconds": 59},
    {"ttl_seconds": True},
    {"ttl_seconds": "60"},
    {"user_id": "x" * 128},
    {"user_id": "x" * 129},
    {"user_id": "a/b"},
    {"user_id": ""},
    {"user_id": 42},
    {"email": "Alice <alice@example.com>"},
    {"email": "alice@localhost"},
    {"email": "a" * 65 + "@example.com"},
    {"recipients": {"to": [], "cc": ["alice@example.com"]}},
    {"recipients": {"to": [], "bcc": ["alice@example.com"]}},
    {"recipients": {"to": [], "cc": []}},
    {"recipients": {"cc": ["alice@example.com"]}},
    {"recipients": {"to": ["alice@example.com"], "reply_to": []}},
    {"recipients": {"to": "alice@example.com"}},
    {"recipients": {"to": ["alice@example.com"] * 101}},
    {"recipients": {"to": ["alice@example.com"] * 100}},
    {"target": None},
    {"target": ""},
    {"target": "tickets"},
    {"target": "//evil.test"},
    {"target": "/\\evil.test"},
    {"target": "https://evil.test/"},
    {"target": "/%2F%2Fevil.test"},
    {"target": "/%2fevil.test"},
    {"target": "/%5Cevil.test"},
    {"target": "/a%0Ab"},
    {"target": "/a?b=%0A"},
    {"target": "/%7F"},
    {"target": "/a%7fb"},
    {"target": "/a?b=%7F"},
    {"target": "/a b"},
    {"target": "/é"},
    {"target": "/t?auto_login=x"},
    {"target": "/t?a=1&auto_login"},
    {"target": "/t?auto_login_x=1"},
    {"target": "/a&auto_login=1?x=2"},
    {"target": "/" + "a" * 2047},
    {"target": "/" + "a" * 2048},
]


@pytest.mark.parametrize("change", LINK_CASES, ids=[json.dumps(c)[:60] for c in LINK_CASES])
def test_link_request_schema_agrees_with_the_service(doc, links, change):
    body = {
        "user_id": "42",
        "email": "alice@example.com",
        "recipients": {"to": ["alice@example.com"]},
        **change,
    }
    accepted = links.issue(**body).status_code == 200
    schema_ok = validator(doc, "#/components/schemas/LinkRequest").is_valid(body)
    assert schema_ok == accepted


SETTINGS_CASES = [
    {"auto_login_enabled": True},
    {"token_ttl_seconds": 60, "auto_login_enabled": False},
    {"token_ttl_seconds": 59},
    {"token_ttl_seconds": 604801},
    {"token_ttl_seconds": True},
    {"auto_login_enabled": 1},
    {"max_token_ttl_seconds": 604800},
    {"other": 1},
    {},
]


@pytest.mark.parametrize("body", SETTINGS_CASES, ids=[json.dumps(c) for c in SETTINGS_CASES])
def test_settings_schema_agrees_with_the_service(client, doc, body):
    response = client.patch("/v1/admin/settings", json=body, headers=auth("admin-key"))
    schema_ok = validator(doc, "#/components/schemas/SettingsUpdate").is_valid(body)
    assert schema_ok == (response.status_code == 200)


CLIENT_CASES = [
    None,
    {},
    {"ip": None},
    {"ip": "x" * 64},
    {"ip": "x" * 65},
    {"ip": 1},
    {"user_agent": "x" * 512},
    {"user_agent": "x" * 513},
    {"os": "x"},
    "x",
]


@pytest.mark.parametrize("value", CLIENT_CASES, ids=[json.dumps(c) for c in CLIENT_CASES])
def test_client_schema_agrees_with_the_service(doc, links, value):
    response = links.verify("not-a-token", client=value)
    schema_ok = validator(doc, "#/components/schemas/ClientInfo").is_valid(value)
    assert response.status_code == (401 if schema_ok else 400)
