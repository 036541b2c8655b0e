"""``POST /v1/tokens/verify``: the portal asks who a link signs in."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, NamedTuple

from flask import Blueprint, current_app, g, jsonify, request

from service.clock import from_seconds, isoformat, utcnow
from service.errors import (
    ApiError,
    StoreError,
    TokenError,
)
from service.http import read_json, require_role
from service.ratelimit import hit
from service.store import Signin
from service.tenancy import limit_identity, path_tenant, store
from service.tokens import (
    DEVICE_ID,
    Claims,
    check_device,
    check_epochs,
    device_hash,
    link_check,
    verify_token,
)

log = logging.getLogger("service")
bp = Blueprint("verify", __name__, url_prefix="/v1/tokens")
bp.url_value_preprocessor(lambda _endpoint, values: path_tenant(values))

#: WSGI environ key where the fast path (service/fastpath.py) leaves a
#: verification it already ran and could not answer: ``(token, exception)``.
FAILED_VERIFICATION = "autologin.failed_verification"


class Client(NamedTuple):
    """What the portal knows of the person who clicked."""

    ip: str | None = None
    user_agent: str | None = None
    #: The keyed hash of the browser's device id (never the id itself).
    device: str | None = None


def parse_client(value: Any, secret: bytes) -> Client:
    """Return the optional ``client`` with its device hashed, or raise ``invalid_request``.

    :param secret: the deployment's secret, the key of the device hash.
    """
    if value is None:
        return Client()
    if not isinstance(value, Mapping):
        raise ApiError(
            400, "invalid_request", "client: must be an object with ip, user_agent and device"
        )
    unknown = set(value) - {"ip", "user_agent", "device"}
    if unknown:
        raise ApiError(400, "invalid_request", f"client.{sorted(unknown)[0]}: is not allowed")
    out = []
    for name, limit in (("ip", 64), ("user_agent", 512)):
        field = value.get(name)
        if field is not None and (not isinstance(field, str) or len(field) > limit):
            raise ApiError(
                400, "invalid_request", f"client.{name}: must be a string of at most {limit}"
            )
        out.append(field)
    device = value.get("device")
    if device is not None:
        if not isinstance(device, str) or not DEVICE_ID.fullmatch(device):
            raise ApiError(
                400,
                "invalid_request",
                "client.device: must be 16 to 128 characters of A-Z a-z 0-9 - _",
            )
        device = device_hash(secret, device)
    return Client(out[0], out[1], device)


def record_signin(
    user_id: str, outcome: str, client: Client, incarnation: str, link_id: str | None
) -> None:
    """Queue an entry of this tenant's sign-in log (when enabled); see service/signins.py.

    :param incarnation: the token's: a token of a tenant deleted and made
        again under its id is logged in no log of the new one.
    """
    current_app.extensions["signin_log"].record(
        Signin(utcnow(), user_id, outcome, client.ip, client.user_agent, link_id),
        g.tenant_id,
        incarnation,
    )


def _count_failure(ip: str | None) -> None:
    """Count a failed verification; raise 429 when its caller is over a limit.

    Failures only: a good link never waits on a counter. A store that cannot
    count does not turn a refusal into a 503: the token is refused either way.
    """
    try:
        hit("RATE_LIMIT_VERIFY_FAILURES_PER_KEY", *limit_identity())
        if ip is not None:
            hit("RATE_LIMIT_VERIFY_FAILURES_PER_CLIENT", ip)
    except StoreError as e:
        log.warning("could not count a failed verification: %s", type(e).__name__)


@bp.post("/verify")
@require_role("portal")
def verify() -> Any:
    """Verify a token: signature, claims, then the current epochs."""
    body = read_json()
    token = body.get("token")
    if not isinstance(token, str):
        raise ApiError(400, "invalid_request", "token: must be a string")
    client = parse_client(body.get("client"), current_app.extensions["deployment"].secret_key)
    counter = current_app.extensions["metrics"].verifications
    try:
        failed = request.environ.pop(FAILED_VERIFICATION, None)
        if failed is not None and failed[0] == token:
            # The fast path verified this very token and read the store: do
            # not pay for either twice (a store that timed out, twice as long).
            raise failed[1]
        tenant = store()
        claims = verify_token(
            token,
            current_app.extensions["ring"],
            tenant_id=g.tenant_id,
            legacy_before=tenant.legacy_before,
        )
        # One store read, after the signature and the tenant checked out:
        # nothing in a forged token, or another tenant's, costs us a round
        # trip or is believed. The link's revocation and binding come with it.
        state = tenant.token_state(claims.user_id, link=link_check(claims, client.device))
        check_epochs(claims, state)
        check_device(claims, state, client.device)
    except TokenError as e:
        counter.labels(e.code).inc()
        # Only a genuine token's user: expired, revoked or bound, never invalid.
        if e.user_id is not None and e.incarnation is not None:
            record_signin(e.user_id, e.code, client, e.incarnation, e.link_id)
        _count_failure(client.ip)
        raise
    counter.labels("ok").inc()
    record_signin(claims.user_id, "ok", client, claims.incarnation, claims.token_id)
    return jsonify(answer_json(claims))


def answer_json(claims: Claims) -> dict[str, str]:
    """Return the contract's answer to a good verification."""
    return {
        "user_id": claims.user_id,
        "target": claims.target,
        "issued_at": isoformat(from_seconds(claims.issued_at)),
        "expires_at": isoformat(from_seconds(claims.expires_at)),
    }
