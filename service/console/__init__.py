"""The admin console: server-rendered pages under ``/admin`` for people, not scripts.

Admins sign in with an admin API key: a platform key (``API_KEYS``) acts in
any tenant and manages them on the Tenants page, a tenant key in its own
tenant only. Every change goes through :mod:`service.admin` and
:mod:`service.tenants`, the same code as the admin API, and lands in the same
audit logs with the key's name as the actor.

The console is a small Flask application of its own, mounted under
``/admin`` in front of the API (:class:`~werkzeug.middleware.dispatcher.
DispatcherMiddleware`). It shares the API's store, metrics, rate limits and
deployment settings, but not its URL map (the OpenAPI document describes
every route of the API, and the console's pages are not API calls), its
error handlers (pages here, problem documents there) or its session
machinery (the API has no cookies at all).
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.middleware.proxy_fix import ProxyFix

__all__ = ["PREFIX", "SECURITY_HEADERS", "bp", "init_app"]

#: Where the console is mounted.
PREFIX = "/admin"
#: Sent with every console response: nothing inline, nothing from elsewhere,
#: no framing, no referrer, nothing cached.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

bp = Blueprint(
    "console",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)


def _security_headers(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def init_app(app: Flask) -> None:
    """Build the console over ``app``'s store and settings and mount it under ``/admin``."""
    from service import logs
    from service.console import (  # noqa: F401  (they fill ``bp``)
        auth,
        display,
        general,
        handlers,
        keys,
        ledger,
        pages,
        platform,
    )

    deployment = app.extensions["deployment"]
    console = Flask(__name__, static_folder=None, template_folder=None)
    console.config.update(
        SECRET_KEY=deployment.secret_key,
        SESSION_COOKIE_NAME="autologin_console",
        SESSION_COOKIE_PATH=PREFIX,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        MAX_CONTENT_LENGTH=app.config["MAX_CONTENT_LENGTH"],
    )
    console.session_interface = auth.ConsoleSessionInterface()
    # One dict: the console reads the API's store, metrics and rate limiter.
    console.extensions = app.extensions
    console.register_blueprint(bp)
    console.after_request(_security_headers)
    # The same JSON access log line as the API. Redaction is process-wide:
    # create_app registered SECRET_KEY with the signing keys already.
    logs.init_app(console, secrets=(), token_param=deployment.token_param)

    wsgi = console.wsgi_app
    hops = deployment.console_trusted_proxies
    if hops:
        # Believe X-Forwarded-Proto (https, so the cookie is Secure) and
        # X-Forwarded-For (the address sign-in attempts are counted by) only
        # from the configured number of proxies: anybody can send the headers.
        wsgi = ProxyFix(wsgi, x_for=hops, x_proto=hops)
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {PREFIX: wsgi})  # type: ignore[method-assign]
    app.extensions["console"] = console
