"""Command-line tools: ``flask --app service epoch bump --reason "..."``."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from service.clock import isoformat, utcnow

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
    reason = reason.strip()
    if not 1 <= len(reason) <= 500:
        raise click.BadParameter("must be 1 to 500 characters", param_hint="--reason")
    info = current_app.extensions["store"].bump_epoch(actor=actor, reason=reason, now=utcnow())
    current_app.extensions["metrics"].epoch_bumps.inc()
    click.echo(f"epoch {info.epoch}: every link issued before now is revoked")


def init_app(app: Flask) -> None:
    """Register the command groups."""
    app.cli.add_command(epoch_cli)
