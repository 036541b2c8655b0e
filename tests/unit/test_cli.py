"""The operator commands: epoch bump, key management, tenants and their keys."""

from __future__ import annotations

import hashlib
import re
import tomllib

import pytest

from service import cli
from service.clock import utcnow
from service.errors import TenantNotFoundError
from tests.conftest import SIGNING_KEYS


def test_epoch_bump_needs_a_reason_and_bumps(service_app):
    runner = service_app.test_cli_runner()
    assert runner.invoke(args=["epoch", "bump"]).exit_code != 0
    result = runner.invoke(args=["epoch", "bump", "--reason", "key leaked"])
    assert result.exit_code == 0
    assert service_app.extensions["store"].epoch().epoch == 2
    event = service_app.extensions["store"].audit_events(limit=1)[0]
    assert (event.action, event.actor, event.detail["reason"]) == (
        "epoch.bump",
        "cli",
        "key leaked",
    )


def test_keys_list_shows_ids_and_names_never_secrets(service_app):
    result = service_app.test_cli_runner().invoke(args=["keys", "list"])
    assert result.exit_code == 0
    assert "signing key k1 (active" in result.output
    assert "API key issuer-key: roles issuer" in result.output
    for secret in SIGNING_KEYS.values():
        assert secret not in result.output


def test_keys_new_prints_a_valid_signing_key_line(service_app):
    result = service_app.test_cli_runner().invoke(args=["keys", "new", "--kid", "2026-12"])
    assert result.exit_code == 0
    line = result.stdout.strip().splitlines()[0]
    table = tomllib.loads(f"[SIGNING_KEYS]\n{line}")["SIGNING_KEYS"]
    assert len(table["2026-12"].encode()) >= 48


def test_keys_rotate_prints_config_with_new_active_key_and_old_ids(service_app):
    result = service_app.test_cli_runner().invoke(args=["keys", "rotate"])
    assert result.exit_code == 0
    text = result.stdout.replace("<keep the current secret of k1>", "x" * 40).replace(
        "<keep the current secret of k2>", "y" * 40
    )
    config = tomllib.loads(text)
    assert config["ACTIVE_KEY_ID"] in config["SIGNING_KEYS"]
    assert {"k1", "k2"} <= set(config["SIGNING_KEYS"])
    assert "remove the old keys after" in result.output
    for secret in SIGNING_KEYS.values():
        assert secret not in result.output


def test_keys_api_key_prints_a_key_whose_digest_is_in_the_config_line(service_app):
    result = service_app.test_cli_runner().invoke(
        args=["keys", "api-key", "--name", "mail-helper", "--role", "issuer"]
    )
    assert result.exit_code == 0
    key = re.search(r"it is not stored anywhere\): (\S+)", result.output).group(1)
    entry = tomllib.loads(f"[API_KEYS]\n{result.stdout.strip()}")["API_KEYS"]["mail-helper"]
    assert entry["sha256"] == hashlib.sha256(key.encode()).hexdigest()
    assert entry["roles"] == ["issuer"]


# -- tenants and tenant keys: the API's code path from the shell ----------------------

ACME = "https://acme.portal.example.com"


def invoke(runner, *args, **kwargs):
    """Run a ``flask`` command; return Click's result."""
    return runner.invoke(args=list(args), **kwargs)


def create_acme(runner, tenant_id="acme"):
    result = invoke(
        runner, "tenants", "create", tenant_id, "--portal-base-url", ACME, "--reason", "onboarding"
    )
    assert result.exit_code == 0, result.output
    return result


def test_tenants_create_list_delete_act_in_the_store_and_audit_as_cli(app, runner):
    store = app.extensions["store"]
    result = create_acme(runner)
    assert result.stdout.startswith(f"acme  {ACME}  created ")
    assert "auto-login off" in result.stdout
    info = store.get_tenant("acme")
    assert (info.portal_base_url, info.settings.auto_login_enabled) == (ACME, False)
    created = store.platform_audit_events(limit=1)[0]
    assert (created.action, created.actor, created.detail["tenant_id"]) == (
        "tenant.create",
        "cli",
        "acme",
    )
    assert store.tenant("acme").audit_events(limit=1)[0].action == "tenant.create"

    listed = invoke(runner, "tenants", "list")
    assert listed.exit_code == 0
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["acme", "default"]

    store.tenant("acme").revoke_user("7", actor="tests", reason="data to remove", now=utcnow())
    deleted = invoke(runner, "tenants", "delete", "acme", "--reason", "contract ended", "--yes")
    assert deleted.exit_code == 0, deleted.output
    with pytest.raises(TenantNotFoundError):
        store.get_tenant("acme")
    event = store.platform_audit_events(limit=1)[0]
    assert (event.action, event.actor, event.detail["reason"]) == (
        "tenant.delete",
        "cli",
        "contract ended",
    )
    assert "removing its data from the store ...\ndone" in deleted.stderr
    assert store.reap(budget=500) is False  # the command removed it all
    # The id is free at once: a new tenant, nothing of the old one.
    create_acme(runner)
    assert store.tenant("acme").token_state("7").user_epoch == 0


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["Acme_1", "--portal-base-url", ACME, "--reason", "r"], "invalid_request"),
        (
            ["acme", "--portal-base-url", "http://acme.example.com", "--reason", "r"],
            "invalid_request",
        ),
        (["acme", "--portal-base-url", "not a url", "--reason", "r"], "invalid_request"),
        (["acme", "--portal-base-url", ACME, "--reason", "  "], "invalid_request"),
        (["default", "--portal-base-url", ACME, "--reason", "r"], "tenant_exists"),
    ],
)
def test_tenants_create_refuses_what_the_api_refuses(service_app, args, code):
    runner = service_app.test_cli_runner()
    result = invoke(runner, "tenants", "create", *args)
    assert result.exit_code == 1
    assert f"Error: {code}: " in result.stderr
    assert [
        t.tenant_id
        for t in service_app.extensions["store"].list_tenants(after=None, prefix="", limit=10)
    ] == ["default"]


def test_tenants_list_pages_through_every_tenant_and_filters(service_app, monkeypatch):
    monkeypatch.setattr(cli, "LIST_PAGE", 3)  # several pages of a few tenants
    store = service_app.extensions["store"]
    ids = [f"t{i:02d}" for i in range(10)] + ["acme", "acme-eu"]
    for tenant_id in ids:
        store.create_tenant(tenant_id, ACME, actor="tests", reason="r", now=utcnow())
    runner = service_app.test_cli_runner()

    def listed(*args):
        result = invoke(runner, "tenants", "list", *args)
        assert result.exit_code == 0, result.output
        return [line.split()[0] for line in result.stdout.splitlines()]

    assert listed() == sorted([*ids, "default"])
    assert listed("--prefix", "acme") == ["acme", "acme-eu"]
    assert listed("--prefix", "t0", "--limit", "4") == ["t00", "t01", "t02", "t03"]
    assert listed("--limit", "3") == ["acme", "acme-eu", "default"]
    assert listed("--prefix", "zz") == []
    bad = invoke(runner, "tenants", "list", "--prefix", "A%")
    assert bad.exit_code == 1
    assert "invalid_request: prefix" in bad.stderr
    assert invoke(runner, "tenants", "list", "--limit", "0").exit_code == 2


def test_tenants_delete_asks_first_and_refuses_what_the_api_refuses(service_app):
    store = service_app.extensions["store"]
    runner = service_app.test_cli_runner()
    create_acme(runner)
    no = invoke(runner, "tenants", "delete", "acme", "--reason", "r", input="n\n")
    assert no.exit_code == 1
    assert "Delete tenant 'acme'?" in no.output
    assert store.get_tenant("acme").tenant_id == "acme"
    yes = invoke(runner, "tenants", "delete", "acme", "--reason", "r", input="y\n")
    assert yes.exit_code == 0, yes.output
    with pytest.raises(TenantNotFoundError):
        store.get_tenant("acme")
    for args, code in (
        (["acme", "--reason", "r"], "tenant_not_found"),
        (["default", "--reason", "r"], "invalid_request"),
        (["Bad_id", "--reason", "r"], "invalid_request"),
    ):
        result = invoke(runner, "tenants", "delete", *args, "--yes")
        assert result.exit_code == 1
        assert f"Error: {code}: " in result.stderr
        assert "Delete tenant" not in result.output  # refused before the question
    assert invoke(runner, "tenants", "delete", "acme", "--yes").exit_code == 2  # no reason


def test_tenant_key_made_listed_and_revoked_from_the_shell_works_in_the_api(app, runner):
    store = app.extensions["store"]
    create_acme(runner)
    made = invoke(
        runner,
        *("keys", "tenant-key", "create", "acme-mail", "--tenant", "acme"),
        *("--role", "issuer", "--role", "portal", "--reason", "onboarding"),
    )
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()
    assert made.stdout == f"{key}\n"  # alone on standard output: the key, this once
    assert key.startswith("tk.acme.")
    assert key not in made.stderr
    assert "shown this once" in made.stderr
    client = app.test_client()
    link = {"user_id": "42", "email": "a@example.com", "recipients": {"to": ["a@example.com"]}}
    headers = {"Authorization": f"Bearer {key}"}
    assert client.post("/v1/links", json=link, headers=headers).status_code == 200
    event = store.tenant("acme").audit_events(limit=1)[0]
    assert (event.action, event.actor) == ("key.create", "cli")
    platform = store.platform_audit_events(limit=1)[0]
    assert (platform.action, platform.detail["tenant_id"]) == ("key.create", "acme")

    listed = invoke(runner, "keys", "tenant-key", "list", "--tenant", "acme")
    assert listed.exit_code == 0
    assert listed.stdout.startswith("acme-mail: roles issuer, portal, created ")
    assert "last used " in listed.stdout
    assert key not in listed.output
    assert key.rsplit(".", 1)[1] not in listed.output

    revoked = invoke(
        runner, "keys", "tenant-key", "revoke", "acme-mail", "--tenant", "acme", "--reason", "r"
    )
    assert revoked.exit_code == 0, revoked.output
    assert client.post("/v1/links", json=link, headers=headers).status_code == 401
    event = store.tenant("acme").audit_events(limit=1)[0]
    assert (event.action, event.actor) == ("key.revoke", "cli")
    assert invoke(runner, "keys", "tenant-key", "list", "--tenant", "acme").stdout == ""


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["create", "acme-mail", "--tenant", "globex", "--role", "issuer"], "tenant_not_found"),
        (["create", "acme-mail", "--tenant", "Globex!", "--role", "issuer"], "invalid_request"),
        (["create", "bad name", "--tenant", "acme", "--role", "issuer"], "invalid_request"),
        (["create", "taken", "--tenant", "acme", "--role", "admin"], "key_exists"),
        (["revoke", "nobody", "--tenant", "acme"], "key_not_found"),
        (["revoke", "taken", "--tenant", "globex"], "tenant_not_found"),
    ],
)
def test_tenant_key_refuses_what_the_api_refuses(service_app, args, code):
    runner = service_app.test_cli_runner()
    create_acme(runner)
    taken = ["create", "taken", "--tenant", "acme", "--role", "issuer", "--reason", "r"]
    assert invoke(runner, "keys", "tenant-key", *taken).exit_code == 0
    result = invoke(runner, "keys", "tenant-key", *args, "--reason", "r")
    assert result.exit_code == 1
    assert f"Error: {code}: " in result.stderr
    assert "tk." not in result.output
    names = [k.name for k in service_app.extensions["store"].tenant("acme").keys()]
    assert names == ["taken"]
