"""Command-line tools for operators.

    flask --app service epoch bump --reason "signing key leaked"
    flask --app service keys list
    flask --app service keys new
    flask --app service keys rotate
    flask --app service keys api-key --name mail-helper --role issuer
    flask --app service tenants create acme --portal-base-url URL --reason "new customer"
    flask --app service tenants list [--prefix ac] [--limit 50]
    flask --app service tenants delete acme --reason "contract ended" [--yes]
    flask --app service keys tenant-key create acme-mail --tenant acme --role issuer --reason R
    flask --app service keys tenant-key list --tenant acme
    flask --app service keys tenant-key revoke acme-mail --tenant acme --reason R

``keys list|new|rotate|api-key`` never change a running deployment: those
keys live in the deployment config (``$SERVICE_CONFIG``). They print what to
put there; a new secret or API key is shown once, on the operator's
terminal, never logged.

``tenants`` and ``keys tenant-key`` change the store the deployment serves
from, at once, through the code the API uses (:mod:`service.tenants`, the
store's methods): the same checks, the same audit events (the actor is
``cli`` unless ``--actor`` says otherwise). A new tenant key is printed once,
alone on standard output; the store keeps only its digest.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from service import admin, tenants
from service.admin import validate_reason
from service.clock import isoformat, utcnow
from service.config import ROLES
from service.errors import ApiError, StoreError
from service.store import Store
from service.tenancy import validate_tenant_id

__all__ = ["init_app"]

epoch_cli = AppGroup("epoch", help="Read or bump the global epoch.")


@epoch_cli.command("show")
def show_epoch() -> None:
    """Print the current global epoch."""
    info = current_app.extensions["store"].epoch()
    click.echo(f"epoch {info.epoch} since {isoformat(info.changed_at)} by {info.changed_by}")


@epoch_cli.command("bump")
@click.option("--reason", required=True, help="Why every outstanding link is voided.")
@click.option("--actor", default="cli", show_default=True, help="Name recorded in the audit log.")
def bump_epoch(reason: str, actor: str) -> None:
    """Void every outstanding auto-login link now."""
    try:
        reason = validate_reason(reason)
    except ApiError as e:
        raise click.BadParameter(e.detail, param_hint="--reason") from None
    # The same code path as the admin API and the console.
    info = admin.bump_epoch(
        current_app.extensions["store"],
        current_app.extensions["metrics"],
        actor=actor,
        reason=reason,
        now=utcnow(),
    )
    click.echo(f"epoch {info.epoch}: every link issued before now is revoked")


keys_cli = AppGroup(
    "keys", help="Signing keys and API keys: list, create, rotate; tenant keys (tenant-key)."
)


def _new_kid() -> str:
    existing = current_app.extensions["deployment"].signing_keys
    base = utcnow().strftime("%Y-%m-%d")
    kid, n = base, 1
    while kid in existing:
        n += 1
        kid = f"{base}.{n}"
    return kid


@keys_cli.command("list")
def list_keys() -> None:
    """List the signing key ids and API key names (never a secret)."""
    deployment = current_app.extensions["deployment"]
    for kid in deployment.signing_keys:
        marker = " (active: signs new links)" if kid == deployment.active_key_id else ""
        click.echo(f"signing key {kid}{marker}")
    for key in deployment.api_keys:
        click.echo(f"API key {key.name}: roles {', '.join(sorted(key.roles))}")


@keys_cli.command("new")
@click.option("--kid", help="Key id of the new signing key (default: today's date).")
def new_key(kid: str | None) -> None:
    """Print a new signing secret to add to SIGNING_KEYS (shown once)."""
    kid = kid or _new_kid()
    click.echo(f'"{kid}" = "{secrets.token_urlsafe(48)}"')
    click.echo(f"# add this line under [SIGNING_KEYS] in $SERVICE_CONFIG; key id {kid}", err=True)


@keys_cli.command("rotate")
def rotate_keys() -> None:
    """Print the config of a rotation: a new active key, the old ones still verifying."""
    deployment = current_app.extensions["deployment"]
    kid = _new_kid()
    retire_after = utcnow().timestamp() + deployment.max_ttl_seconds
    click.echo(f'ACTIVE_KEY_ID = "{kid}"')
    click.echo("[SIGNING_KEYS]")
    click.echo(f'"{kid}" = "{secrets.token_urlsafe(48)}"')
    for old in deployment.signing_keys:
        click.echo(f'"{old}" = "<keep the current secret of {old}>"')
    from service.clock import from_seconds

    click.echo(
        "# 1. put the lines above into $SERVICE_CONFIG and restart every worker and host;\n"
        "# 2. links signed with the old keys keep working until they expire;\n"
        f"# 3. remove the old keys after {isoformat(from_seconds(retire_after))} "
        "(now + MAX_TOKEN_TTL_SECONDS) and restart again.\n"
        "# A leaked key: remove it at once and run `flask epoch bump --reason ...`.",
        err=True,
    )


@keys_cli.command("api-key")
@click.option("--name", required=True, help="Name of the caller (shown in the audit log).")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice(["issuer", "portal", "admin"]),
    help="A role of the key; repeat for several.",
)
def new_api_key(name: str, roles: tuple[str, ...]) -> None:
    """Print a new API key (shown once) and the API_KEYS line with its digest."""
    key = f"{name}-{secrets.token_urlsafe(32)}"
    digest = hashlib.sha256(key.encode()).hexdigest()
    role_list = ", ".join(f'"{r}"' for r in dict.fromkeys(roles))
    click.echo(f"key (give it to the caller; it is not stored anywhere): {key}", err=True)
    click.echo(f'"{name}" = {{ sha256 = "{digest}", roles = [{role_list}] }}')
    click.echo("# add the line above under [API_KEYS] in $SERVICE_CONFIG and restart", err=True)


# -- tenants and their keys: the API's code path, from the shell -------------------

#: Who the audit logs name when ``--actor`` is not given.
CLI_ACTOR = "cli"
#: Tenants read per page by ``tenants list`` (the API's largest page).
LIST_PAGE = admin.MAX_LIMIT

actor_option = click.option(
    "--actor", default=CLI_ACTOR, show_default=True, help="Name recorded in the audit logs."
)
reason_option = click.option("--reason", required=True, help="Why (kept in the audit logs).")


@contextmanager
def _refusals() -> Iterator[None]:
    """Turn the API's refusals and store failures into a message and exit status 1."""
    try:
        yield
    except ApiError as e:
        raise click.ClickException(f"{e.code}: {e.detail}") from None
    except StoreError as e:
        raise click.ClickException(
            f"store unavailable: {e} (a create or delete may have been applied all the same: "
            "repeating it says so)"
        ) from None


def _store() -> Store:
    return current_app.extensions["store"]


def _tenant_line(info: Any) -> str:
    deployment = current_app.extensions["deployment"]
    t = tenants.tenant_json(
        info, deployment_portal=deployment.portal_base_url, max_ttl=deployment.max_ttl_seconds
    )
    switch = "on" if t["auto_login_enabled"] else "off"
    return (
        f"{t['tenant_id']}  {t['portal_base_url']}  created {t['created_at']}  "
        f"auto-login {switch}  lifetime {t['token_ttl_seconds']} s"
    )


tenants_cli = AppGroup("tenants", help="Create, list and delete tenants (the platform's work).")


@tenants_cli.command("create")
@click.argument("tenant_id")
@click.option("--portal-base-url", required=True, help="The tenant's own portal address.")
@reason_option
@actor_option
def create_tenant(tenant_id: str, portal_base_url: str, reason: str, actor: str) -> None:
    """Create a tenant: auto-login off, the default lifetime, its own portal address."""
    development = current_app.extensions["deployment"].development
    body = {"tenant_id": tenant_id, "portal_base_url": portal_base_url, "reason": reason}
    with _refusals():
        # POST /v1/admin/tenants's own checks and change.
        info = tenants.create_tenant(
            _store(), body, development=development, actor=actor, now=utcnow()
        )
    click.echo(_tenant_line(info))


@tenants_cli.command("list")
@click.option("--prefix", default="", help="Only the ids that start with this.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Print at most this many (default: every tenant, read a page at a time).",
)
def list_tenants(prefix: str, limit: int | None) -> None:
    """List the tenants by id, default included."""
    with _refusals():
        prefix = tenants.validate_prefix(prefix)
        after, printed = None, 0
        while limit is None or printed < limit:
            page = LIST_PAGE if limit is None else min(LIST_PAGE, limit - printed)
            found = _store().list_tenants(after=after, prefix=prefix, limit=page)
            for info in found:
                click.echo(_tenant_line(info))
            printed += len(found)
            if len(found) < page:
                break
            after = found[-1].tenant_id


@tenants_cli.command("delete")
@click.argument("tenant_id")
@reason_option
@actor_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete_tenant(tenant_id: str, reason: str, actor: str, yes: bool) -> None:
    """Delete a tenant: its links and keys stop at once, then its data is removed."""
    with _refusals():
        # The checks of DELETE /v1/admin/tenants/{tenant_id}, in its order.
        tenant_id = tenants.deletable(tenant_id)
        reason = validate_reason(reason)
        _store().get_tenant(tenant_id)  # an unknown id says so before the question
    if not yes:
        click.confirm(
            f"Delete tenant {tenant_id!r}? Every link and key of it stops working now, "
            "and its settings, users and logs are removed.",
            abort=True,
        )
    reaper = current_app.extensions["reaper"]
    with _refusals():
        # The API's delete: the store's, then the reaper in the background.
        tenants.delete_tenant(_store(), reaper, tenant_id, actor=actor, reason=reason, now=utcnow())
    click.echo(f"tenant {tenant_id} deleted: its links and keys are refused, the id is free")
    # This process ends here, unlike a worker: wait for its reaper to finish.
    # Stopped halfway (Ctrl-C), the service's reaper goes on from where it was.
    click.echo("removing its data from the store ...", err=True)
    reaper.wait()
    click.echo(
        "done (a step that failed is logged above; the service's reaper retries it)", err=True
    )


tenant_keys_cli = AppGroup(
    "tenant-key", help="A tenant's own API keys, kept in the store: create, list, revoke."
)
tenant_option = click.option("--tenant", "tenant_id", required=True, help="The tenant's id.")


def _tenant_store(tenant_id: str) -> Store:
    """Return the store acting in ``tenant_id`` (well-formed; existence checked by each call)."""
    return _store().tenant(validate_tenant_id(tenant_id))


@tenant_keys_cli.command("create")
@click.argument("name")
@tenant_option
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice(sorted(ROLES)),
    help="A role of the key; repeat for several.",
)
@reason_option
@actor_option
def create_tenant_key(
    name: str, tenant_id: str, roles: tuple[str, ...], reason: str, actor: str
) -> None:
    """Make a tenant key; it is printed this once (the store keeps its digest only)."""
    with _refusals():
        reason = validate_reason(reason)
        store = _tenant_store(tenant_id)
        body = {"name": name, "roles": list(dict.fromkeys(roles))}
        made = tenants.create_key(store, body, actor=actor, reason=reason, now=utcnow())
    click.echo(
        f"key {made['name']} of tenant {store.tenant_id}, roles {', '.join(made['roles'])}: "
        "give it to its caller; it is shown this once and stored as a digest only",
        err=True,
    )
    click.echo(made["key"])


@tenant_keys_cli.command("list")
@tenant_option
def list_tenant_keys(tenant_id: str) -> None:
    """List a tenant's keys: names, roles, when made and last used (never a key)."""
    with _refusals():
        records = _tenant_store(tenant_id).keys()
    for record in records:
        k = tenants.key_json(record)
        used = k["last_used_at"] or "never"
        click.echo(
            f"{k['name']}: roles {', '.join(k['roles'])}, created {k['created_at']}, "
            f"last used {used}"
        )


@tenant_keys_cli.command("revoke")
@click.argument("name")
@tenant_option
@reason_option
@actor_option
def revoke_tenant_key(name: str, tenant_id: str, reason: str, actor: str) -> None:
    """Revoke a tenant key: unknown on every worker and host when this returns."""
    with _refusals():
        # The checks of DELETE /v1/admin/keys/{name}, in its order.
        name = tenants.validate_key_name(name)
        reason = validate_reason(reason)
        store = _tenant_store(tenant_id)
        store.revoke_key(name, actor=actor, reason=reason, now=utcnow())
    click.echo(f"key {name} of tenant {store.tenant_id} revoked")


keys_cli.add_command(tenant_keys_cli)


def init_app(app: Flask) -> None:
    """Register the command groups."""
    app.cli.add_command(epoch_cli)
    app.cli.add_command(keys_cli)
    app.cli.add_command(tenants_cli)
