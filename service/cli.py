"""Command-line tools for operators.

    flask --app service epoch bump --reason "signing key leaked"
    flask --app service keys list
    flask --app service keys new
    flask --app service keys rotate
    flask --app service keys api-key --name mail-helper --role issuer

The ``keys`` commands never change a running deployment: keys live in the
deployment config (``$SERVICE_CONFIG``). They print what to put there; a new
secret or API key is shown once, on the operator's terminal, never logged.
"""

from __future__ import annotations

import hashlib
import secrets

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from service import admin
from service.admin import validate_reason
from service.clock import isoformat, utcnow
from service.errors import ApiError

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


keys_cli = AppGroup("keys", help="Signing keys and API keys: list, create, rotate.")


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


def init_app(app: Flask) -> None:
    """Register the command groups."""
    app.cli.add_command(epoch_cli)
    app.cli.add_command(keys_cli)
