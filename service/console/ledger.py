"""A user's page and a link's page: the ledger of live links, and voiding one link.

When a link leaks (a forwarded email, a CC on a reply, a reply stored in the
ticket), the admin finds the user (a search on the Security page, a row of
the sign-in log), sees the user's live links with their uses, and voids
exactly the one that leaked, after a reason and a confirmation, without
signing the user out of every other email. Each read and change is the admin
API's own code (:mod:`service.admin`, the store's ``links``, ``link`` and
``revoke_link``), in the tenant :func:`service.console.auth.guard` settled.
The ledger keeps no token, address or device id, so no page here can show one.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, flash, g, redirect, render_template, request, url_for

from service import admin
from service.clock import utcnow
from service.console import bp
from service.console.display import field_message
from service.console.pages import TENANT, revoke_every_link, security_page
from service.errors import ApiError, LinkNotFoundError
from service.store import LinkRecord

__all__: list[str] = []

#: Links per page of a user's list.
LINK_ROWS = 25
#: The most ledger reads that fill one page of a user's links.
FILL_READS = 8
#: A user's newest sign-ins shown on the user's page.
USER_SIGNINS = 20
#: The sign-ins a link's page looks through for that link's own.
LINK_SIGNINS = 100
#: The lists of a user's page: the live links, or every link the ledger still keeps.
SHOWN = {"active": "active", "all": None}


def _deployment() -> Any:
    return current_app.extensions["deployment"]


def _expired_before() -> float:
    """Return the time before which a link's expiry makes it expired (now less the leeway)."""
    return admin.expired_before(_deployment(), utcnow())


def _flush() -> None:
    # The uses of this worker's clicks still in the sign-in log's buffer count too.
    current_app.extensions["signin_log"].flush()


def _link(link_id: str) -> LinkRecord:
    """Return this tenant's link ``link_id`` (``400`` malformed, ``404`` not in the ledger)."""
    link_id = admin.validate_link_id(link_id)
    link = g.store.link(link_id, expired_before=_expired_before())
    if link is None:
        if not _deployment().link_ledger:
            raise ApiError(
                404,
                "link_not_found",
                "the ledger of links is off in this deployment (LINK_LEDGER = false), so no "
                "link can be shown: void the user's links instead",
            )
        raise LinkNotFoundError(link_id)
    return link


# -- a user's page ---------------------------------------------------------------


@bp.get(f"{TENANT}/users")
def find_user() -> Any:
    """Open the page of the user searched for on the Security page."""
    user_id = request.args.get("user_id", "").strip()
    try:
        user_id = admin.validate_user_id(user_id)
    except ApiError as e:
        return security_page({"find_user_id": user_id}, field_message(e.detail), 400)
    return redirect(url_for("console.user", user_id=user_id))


def _links_of(
    user_id: str, status: str | None, after: str | None
) -> tuple[list[LinkRecord], str | None]:
    """Return a page of ``user_id``'s links and the ``after`` of the next.

    On Redis a filtered read looks at a bounded number of links and may answer
    a short page with ``next`` set; the page is filled from the following
    reads, a bounded number of them, so that an admin rarely sees an empty
    page that is not the end.
    """
    links: list[LinkRecord] = []
    for _ in range(FILL_READS):
        page, after = g.store.links(
            user_id=user_id,
            status=status,
            after=after,
            limit=LINK_ROWS - len(links),
            expired_before=_expired_before(),
        )
        links.extend(page)
        if after is None or len(links) >= LINK_ROWS:
            break
    return links, after


def _user_page(user_id: str, error: str | None = None, status: int = 200, reason: str = "") -> Any:
    user_id = admin.validate_user_id(user_id)
    shown = request.args.get("show", "active")
    if shown not in SHOWN:
        shown = "active"
    after = request.args.get("after") or None
    if after is not None:
        after = admin.validate_link_id(after)
    _flush()
    try:
        links, following = _links_of(user_id, SHOWN[shown], after)
    except LinkNotFoundError:
        # The page began after a link gone from the ledger since (expired a day
        # ago): the first page instead, as the API says to do.
        after, error = None, "That page of the list is gone (its links expired); here is the first."
        links, following = _links_of(user_id, SHOWN[shown], None)
    page = render_template(
        "console/user.html",
        user_id=user_id,
        links=links,
        following=following,
        after=after,
        listing=shown,
        signins=g.store.signins(user_id=user_id, limit=USER_SIGNINS),
        ledger=_deployment().link_ledger,
        reason=reason,
        error=error,
    )
    return page, status


@bp.get(f"{TENANT}/users/<user_id>")
def user(user_id: str) -> Any:
    """List a user's live links (paged) and newest sign-ins; an unknown user has none."""
    return _user_page(user_id)


@bp.post(f"{TENANT}/users/<user_id>/revoke")
def revoke_user_links(user_id: str) -> Any:
    """Void every outstanding link of this user, and come back to the user's page."""
    user_id = admin.validate_user_id(user_id)
    reason = request.form.get("reason", "")
    try:
        reason = admin.validate_reason(reason)
    except ApiError as e:
        return _user_page(user_id, field_message(e.detail), 400, reason)
    revoke_every_link(user_id, reason)
    return redirect(url_for("console.user", user_id=user_id))


# -- a link's page and voiding it -------------------------------------------------------


@bp.get(f"{TENANT}/links/<link_id>")
def link(link_id: str) -> Any:
    """Show one link of the ledger: its status, uses, and its sign-ins among the user's newest."""
    _flush()
    record = _link(link_id)
    signins = [
        signin
        for signin in g.store.signins(user_id=record.user_id, limit=LINK_SIGNINS)
        if signin.link_id == record.link_id
    ]
    return render_template("console/link.html", link=record, signins=signins, limit=LINK_SIGNINS)


def _confirm_page(record: LinkRecord, reason: str = "", error: str | None = None) -> Any:
    page = render_template("console/link_void.html", link=record, reason=reason, error=error)
    return page, 400 if error else 200


@bp.get(f"{TENANT}/links/<link_id>/void")
def confirm_void_link(link_id: str) -> Any:
    """Say what voiding this one link does and ask for a reason before doing it."""
    return _confirm_page(_link(link_id))


@bp.post(f"{TENANT}/links/<link_id>/void")
def void_link(link_id: str) -> Any:
    """Void one link, as ``POST /v1/admin/links/{link_id}/revoke``; every other link still works."""
    record = _link(link_id)
    reason = request.form.get("reason", "")
    try:
        reason = admin.validate_reason(reason)
    except ApiError as e:
        return _confirm_page(record, reason, field_message(e.detail))
    revocation = admin.revoke_link(
        g.store,
        current_app.extensions["metrics"],
        _deployment(),
        record.link_id,
        actor=g.actor,
        reason=reason,
        now=utcnow(),
    )
    if revocation.expired:
        flash(
            f"The link {record.link_id} had expired already: it could not sign anybody in, "
            "so nothing was changed.",
            "info",
        )
    else:
        flash(
            f"The link {record.link_id} is void: it no longer signs anybody in. "
            f"Every other link of user {record.user_id} still works.",
            "success",
        )
    return redirect(url_for("console.user", user_id=record.user_id))
