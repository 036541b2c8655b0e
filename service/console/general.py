"""Email › Settings › General Setting: switch, lifetime, first-browser binding, role mailboxes.

The same page for both kinds of admin, in the tenant :func:`service.console.
auth.guard` settled. A save sends only what changed through
:func:`service.admin.update_settings`, the very code of
``PATCH /v1/admin/settings``, so the audit log says what the admin changed
and a value the API would refuse is refused here, in words, with nothing
saved.
"""

from __future__ import annotations

import re
from typing import Any

from flask import current_app, flash, g, redirect, render_template, request, url_for

from service import admin
from service.clock import utcnow
from service.console import bp
from service.console.display import FORM_UNITS, UNITS, duration, field_message, split_lifetime
from service.console.pages import TENANT
from service.errors import ApiError
from service.http import whole_number
from service.tenancy import tenant_portal

__all__: list[str] = []

#: The form field of the role mailbox list: one name a line.
MAILBOXES = "role_mailboxes"
#: How much of a refused name the message repeats.
_SHOWN = 60
_MAILBOX_DETAIL = re.compile(r"^role_mailboxes\[(?P<index>\d+)\]: (?P<message>.*)$")


def _max_ttl() -> int:
    return current_app.extensions["deployment"].max_ttl_seconds


def _lines(text: str) -> list[tuple[int, str]]:
    """Return the names of the list's text with their line numbers (blank lines skipped)."""
    return [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]


def _mailbox_message(error: ApiError, lines: list[tuple[int, str]]) -> str:
    """Say which line of the list was refused, and why."""
    match = _MAILBOX_DETAIL.match(error.detail)
    if match is None or int(match["index"]) >= len(lines):
        return field_message(error.detail)
    number, name = lines[int(match["index"])]
    shown = name if len(name) <= _SHOWN else name[:_SHOWN] + "…"
    return f"Role mailboxes, line {number}: “{shown}” is not a mailbox name: {match['message']}."


def _settings_page(form: dict[str, Any] | None = None, error: str | None = None) -> Any:
    max_ttl = _max_ttl()
    current = admin.settings_json(g.store.settings(), max_ttl, tenant_portal())
    if form is None:
        value, unit = split_lifetime(current["token_ttl_seconds"])
        form = {
            "enabled": current["auto_login_enabled"],
            "value": str(value),
            "unit": unit,
            "bind": current["bind_to_first_device"],
            "mailboxes": "\n".join(current["role_mailboxes"]),
        }
    units = list(FORM_UNITS)
    if form["unit"] not in units:
        units.insert(0, form["unit"])  # a lifetime set through the API in minutes
    page = render_template(
        "console/settings.html",
        current=current,
        form=form,
        units=units,
        max_ttl=max_ttl,
        max_mailboxes=admin.MAX_ROLE_MAILBOXES,
        error=error,
    )
    return page, 400 if error else 200


@bp.get(f"{TENANT}/settings")
def settings() -> Any:
    """Show the auto-login switch, the link lifetime, first-browser binding and role mailboxes."""
    return _settings_page()


@bp.post(f"{TENANT}/settings")
def save_settings() -> Any:
    """Save what changed, through the admin API's own checks."""
    max_ttl = _max_ttl()
    form = {
        "enabled": request.form.get("auto_login_enabled") == "on",
        "value": request.form.get("ttl_value", "").strip(),
        "unit": request.form.get("ttl_unit", ""),
        "bind": request.form.get("bind_to_first_device") == "on",
        # Absent (a form of an older page): the list is left as it is.
        "mailboxes": request.form.get(MAILBOXES),
    }
    # Any size: a lifetime above the maximum gets its own message below.
    value = whole_number(form["value"], 1, 10**18)
    if value is None or form["unit"] not in UNITS:
        return _settings_page(form, "Enter the lifetime as a whole number of hours or days.")
    ttl = value * UNITS[form["unit"]]
    if ttl > max_ttl:
        return _settings_page(
            form,
            f"The lifetime can be at most {duration(max_ttl)}: that is the maximum this "
            "deployment allows (MAX_TOKEN_TTL_SECONDS).",
        )
    current = admin.settings_json(g.store.settings(), max_ttl)
    wanted: dict[str, Any] = {
        "auto_login_enabled": form["enabled"],
        "token_ttl_seconds": ttl,
        "bind_to_first_device": form["bind"],
    }
    lines: list[tuple[int, str]] = []
    if form["mailboxes"] is not None:
        lines = _lines(form["mailboxes"])
        try:
            # Sorted, each once, as the store keeps it: so an unchanged list,
            # typed in another order, is no change.
            wanted[MAILBOXES] = list(admin.validate_role_mailboxes([n for _, n in lines]))
        except ApiError as e:
            return _settings_page(form, _mailbox_message(e, lines))
    else:
        form["mailboxes"] = "\n".join(current[MAILBOXES])
    # Only what changed is written, so the audit log says what the admin changed.
    body = {name: value for name, value in wanted.items() if current[name] != value}
    if not body:
        flash("Nothing to save: the settings are as they were.", "info")
        return redirect(url_for("console.settings"))
    try:
        # The same call as PATCH /v1/admin/settings; it answers the new settings.
        saved = admin.update_settings(g.store, body, max_ttl, actor=g.actor, now=utcnow())
    except ApiError as e:
        if e.status >= 500:
            raise
        message = _mailbox_message(e, lines) if MAILBOXES in e.detail else None
        return _settings_page(form, message or field_message(e.detail))
    flash(_saved_message(saved, changed=body), "success")
    return redirect(url_for("console.settings"))


def _saved_message(saved: dict[str, Any], *, changed: dict[str, Any]) -> str:
    state = "on" if saved["auto_login_enabled"] else "off"
    words = [
        f"Saved. Auto-login links are {state}; new links live "
        f"{duration(saved['token_ttl_seconds'])}."
    ]
    if "bind_to_first_device" in changed:
        words.append(
            "Each link now works only in the browser that opens it first."
            if saved["bind_to_first_device"]
            else "Links are no longer bound to the first browser."
        )
    if MAILBOXES in changed:
        count = len(saved[MAILBOXES])
        if count == 0:
            words.append("No role mailboxes: a shared mailbox that is the user's own gets a token.")
        elif count == 1:
            words.append("1 role mailbox gets no token.")
        else:
            words.append(f"{count} role mailboxes get no token.")
    return " ".join(words)
