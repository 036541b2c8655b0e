"""``POST /v1/scrub``: take auto-login tokens out of a stored reply."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, current_app, g, jsonify

from service import admin
from service.clock import utcnow
from service.errors import ApiError, LinkNotFoundError
from service.http import read_json, require_role
from service.scrub import CONTENT_TYPES, scrub_text
from service.tenancy import path_tenant, store, tenant_portal

bp = Blueprint("scrub", __name__, url_prefix="/v1")
bp.url_value_preprocessor(lambda _endpoint, values: path_tenant(values))

log = logging.getLogger("service")

#: The audit reason of a link voided by a scrub.
FOUND_IN_REPLY = "found in a stored reply"


@bp.post("/scrub")
@require_role("issuer", "portal")
def scrub() -> Any:
    """Answer the text with every token of this service taken out of the portal's links."""
    body = read_json()
    text = body.get("text")
    if not isinstance(text, str):
        raise ApiError(400, "invalid_request", "text: must be a string")
    content_type = body.get("content_type", "text/plain")
    if not isinstance(content_type, str) or content_type not in CONTENT_TYPES:
        raise ApiError(
            400, "invalid_request", f"content_type: must be {' or '.join(CONTENT_TYPES)}"
        )
    revoke = body.get("revoke", False)
    if not isinstance(revoke, bool):
        raise ApiError(400, "invalid_request", "revoke: must be true or false")
    deployment = current_app.extensions["deployment"]
    # No epoch read: a revoked token has leaked all the same (default's
    # portal address needs no read either: scrubbing works while the store is down).
    result = scrub_text(
        text,
        content_type=content_type,
        ring=current_app.extensions["ring"],
        base_url=tenant_portal(),
        token_param=deployment.token_param,
        tenant_id=g.tenant_id,
        legacy_before=store().legacy_before,
    )
    if result.removed:
        log.info(
            "scrub: removed %d tokens, genuine for %d users", result.removed, len(result.user_ids)
        )
    answer: dict[str, Any] = {
        "text": result.text,
        "removed": result.removed,
        "user_ids": list(result.user_ids),
    }
    if revoke:
        answer["revoked_link_ids"] = _revoke(result.link_ids)
    return jsonify(answer)


def _revoke(link_ids: tuple[str, ...]) -> list[str]:
    """Void each genuine link found (a token in a stored reply has leaked); return those voided.

    A link already expired needs no voiding and is not listed; with the
    ledger on, a link issued before the ledger existed is not in it and is
    not listed either (its user can be voided instead: ``user_ids``).
    """
    now = utcnow()
    voided = []
    for link_id in link_ids:
        try:
            revocation = admin.revoke_link(
                store(),
                current_app.extensions["metrics"],
                current_app.extensions["deployment"],
                link_id,
                actor=g.actor,
                reason=FOUND_IN_REPLY,
                now=now,
            )
        except LinkNotFoundError:
            continue
        if not revocation.expired:
            voided.append(link_id)
    if voided:
        log.info("scrub: voided %d links found in a stored reply", len(voided))
    return voided
