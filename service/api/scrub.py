"""``POST /v1/scrub``: take auto-login tokens out of a stored reply."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, current_app, jsonify

from service.errors import ApiError
from service.http import read_json, require_role
from service.scrub import CONTENT_TYPES, scrub_text

bp = Blueprint("scrub", __name__, url_prefix="/v1")

log = logging.getLogger("service")


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
    deployment = current_app.extensions["deployment"]
    # No store read: a revoked token has leaked all the same, and scrubbing
    # must work while the store is down.
    result = scrub_text(
        text,
        content_type=content_type,
        ring=current_app.extensions["ring"],
        base_url=deployment.portal_base_url,
        token_param=deployment.token_param,
    )
    if result.removed:
        log.info(
            "scrub: removed %d tokens, genuine for %d users", result.removed, len(result.user_ids)
        )
    return jsonify(
        {"text": result.text, "removed": result.removed, "user_ids": list(result.user_ids)}
    )
