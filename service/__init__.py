"""The auto-login link service: signed, revocable portal links for ticket emails."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import partial
from typing import Any

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin

from service.config import key_ring, load_config, validate_config
from service.signins import SigninLog
from service.store import Settings, open_store

__all__ = ["close_app", "create_app"]

#: Request bodies above this are refused with 413 before they are read.
MAX_BODY_BYTES = 1024 * 1024


class _NoSessions(SessionInterface):
    def open_session(self, app: Flask, request: Request) -> SessionMixin:
        return self.make_null_session(app)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        return None


def create_app(
    test_config: Mapping[str, Any] | None = None, *, instance_path: str | None = None
) -> Flask:
    """Create the service: load and check settings, open the store, register blueprints.

    :param instance_path: the instance folder (development keys, the default
        SQLite store); Flask's default ``./instance`` of the project when omitted.
    """
    app = Flask(__name__, instance_relative_config=True, instance_path=instance_path)
    load_config(app, test_config)
    deployment = validate_config(app.config, app.instance_path)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    # The API has no cookies: only the console (its own app under /admin) has
    # sessions, so no request here pays for opening one.
    app.session_interface = _NoSessions()
    app.json.sort_keys = False

    store = open_store(
        deployment.store_url,
        defaults=Settings(False, deployment.default_ttl_seconds),
        options=deployment.store_options,
    )
    app.extensions["deployment"] = deployment
    app.extensions["store"] = store
    app.extensions["signin_log"] = SigninLog(
        store, retention_days=deployment.log_retention_days, enabled=deployment.signin_log
    )
    app.extensions["ring"] = key_ring(deployment)
    from service import cli, console, http, logs, metrics, ratelimit

    logs.init_app(
        app,
        secrets=[s.decode() for s in deployment.signing_keys.values()]
        + [deployment.secret_key.decode("utf-8", "replace")],
        token_param=deployment.token_param,
    )
    from service.api import admin, keys, links, ops, scrub, tenants, verify
    from service.tenants import Reaper

    ratelimit.init_app(app, store)
    metrics.init_app(app)
    http.init_app(app)
    # Every tenant-scoped call twice: as it always was (the key's tenant, or
    # default), and under /v1/tenants/<tenant_id>/ (service/tenancy.py).
    for module, twin in (
        (links, "/links"),
        (verify, "/tokens"),
        (scrub, ""),
        (admin, "/admin"),
        (keys, "/admin/keys"),
    ):
        app.register_blueprint(module.bp)
        app.register_blueprint(
            module.bp, name=f"tenant_{module.bp.name}", url_prefix=f"/v1/tenants/<tenant_id>{twin}"
        )
    for module in (tenants, ops):
        app.register_blueprint(module.bp)
    # The reaper opens its own store in a process of its own for a big delete.
    opener = partial(
        open_store,
        deployment.store_url,
        defaults=Settings(False, deployment.default_ttl_seconds),
        options=deployment.store_options,
    )
    reaper = app.extensions["reaper"] = Reaper(store, opener)

    @app.before_request
    def _resume_deletions() -> None:
        # Once per process: a deletion a restart interrupted goes on.
        if app.extensions.get("reaper_kicked") != os.getpid():
            app.extensions["reaper_kicked"] = os.getpid()
            reaper.kick()

    cli.init_app(app)
    console.init_app(app)
    from service.fastpath import VerifyFastPath

    # Outermost: a good click skips Flask's per-request machinery altogether.
    app.wsgi_app = VerifyFastPath(app.wsgi_app, app)  # type: ignore[method-assign]
    return app


def close_app(app: Flask) -> None:
    """Release what ``app`` holds: write its last sign-in entries, then close its store.

    A served process needs no call (its exit writes the sign-in log); tests,
    benchmarks and embedding code that build apps one after another do.
    """
    app.extensions["signin_log"].close()  # its writer thread uses the store: first
    app.extensions["reaper"].close()
    app.extensions["store"].close()
