"""A small helpdesk portal that signs users in from auto-login links.

Run it on its own (the service must run too; ``make demo`` starts both)::

    AUTOLOGIN_PORTAL_KEY=... PORTAL_SECRET_KEY=... python examples/portal/app.py

One portal serves several tenants (helpdesks) of the service, each on its own
host name, when ``AUTOLOGIN_TENANT_HOSTS`` maps them::

    AUTOLOGIN_TENANT_HOSTS=acme.localhost=acme,globex.localhost=globex ...

Each tenant has its own users (user 42 of acme is not user 42 of globex) and
a session belongs to the tenant it was made in. ``AUTOLOGIN_TENANT=acme`` makes
it the portal of that one tenant, whatever the host.

Links bound to their first browser (the service's ``bind_to_first_device``)
need the middleware's device cookie, which is ``Secure``: on plain http (a
development portal on 127.0.0.1) say ``PORTAL_ENV=development``.

It serves with werkzeug's server and an access log that never prints a query
string: the first GET of a link carries the token in its URL.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from pathlib import Path
from typing import Any

from flask import Flask, abort, flash, g, redirect, render_template, request, session, url_for
from werkzeug.serving import WSGIRequestHandler, make_server

from service.portal import (
    FAILURE_MESSAGES,
    TENANT_ENVIRON_KEY,
    FlaskAutoLogin,
    LoginRefusedError,
    is_portal_path,
    tenant_from_host,
)

HERE = Path(__file__).resolve().parent
log = logging.getLogger("portal")

#: The portal's users (a real portal has a database; 42 is the demo's Alice).
USERS = {
    "42": {"name": "Alice Example", "email": "alice@example.com", "password": "alice"},
    "43": {"name": "Bob Example", "email": "bob@example.com", "password": "bob"},
}
#: Each tenant's users and the name of its helpdesk: user ids are per tenant.
TENANTS = {
    None: ("Helpdesk portal", USERS),
    "default": ("Helpdesk portal", USERS),
    "acme": (
        "Acme helpdesk",
        {"42": {"name": "Alice Acme", "email": "alice@acme.example.com", "password": "alice"}},
    ),
    "globex": (
        "Globex helpdesk",
        {
            "42": {
                "name": "Gloria Globex",
                "email": "gloria@globex.example.com",
                "password": "gloria",
            }
        },
    ),
}
TICKETS = {
    "1234": ("Printer on floor 3 does not print", "We replaced the fuser unit."),
    "1235": ("New laptop for the sales team", "Ordered; delivery expected on Friday."),
}
#: What the login page says after a link failed, by the middleware's reason.
MESSAGES = {
    "token_expired": "This sign-in link is expired or revoked. Please sign in.",
    "token_invalid": "This sign-in link is not valid. Please sign in.",
    "service_unavailable": "Automatic sign-in is not available right now. Please sign in.",
    "login_refused": "This link cannot sign you in. Please sign in.",
}
#: Links that will not sign anyone in here again, however often they are
#: clicked: voided, or bound to the browser that opened them first. The person
#: lands on a page of their own that says so and how to sign in
#: (FAILURE_MESSAGES: nothing about whose link it was or why it was voided).
LANDINGS = ("token_revoked", "token_bound_elsewhere")


def users_of(tenant: str | None) -> dict[str, dict[str, str]]:
    """Return the users of ``tenant`` (``None``: a portal that names no tenant)."""
    return TENANTS[tenant][1] if tenant in TENANTS else {}


def sign_in_from_link(request: Any, user_id: str, claims: dict[str, Any]) -> None:
    """Sign in the user a verified link names (the middleware's ``login`` callback)."""
    # The tenant the link was verified in: user_id is one of its users, not
    # a user of the same id in another tenant.
    tenant = request.environ.get(TENANT_ENVIRON_KEY)
    if user_id not in users_of(tenant):
        raise LoginRefusedError(user_id)
    # A fresh session: whoever was signed in on this browser before is not any more.
    session.clear()
    session["tenant"] = tenant
    session["user_id"] = user_id
    session["via"] = "link"
    log.info("user %s%s signed in with a link", user_id, f" of {tenant}" if tenant else "")


def link_failed(request: Any, reason: str) -> None:
    """Tell the next page why the link did not sign anyone in (``on_failure``)."""
    if reason in LANDINGS:
        # The next page shows the landing (see link_landing in create_portal).
        session["link_ended"] = reason
    else:
        flash(MESSAGES.get(reason, MESSAGES["token_invalid"]), "warning")


def create_portal(config: dict[str, Any] | None = None) -> Flask:
    """Create the portal, wrapped in the auto-login middleware."""
    app = Flask(__name__, root_path=str(HERE))
    app.config.from_mapping(
        SECRET_KEY=os.environ.get("PORTAL_SECRET_KEY"),
        AUTOLOGIN_SERVICE_URL=os.environ.get("AUTOLOGIN_SERVICE_URL", "http://127.0.0.1:8000"),
        AUTOLOGIN_PORTAL_KEY=os.environ.get("AUTOLOGIN_PORTAL_KEY"),
        AUTOLOGIN_CONFIRM=os.environ.get("AUTOLOGIN_CONFIRM", "") == "1",
        # "acme.localhost=acme,globex.localhost=globex": host name -> tenant id.
        AUTOLOGIN_TENANT_HOSTS=_host_table(os.environ.get("AUTOLOGIN_TENANT_HOSTS", "")),
        AUTOLOGIN_TENANT=os.environ.get("AUTOLOGIN_TENANT") or None,
        # "development": plain http, so the device cookie is not Secure.
        PORTAL_ENV=os.environ.get("PORTAL_ENV", "production"),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    if config:
        app.config.from_mapping(config)
    for key in ("SECRET_KEY", "AUTOLOGIN_PORTAL_KEY"):
        if not app.config.get(key):
            raise RuntimeError(f"{key} is not set (environment: see examples/portal/README.md)")

    # The tenant of a request: from its host, or the one tenant of this
    # portal, or none at all (a portal of a deployment without tenants).
    tenant: Any = app.config["AUTOLOGIN_TENANT"]
    if app.config["AUTOLOGIN_TENANT_HOSTS"]:
        tenant = tenant_from_host(app.config["AUTOLOGIN_TENANT_HOSTS"])
    FlaskAutoLogin(
        app,
        login=sign_in_from_link,
        on_failure=link_failed,
        service_url=app.config["AUTOLOGIN_SERVICE_URL"],
        api_key=app.config["AUTOLOGIN_PORTAL_KEY"],
        confirm=app.config["AUTOLOGIN_CONFIRM"],
        tenant=tenant,
        secure_cookies=app.config["PORTAL_ENV"] != "development",
    )

    @app.before_request
    def find_tenant() -> None:
        g.tenant = tenant(request.environ) if callable(tenant) else tenant
        if callable(tenant) and g.tenant is None:
            abort(404, "There is no helpdesk at this address.")

    @app.context_processor
    def helpdesk() -> dict[str, str]:
        return {"helpdesk": TENANTS.get(g.tenant, (g.tenant or "Helpdesk portal",))[0]}

    @app.context_processor
    def link_landing() -> dict[str, Any]:
        # Shown once, on the next page (the sign-in page, as the link's page
        # asks a signed-out visitor to sign in): heading and sentence.
        reason = session.pop("link_ended", None) if "link_ended" in session else None
        return {"link_ended": FAILURE_MESSAGES.get(reason) if reason in LANDINGS else None}

    def current_user() -> dict[str, str] | None:
        # A session belongs to the tenant it was made in.
        if session.get("tenant") != g.tenant:
            return None
        user_id = session.get("user_id")
        users = users_of(g.tenant)
        return {"id": user_id, **users[user_id]} if user_id in users else None

    @app.get("/")
    def home() -> Any:
        user = current_user()
        if user is None:
            return redirect(url_for("login"))
        return render_template("home.html", user=user, tickets=TICKETS)

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        next_path = request.values.get("next", "/")
        if not is_portal_path(next_path):
            next_path = "/"
        if request.method == "POST":
            user_id = request.form.get("user_id", "")
            user = users_of(g.tenant).get(user_id)
            if user is not None and request.form.get("password") == user["password"]:
                session.clear()
                session["tenant"] = g.tenant
                session["user_id"] = user_id
                session["via"] = "password"
                log.info("user %s signed in with a password", user_id)
                return redirect(next_path, 303)
            flash("Unknown user or wrong password.", "error")
        return render_template(
            "login.html", next=next_path, user=current_user(), users=users_of(g.tenant)
        )

    @app.post("/logout")
    def logout() -> Any:
        session.clear()
        flash("You are signed out.", "info")
        return redirect(url_for("login"), 303)

    @app.get("/tickets/<ticket_id>")
    def ticket(ticket_id: str) -> Any:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", ticket_id):
            abort(404)
        user = current_user()
        if user is None:
            return redirect(url_for("login", next=request.path))
        title, update = TICKETS.get(ticket_id, (f"Ticket {ticket_id}", "No updates yet."))
        return render_template(
            "ticket.html", user=user, ticket_id=ticket_id, title=title, update=update
        )

    return app


def _host_table(text: str) -> dict[str, str]:
    """Read ``host=tenant,host=tenant`` (``AUTOLOGIN_TENANT_HOSTS``)."""
    table = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        host, equals, tenant = item.partition("=")
        if not equals:
            raise RuntimeError(f"AUTOLOGIN_TENANT_HOSTS: {item!r} is not host=tenant")
        table[host.strip()] = tenant.strip()
    return table


class QuietRequestHandler(WSGIRequestHandler):
    """werkzeug's request handler with an access log that never prints the query."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = self.path.split("?", 1)[0]
        self.log("info", '"%s %s %s" %s %s', self.command, path, self.request_version, code, size)

    def log(self, type: str, message: str, *args: Any) -> None:
        # Errors (a bad request line, a broken pipe) may quote the request:
        # cut every query string out of whatever is logged.
        text = re.sub(r"\?[^\s\"']*", "?[query removed]", message % args if args else message)
        super().log(type, "%s", text)


def main() -> None:
    """Serve the portal (werkzeug, threaded) until Ctrl-C."""
    parser = argparse.ArgumentParser(description="The example portal.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="[portal] %(message)s")
    server = make_server(
        args.host, args.port, create_portal(), threaded=True, request_handler=QuietRequestHandler
    )
    print(f"[portal] serving on http://{args.host}:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
