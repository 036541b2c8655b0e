"""A small helpdesk portal that signs users in from auto-login links.

Run it on its own (the service must run too; ``make demo`` starts both)::

    AUTOLOGIN_PORTAL_KEY=... PORTAL_SECRET_KEY=... python examples/portal/app.py

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

from flask import Flask, abort, flash, redirect, render_template, request, session, url_for
from werkzeug.serving import WSGIRequestHandler, make_server

from service.portal import FlaskAutoLogin, LoginRefusedError, is_portal_path

HERE = Path(__file__).resolve().parent
log = logging.getLogger("portal")

#: The portal's users (a real portal has a database; 42 is the demo's Alice).
USERS = {
    "42": {"name": "Alice Example", "email": "alice@example.com", "password": "alice"},
    "43": {"name": "Bob Example", "email": "bob@example.com", "password": "bob"},
}
TICKETS = {
    "1234": ("Printer on floor 3 does not print", "We replaced the fuser unit."),
    "1235": ("New laptop for the sales team", "Ordered; delivery expected on Friday."),
}
#: What the login page says after a link failed, by the middleware's reason.
MESSAGES = {
    "token_expired": "This sign-in link is expired or revoked. Please sign in.",
    "token_revoked": "This sign-in link is expired or revoked. Please sign in.",
    "token_invalid": "This sign-in link is not valid. Please sign in.",
    "service_unavailable": "Automatic sign-in is not available right now. Please sign in.",
    "login_refused": "This link cannot sign you in. Please sign in.",
}


def sign_in_from_link(request: Any, user_id: str, claims: dict[str, Any]) -> None:
    """Sign in the user a verified link names (the middleware's ``login`` callback)."""
    if user_id not in USERS:
        raise LoginRefusedError(user_id)
    # A fresh session: whoever was signed in on this browser before is not any more.
    session.clear()
    session["user_id"] = user_id
    session["via"] = "link"
    log.info("user %s signed in with a link", user_id)


def link_failed(request: Any, reason: str) -> None:
    """Tell the next page why the link did not sign anyone in (``on_failure``)."""
    flash(MESSAGES.get(reason, MESSAGES["token_invalid"]), "warning")


def create_portal(config: dict[str, Any] | None = None) -> Flask:
    """Create the portal, wrapped in the auto-login middleware."""
    app = Flask(__name__, root_path=str(HERE))
    app.config.from_mapping(
        SECRET_KEY=os.environ.get("PORTAL_SECRET_KEY"),
        AUTOLOGIN_SERVICE_URL=os.environ.get("AUTOLOGIN_SERVICE_URL", "http://127.0.0.1:8000"),
        AUTOLOGIN_PORTAL_KEY=os.environ.get("AUTOLOGIN_PORTAL_KEY"),
        AUTOLOGIN_CONFIRM=os.environ.get("AUTOLOGIN_CONFIRM", "") == "1",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    if config:
        app.config.from_mapping(config)
    for key in ("SECRET_KEY", "AUTOLOGIN_PORTAL_KEY"):
        if not app.config.get(key):
            raise RuntimeError(f"{key} is not set (environment: see examples/portal/README.md)")

    FlaskAutoLogin(
        app,
        login=sign_in_from_link,
        on_failure=link_failed,
        service_url=app.config["AUTOLOGIN_SERVICE_URL"],
        api_key=app.config["AUTOLOGIN_PORTAL_KEY"],
        confirm=app.config["AUTOLOGIN_CONFIRM"],
    )

    def current_user() -> dict[str, str] | None:
        user_id = session.get("user_id")
        return {"id": user_id, **USERS[user_id]} if user_id in USERS else None

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
            user = USERS.get(user_id)
            if user is not None and request.form.get("password") == user["password"]:
                session.clear()
                session["user_id"] = user_id
                session["via"] = "password"
                log.info("user %s signed in with a password", user_id)
                return redirect(next_path, 303)
            flash("Unknown user or wrong password.", "error")
        return render_template("login.html", next=next_path, user=current_user())

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
