"""``POST /v1/links`` and ``POST /v1/links/batch``: links for ticket emails."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from flask import Blueprint, current_app, g, jsonify

from service.clock import utcnow
from service.errors import ApiError
from service.http import read_json, require_role
from service.links import LinkAnswer, LinkRequest, issue_links, parse_link_request
from service.ratelimit import hit
from service.store import LinkRecord
from service.tenancy import limit_identity, path_tenant, portal_base_url, store

bp = Blueprint("links", __name__, url_prefix="/v1/links")
bp.url_value_preprocessor(lambda _endpoint, values: path_tenant(values))

MAX_BATCH = 1000


def _answer(requests: list[LinkRequest]) -> list[LinkAnswer]:
    deployment = current_app.extensions["deployment"]
    tenant = store()
    # One store read for the whole batch: settings, epochs, incarnation, portal.
    state = tenant.issue_state([r.user_id for r in requests])
    now = utcnow()

    def write(chunks: Iterable[list[LinkRecord]]) -> None:
        tenant.record_link_chunks(chunks, state.incarnation, now)

    # In the ledger before any link is handed out: a store that cannot write
    # it answers 503, and no link is out there unaccounted for (a batch that
    # fails part-way may leave its first chunks' entries: links never given).
    answers = issue_links(
        requests,
        state,
        write=write if deployment.link_ledger else None,
        ring=current_app.extensions["ring"],
        base_url=portal_base_url(state.portal_base_url),
        token_param=deployment.token_param,
        now=now,
        tenant_id=g.tenant_id,
        issued_by=g.actor,
    )
    # One increment per distinct outcome, not per answer: a batch has 1000.
    counts = Counter((a.auto_login, a.reason or "none") for a in answers)
    links_counter = current_app.extensions["metrics"].links
    for (auto_login, reason), n in counts.items():
        links_counter.labels(str(auto_login).lower(), reason).inc(n)
    return answers


def _parse(body: Any) -> LinkRequest:
    deployment = current_app.extensions["deployment"]
    return parse_link_request(
        body, token_param=deployment.token_param, max_ttl_seconds=deployment.max_ttl_seconds
    )


@bp.post("")
@require_role("issuer")
def issue() -> Any:
    """Answer the link for one email."""
    hit("RATE_LIMIT_LINKS_PER_KEY", *limit_identity())
    request = _parse(read_json())
    return jsonify(_answer([request])[0].to_json())


@bp.post("/batch")
@require_role("issuer")
def issue_batch() -> Any:
    """Answer the links for many emails, in order; a bad item fails alone."""
    hit("RATE_LIMIT_LINKS_PER_KEY", *limit_identity())
    items = read_json().get("items")
    if not isinstance(items, list) or not items:
        raise ApiError(400, "invalid_request", "items: must be a list of 1 to 1000 link requests")
    if len(items) > MAX_BATCH:
        raise ApiError(
            413, "batch_too_large", f"items: {len(items)} requests; at most {MAX_BATCH} a batch"
        )
    parsed: list[LinkRequest | ApiError] = []
    for item in items:
        try:
            parsed.append(_parse(item))
        except ApiError as e:
            parsed.append(e)
    valid = [p for p in parsed if isinstance(p, LinkRequest)]
    answers = iter(_answer(valid) if valid else [])
    out = []
    for p in parsed:
        if isinstance(p, ApiError):
            out.append({"error": {"code": p.code, "detail": p.detail}})
        else:
            out.append(next(answers).to_json())
    return jsonify({"items": out})
