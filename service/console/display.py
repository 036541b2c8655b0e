"""Words for the console's pages: durations, audit actions, field names, reasons."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from service.console import bp

__all__ = ["ACTIONS", "UNITS", "duration", "field_message", "split_lifetime"]

#: Units of the lifetime field, largest first.
UNITS = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}
#: The units the lifetime form always offers; a smaller one only when needed.
FORM_UNITS = ("hours", "days")

ACTIONS = {
    "store.create": "Store created",
    "settings.update": "Settings changed",
    "epoch.bump": "All links voided",
    "user.revoke": "User's links voided",
    "link.revoke": "One link voided",
    "tenant.create": "Tenant created",
    "tenant.update": "Tenant's portal moved",
    "tenant.delete": "Tenant deleted",
    "key.create": "API key made",
    "key.revoke": "API key revoked",
}

_FIELDS = {
    "user_id": "User id",
    "email": "User's email",
    "recipients.to": "To",
    "recipients.cc": "CC",
    "recipients.bcc": "BCC",
    "recipients": "Recipients",
    "target": "Target",
    "reason": "Reason",
    "token_ttl_seconds": "Lifetime",
    "tenant_id": "Tenant id",
    "portal_base_url": "Portal address",
    "prefix": "Search",
    "after": "Page",
    "link_id": "Link id",
    "role_mailboxes": "Role mailboxes",
}
_FIELD_DETAIL = re.compile(
    r"^(?P<field>[a-z_.]+)(?:\[(?P<index>\d+)\])?(?P<separator>: | )(?P<message>.*)$"
)


@bp.app_template_filter("duration")
def duration(seconds: int) -> str:
    """Say ``seconds`` in the largest whole unit: ``"3 days"``, ``"90 minutes"``."""
    for name, size in UNITS.items():
        if seconds % size == 0 and seconds >= size:
            count = seconds // size
            return f"{count} {name if count != 1 else name[:-1]}"
    return "0 seconds"


def split_lifetime(seconds: int) -> tuple[int, str]:
    """Return ``seconds`` as a whole number of the largest unit that divides it."""
    for name, size in UNITS.items():
        if seconds % size == 0:
            return seconds // size, name
    return seconds, "seconds"


def field_message(detail: str) -> str:
    """Turn ``"recipients.cc[1]: is not an e-mail address"`` into words for the form.

    Also ``"portal_base_url 'x' must be ..."`` (a field named in a sentence).
    """
    match = _FIELD_DETAIL.match(detail)
    if not match or match["field"] not in _FIELDS:
        return detail[:1].upper() + detail[1:]
    label = _FIELDS[match["field"]]
    if match["index"] is not None:
        label += f" (address {int(match['index']) + 1})"
    return f"{label}{match['separator']}{match['message']}"


@bp.app_template_filter("when")
def when(moment: datetime | None, never: str = "never", *, seconds: bool = True) -> str:
    """Say a time of the store in UTC to the second (or the minute), or ``never``."""
    if moment is None:
        return never
    return moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


@bp.app_template_filter("action")
def action_label(action: str) -> str:
    """Name an audit action in words."""
    return ACTIONS.get(action, action)


@bp.app_template_filter("details")
def details(detail: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Return an audit event's detail as (name, value) pairs for a table cell."""
    return [
        (name, value if isinstance(value, str) else json.dumps(value))
        for name, value in detail.items()
    ]
