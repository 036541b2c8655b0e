"""The click's fast path: a successful ``POST /v1/tokens/verify`` without Flask's per-request work.

Verification runs on every click. Flask's request machinery (context push,
URL matching, hooks, response object) costs several times the verification
itself, so this WSGI middleware answers the common case, a good token from
a portal key, directly: the same checks in the same order (API key and role,
body, token, one store read), the same sign-in log entry, metric, log line
and headers, the same JSON answer.

Anything else is handed to the Flask app untouched (the body is put back):
another route, an unusual request, a bad key, a bad body, a token that
fails, a store that does not answer. So every error, every 401 code, rate
limiting and every problem document come from one place, the Flask view;
this path never answers anything but a 200. A token that failed here is
not verified again: its exception goes to the view with the request.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from service.api.verify import FAILED_VERIFICATION, answer_json, parse_client
from service.clock import utcnow
from service.errors import ApiError, StoreError, TokenError
from service.http import STRICT_JSON, whole_number
from service.logs import log_request, request_id
from service.store import DEFAULT_TENANT, Signin
from service.tenancy import TENANT_ID, find_api_key, tenant_caller, tenant_key
from service.tokens import check_device, check_epochs, link_check, verify_token

__all__ = ["VerifyFastPath"]

PATH = "/v1/tokens/verify"
#: The same call in a named tenant: /v1/tenants/<tenant_id>/tokens/verify.
TENANT_PATH = ("/v1/tenants/", "/tokens/verify")
#: Its route, as the access log names it (the rule, never the tenant).
TENANT_ROUTE = "/v1/tenants/<tenant_id>/tokens/verify"
#: The Flask endpoint of the same call, for the latency metric's label.
ENDPOINT = "verify.verify"
#: Bodies larger than this go through Flask (a verify body is well under 1 KiB).
MAX_FAST_BODY = 16 * 1024

StartResponse = Callable[..., Any]
_ENCODER = json.JSONEncoder(separators=(",", ":"))


class VerifyFastPath:
    """WSGI middleware answering successful verifications itself."""

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]], app: Flask) -> None:
        self.wsgi_app = wsgi_app
        extensions = app.extensions
        self.deployment = extensions["deployment"]
        self.ring = extensions["ring"]
        self.store = extensions["store"]
        self.signin_log = extensions["signin_log"]
        self.ok_counter = extensions["metrics"].verifications.labels("ok")
        self.latency = extensions["metrics"].latency.labels(ENDPOINT, "POST")

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        named: str | None = None  # the tenant the path names, if any
        if path == PATH:
            pass
        elif path.startswith(TENANT_PATH[0]) and path.endswith(TENANT_PATH[1]):
            named = path[len(TENANT_PATH[0]) : -len(TENANT_PATH[1])]
            if not TENANT_ID.fullmatch(named):
                return self.wsgi_app(environ, start_response)
        else:
            return self.wsgi_app(environ, start_response)
        if environ.get("REQUEST_METHOD") != "POST":
            return self.wsgi_app(environ, start_response)
        started = time.perf_counter()
        body = self._body(environ)
        answer = None if body is None else self._answer(environ, body, named)
        if answer is None:
            return self.wsgi_app(environ, start_response)
        rid = request_id(environ.get("HTTP_X_REQUEST_ID"))
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(answer))),
                ("Cache-Control", "no-store"),
                ("X-Content-Type-Options", "nosniff"),
                ("X-Request-Id", rid),
            ],
        )
        self.latency.observe(time.perf_counter() - started)
        log_request(rid, "POST", PATH if named is None else TENANT_ROUTE, 200, started)
        return [answer]

    @staticmethod
    def _body(environ: dict[str, Any]) -> bytes | None:
        """Read a small body and put it back for Flask; ``None`` to leave it to Flask."""
        length = whole_number(environ.get("CONTENT_LENGTH", ""), 0, MAX_FAST_BODY)
        if length is None:
            return None
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return body

    def _answer(self, environ: dict[str, Any], body: bytes, named: str | None) -> bytes | None:
        """Return the 200 body of a good verification, or ``None`` for Flask to answer."""
        header = environ.get("HTTP_AUTHORIZATION", "")
        key = find_api_key(header, self.deployment.api_keys)
        digest: bytes | None = None
        if key is not None:  # a platform key, held in memory
            if "portal" not in key.roles:
                return None
            tenant_id = named or DEFAULT_TENANT
        else:
            # A tenant key acts in its own tenant only. Its record is read in
            # the same round trip as the epochs, after the token checked out.
            found = tenant_key(header)
            if found is None or (named is not None and named != found[0]):
                return None
            tenant_id, digest = found
        if b"\\u" in body:
            return None  # escapes (and lone surrogates among them): read_json's business
        try:
            request = STRICT_JSON.decode(body.decode("utf-8"))
        except (ValueError, RecursionError):
            return None
        if type(request) is not dict or type(request.get("token")) is not str:
            return None
        try:
            client = parse_client(request.get("client"), self.deployment.secret_key)
        except ApiError:
            return None  # the view answers 400 naming the field
        token = request["token"]
        store = self.store.tenant(tenant_id)
        try:
            claims = verify_token(
                token, self.ring, tenant_id=tenant_id, legacy_before=store.legacy_before
            )
            # Also the tenant's existence: no tenant, no row, no answer here.
            state = store.token_state(claims.user_id, digest, link_check(claims, client.device))
            if digest is not None:
                caller = tenant_caller(tenant_id, digest, state.key, store)
                if caller is None or "portal" not in caller.roles:
                    return None  # the view answers 401 or 403, before the body
            check_epochs(claims, state)
            check_device(claims, state, client.device)
        except ApiError:
            # tenant_not_found, or a device required and missing: the view
            # answers it, in the contract's order.
            return None
        except (TokenError, StoreError) as e:
            # The view answers: the precise code, the logged reason, the
            # metric, the sign-in entry, the limits; it re-raises ``e``
            # rather than verify and read the store a second time.
            environ[FAILED_VERIFICATION] = (token, e)
            return None
        self.ok_counter.inc()
        self.signin_log.record(
            Signin(utcnow(), claims.user_id, "ok", client.ip, client.user_agent, claims.token_id),
            tenant_id,
            claims.incarnation,
        )
        return (_ENCODER.encode(answer_json(claims)) + "\n").encode()
