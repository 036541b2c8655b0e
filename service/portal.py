"""Sign portal users in from auto-login links: a WSGI middleware and a Flask helper.

The portal wraps its application in :class:`AutoLoginMiddleware`. On a GET
whose query carries the token parameter, the middleware asks the service who
the token signs in (``POST /v1/tokens/verify`` with the portal's API key),
calls the portal's ``login`` callback, and answers ``303 See Other`` to the
token's target, so the token leaves the address bar at once (as django-sesame's
``get_redirect`` does). A token that fails, or a service that cannot be reached,
lands the user on the same page without the token and tells the portal why.

Only GET signs anyone in. Link scanners send HEAD (and sometimes OPTIONS);
those, and every other method, reach the portal's application with the token
stripped from the query, unverified. Portals whose users' mail is scanned by
tools that *follow* links use ``confirm=True``: the GET shows one button that
POSTs the token, and only that POST signs in.

With the service's ``bind_to_first_device`` setting on, a link works only in
the browser that used it first. The middleware keeps one long-lived, random
device id per browser in a cookie (``__Host-autologin_device``: HttpOnly,
Secure, SameSite=Lax) and sends it with every verification as
``client.device``; the service keeps only a keyed hash of it. In confirm mode
the device goes only with the button's verification: a scanner's GET binds
nothing. A link used in another browser fails with ``token_bound_elsewhere``,
and the portal asks for a password as usual (:data:`FAILURE_MESSAGES` says
what to tell the person).

One portal may serve many tenants (helpdesks) of the service: ``tenant=`` is
a function of the request (``tenant_from_host({"acme.portal.example.com":
"acme"})``, :func:`subdomain_tenant`) or one tenant id, and the token is
verified in that tenant alone (``POST /v1/tenants/{tenant}/tokens/verify``).
A request without a tenant verifies nothing: it is a failed link. The service
refuses a token of another tenant, so a link of acme opened on globex's portal
signs no one in.

Nothing here logs a token, and nothing taken from the request decides where a
signed-in user goes: the target comes from the verified answer, and it is
checked again to be a path on this portal. This module needs only the standard
library and ``requests``; :class:`FlaskAutoLogin` imports Flask when used.
"""

from __future__ import annotations

import html
import logging
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, unquote_plus, urlsplit

from service.transport import (
    DEVICE_ID,
    ServiceClient,
    check_tenant_id,
    is_tenant_id,
    tenant_path,
)

__all__ = [
    "DEVICE_COOKIE_MAX_AGE",
    "DEVICE_ID",
    "FAILURE_MESSAGES",
    "FAILURE_REASONS",
    "TENANT_ENVIRON_KEY",
    "AutoLoginMiddleware",
    "FlaskAutoLogin",
    "LoginRefusedError",
    "Verified",
    "VerificationError",
    "Verifier",
    "is_portal_path",
    "is_tenant_id",
    "new_device_id",
    "request_host",
    "subdomain_tenant",
    "tenant_from_host",
]

log = logging.getLogger("service.portal")

#: What ``on_failure`` may be told. The first five come from the service (or
#: its absence); ``login_refused`` is the portal's own ``login`` saying no.
FAILURE_REASONS = (
    "token_expired",
    "token_revoked",
    "token_bound_elsewhere",
    "token_invalid",
    "service_unavailable",
    "login_refused",
)
_TOKEN_CODES = frozenset(FAILURE_REASONS[:4])
#: What to tell the person a link did not sign in, by reason: a heading and a
#: sentence for the page they land on. Each says what they can do (sign in
#: with a password, ask for a new link) and nothing that helps whoever holds a
#: copy of the link: no user, no link id, no why beyond what a user needs.
#: ``token_revoked`` says "no longer works" whatever voided it (the link, the
#: user, every link); ``token_bound_elsewhere`` must say where it still works,
#: or the person who opened it first on a phone is left puzzled.
FAILURE_MESSAGES = {
    "token_expired": (
        "This sign-in link has expired",
        "Please sign in with your password, or ask us for a new link.",
    ),
    "token_revoked": (
        "This sign-in link no longer works",
        "It has been switched off. Please sign in with your password, or ask us for a new link.",
    ),
    "token_bound_elsewhere": (
        "This sign-in link works only in the browser that opened it first",
        "For your security, a sign-in link keeps working only in the browser where it was "
        "first opened. Open it there, or sign in here with your password.",
    ),
    "token_invalid": (
        "This sign-in link is not valid",
        "Please sign in with your password.",
    ),
    "service_unavailable": (
        "Automatic sign-in is not available right now",
        "Please sign in with your password.",
    ),
    "login_refused": (
        "This link cannot sign you in",
        "Please sign in with your password.",
    ),
}
#: The device cookie's lifetime: 400 days, the longest a browser keeps a
#: cookie (RFC 6265bis). The answer of every verification renews it.
DEVICE_COOKIE_MAX_AGE = 400 * 24 * 60 * 60
#: The service refuses longer tokens; no need to send them.
MAX_TOKEN_LENGTH = 4096
#: A confirm form is a token and a path; anything larger is not ours.
MAX_CONFIRM_BODY = 16 * 1024
#: Headers of every answer that carries or consumes a token: no cache keeps
#: it, and no Referer header takes the address to another site.
NO_STORE = [("Cache-Control", "no-store"), ("Referrer-Policy", "no-referrer")]
#: The environ key that tells ``login`` and ``on_failure`` the request's tenant
#: (``None``: it has none), when the middleware has ``tenant=``.
TENANT_ENVIRON_KEY = "autologin.tenant"
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?%"

Headers = Iterable[tuple[str, str]]
LoginCallback = Callable[[dict[str, Any], str, dict[str, Any]], Headers | None]
FailureCallback = Callable[[dict[str, Any], str], Headers | None]
#: ``tenant(environ)``: the tenant id of a request, or ``None`` when it has none.
TenantFunction = Callable[[Mapping[str, Any]], str | None]


class LoginRefusedError(Exception):
    """Raised by a ``login`` callback that will not sign this user in (unknown, locked)."""


class VerificationError(Exception):
    """The token does not sign anyone in; ``reason`` is one of :data:`FAILURE_REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        #: ``token_expired``, ``token_revoked``, ``token_bound_elsewhere``,
        #: ``token_invalid`` or ``service_unavailable``.
        self.reason = reason
        #: Why, for the log: never the token.
        self.detail = detail


@dataclass(frozen=True)
class Verified:
    """The service's answer for a genuine, current token."""

    user_id: str
    #: The token's target, re-checked: a path on this portal, else ``"/"``.
    target: str
    #: The whole verified answer (``user_id``, ``target``, ``issued_at``, ``expires_at``).
    claims: dict[str, Any]
    #: The tenant it was verified in (``user_id`` is a user of this tenant), or
    #: ``None``: the unprefixed path, the portal key's own tenant.
    tenant: str | None = None


def is_portal_path(value: object) -> bool:
    """Return whether ``value`` is a path on this portal (``/x?y``), never another host."""
    if not isinstance(value, str) or not value.startswith("/") or len(value) > 2048:
        return False
    # Printable ASCII only: no spaces, controls or characters a browser "fixes".
    if any(not 0x21 <= ord(c) <= 0x7E for c in value) or "\\" in value:
        return False
    # "//host" and "/\host" are other hosts to a browser; so are their encoded
    # forms to a portal that decodes the path before it redirects.
    parts = urlsplit(value)
    decoded = unquote(parts.path)
    return (
        not value.startswith("//")
        and not parts.scheme
        and not parts.netloc
        and not decoded.startswith("//")
        and "\\" not in decoded
        and all(ord(c) >= 0x20 for c in decoded)
    )


class Verifier(ServiceClient):
    """Ask the service who a token signs in: ``POST /v1/tokens/verify`` with the portal key.

    Takes the arguments of :class:`~service.transport.ServiceClient`; ``api_key``
    is a key with the ``portal`` role (a platform key to verify in any tenant, a
    tenant key for its own). With ``tenant``, verifications go to
    ``/v1/tenants/{tenant}/tokens/verify``.
    """

    def verify(
        self,
        token: str,
        *,
        ip: str | None = None,
        user_agent: str | None = None,
        tenant: str | None = None,
        device: str | None = None,
    ) -> Verified:
        """Return who ``token`` signs in; raise :class:`VerificationError` otherwise.

        :param tenant: the tenant to verify in, instead of this verifier's own.
            A malformed id is ``token_invalid``, and the token is not sent.
        :param device: the clicking browser's device id (:data:`DEVICE_ID`,
            kept in a cookie of that browser), sent as ``client.device``. The
            service requires it while ``bind_to_first_device`` is on. A
            malformed one raises ``ValueError``: it is this portal's bug.
        """
        if device is not None and not (isinstance(device, str) and DEVICE_ID.fullmatch(device)):
            raise ValueError("device must be 16 to 128 characters of A-Z a-z 0-9 - _")
        if tenant is None:
            tenant = self.tenant
        elif not is_tenant_id(tenant):
            raise VerificationError("token_invalid", "malformed tenant id, token not sent")
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise VerificationError("token_invalid", "empty or over-long token, not sent")
        client = {}
        # The service refuses longer values; cut them rather than fail the sign-in.
        if ip:
            client["ip"] = ip[:64]
        if user_agent:
            client["user_agent"] = user_agent[:512]
        if device is not None:
            client["device"] = device
        body = {"token": token, "client": client}
        status, answer, code = self.post(
            tenant_path(tenant, "/v1/tokens/verify"), body, error=VerificationError
        )
        if status == 401 and code in _TOKEN_CODES:
            raise VerificationError(code, code)
        if status == 404 and code == "tenant_not_found":
            # No such tenant (deleted, or a host mapped to a wrong id): no link
            # of it can sign in, now or after a retry. Loud, as it may be our
            # configuration.
            log.warning("auto-login: the service has no tenant %r; the link is invalid", tenant)
            raise VerificationError("token_invalid", "HTTP 404 tenant_not_found")
        if status != 200:
            # 401 unauthorized / 403 forbidden: our key; 503: the service's store.
            raise VerificationError("service_unavailable", f"HTTP {status} {code or ''}".strip())
        if not (
            isinstance(answer, dict)
            and isinstance(answer.get("user_id"), str)
            and answer["user_id"]
            and isinstance(answer.get("target"), str)
        ):
            raise VerificationError("service_unavailable", "HTTP 200 without user_id and target")
        target = answer["target"]
        if not is_portal_path(target):
            log.warning("auto-login: the verified target is not a path on this portal; using /")
            target = "/"
        return Verified(answer["user_id"], target, answer, tenant)


def _split_query(query: str, param: str) -> tuple[list[str], list[str]]:
    """Return the values of ``param`` and every other ``name=value`` piece, verbatim."""
    tokens, others = [], []
    for piece in query.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        if unquote_plus(name) == param:
            tokens.append(unquote_plus(value))
        else:
            others.append(piece)
    return tokens, others


def _drop_param(target: str, param: str) -> str:
    """Return ``target`` without any ``param`` in its query (fragment kept)."""
    path_query, hash_mark, fragment = target.partition("#")
    path, _, query = path_query.partition("?")
    _, others = _split_query(query, param)
    return path + ("?" + "&".join(others) if others else "") + hash_mark + fragment


def _quote_path(environ: Mapping[str, Any], path_info: str | None = None) -> str:
    """Return SCRIPT_NAME + PATH_INFO as a URL path on this host (never ``//host``)."""
    raw = environ.get("SCRIPT_NAME", "") + (
        environ.get("PATH_INFO", "") if path_info is None else path_info
    )
    # WSGI strings are bytes decoded as latin-1: re-encode, then quote.
    path = quote(raw.encode("latin-1", "replace"), safe=_PATH_SAFE)
    # A request for "//evil.test/x" must not come back as Location: //evil.test/x.
    return "/" + path.lstrip("/")


def _query(pieces: list[str]) -> str:
    return "&".join(quote(p.encode("latin-1", "replace"), safe=_QUERY_SAFE) for p in pieces)


def _strip_token(environ: dict[str, Any], others: list[str]) -> dict[str, Any]:
    """Return a copy of ``environ`` whose query (and raw URI) holds only ``others``."""
    stripped = dict(environ)
    stripped["QUERY_STRING"] = "&".join(others)
    for key in ("REQUEST_URI", "RAW_URI"):
        if key in stripped:
            path = stripped[key].split("?", 1)[0]
            stripped[key] = path + ("?" + stripped["QUERY_STRING"] if others else "")
    return stripped


def _page(environ: Mapping[str, Any], others: list[str]) -> str:
    """Return the request's address with only ``others`` in its query: where a failure lands."""
    query = _query(others)
    return _quote_path(environ) + ("?" + query if query else "")


_CONFIRM_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Continue to the portal</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}}
button{{font-size:1.1rem;padding:.6rem 1.2rem}}</style></head>
<body><h1>Continue to the portal</h1>
<p>This link signs you in to the portal.</p>
<form method="post" action="{action}">
<input type="hidden" name="{param}" value="{token}">
<input type="hidden" name="page" value="{page}">
<button type="submit">Continue to the portal</button>
</form></body></html>
"""


class AutoLoginMiddleware:
    """WSGI middleware: sign a user in from a link's token, then drop the token from the URL.

    :param app: the portal's WSGI application.
    :param login: ``login(environ, user_id, claims)``: sign ``user_id`` in. It may
        return headers for the redirect (``Set-Cookie``), or raise
        :class:`LoginRefusedError`. ``environ`` no longer holds the token.
    :param on_failure: ``on_failure(environ, reason)`` with a reason of
        :data:`FAILURE_REASONS`, so the next page can say "this link no
        longer works, please sign in" (:data:`FAILURE_MESSAGES` has the
        words); it may return headers (a flash cookie).
    :param token_param: the service's ``TOKEN_PARAM``.
    :param confirm: show a "Continue to the portal" button that POSTs the
        token instead of signing in on the GET (for mail scanned by tools that
        follow links).
    :param confirm_path: where that button POSTs, under ``SCRIPT_NAME``.
    :param device_cookie: the name of the device cookie (one random id per
        browser, sent as ``client.device`` so that the service can bind a link
        to its first browser). With ``secure_cookies`` it gets the ``__Host-``
        prefix: browsers then take it only from this host over HTTPS.
    :param secure_cookies: mark the device cookie ``Secure`` (sent over HTTPS
        only). ``False`` only for a development portal on plain http.
    :param tenant: for a portal of a deployment with many tenants: a function
        ``tenant(environ) -> str | None`` that names the tenant of each request
        (:func:`tenant_from_host`, :func:`subdomain_tenant`), or one tenant id
        for a portal of one tenant. The token is verified in that tenant only;
        a request whose function answers ``None`` (or anything but a tenant id)
        is ``token_invalid`` without asking the service, never another tenant.
        ``login`` and ``on_failure`` find it in ``environ["autologin.tenant"]``:
        ``login`` signs in ``user_id`` *of that tenant*. ``None`` (the default):
        the unprefixed path, the portal key's own tenant. A malformed id given
        here raises ``ValueError``.
    """

    def __init__(
        self,
        app: Callable[..., Iterable[bytes]],
        *,
        login: LoginCallback,
        on_failure: FailureCallback | None = None,
        verifier: Verifier | None = None,
        service_url: str | None = None,
        api_key: str | None = None,
        token_param: str = "auto_login",
        confirm: bool = False,
        confirm_path: str = "/auto-login/confirm",
        tenant: str | TenantFunction | None = None,
        device_cookie: str = "autologin_device",
        secure_cookies: bool = True,
        connect_timeout: float = 1.0,
        read_timeout: float = 3.0,
    ) -> None:
        if verifier is None:
            if not service_url or not api_key:
                raise ValueError("give a verifier, or the service_url and the portal api_key")
            verifier = Verifier(
                service_url, api_key, connect_timeout=connect_timeout, read_timeout=read_timeout
            )
        if not is_portal_path(confirm_path) or "?" in confirm_path:
            raise ValueError("confirm_path must be a plain path such as /auto-login/confirm")
        if tenant is not None and not callable(tenant):
            tenant = _one_tenant(check_tenant_id(tenant))
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", device_cookie):
            raise ValueError("device_cookie must be 1 to 64 of A-Z a-z 0-9 _ -")
        #: The device cookie's name as the browser stores it.
        self.device_cookie = ("__Host-" if secure_cookies else "") + device_cookie
        self.secure_cookies = secure_cookies
        #: ``tenant(environ)``, or ``None`` when this portal names no tenant.
        self.tenant: TenantFunction | None = tenant
        self.app = app
        self.login = login
        self.on_failure = on_failure
        self.verifier = verifier
        self.token_param = token_param
        self.confirm = confirm
        self.confirm_path = confirm_path

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if self.confirm and method == "POST" and environ.get("PATH_INFO", "") == self.confirm_path:
            return self._confirmed(environ, start_response)
        tokens, others = _split_query(environ.get("QUERY_STRING", ""), self.token_param)
        if not tokens:
            return self.app(environ, start_response)
        stripped = _strip_token(environ, others)
        if method != "GET" or _prefetch(environ):
            # HEAD, OPTIONS, POST, ..., and a browser's speculative prefetch:
            # link scanners and previews. They never sign in and never spend a
            # verification; the application answers them as it would without
            # the token, which it never sees.
            return self.app(stripped, start_response)
        page = _page(stripped, others)
        if self.confirm:
            return self._confirm_page(environ, start_response, tokens[0], page)
        return self._sign_in(stripped, start_response, tokens[0], page)

    def _sign_in(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        token: str,
        page: str,
    ) -> Iterable[bytes]:
        tenant = None
        if self.tenant is not None:
            tenant = self.tenant(environ)
            if not is_tenant_id(tenant):
                tenant = None
            environ[TENANT_ENVIRON_KEY] = tenant
            if tenant is None:
                # Not another tenant, not the key's own: a link reaching a
                # host of no tenant is simply not a link of this portal.
                log.info("auto-login refused: token_invalid (no tenant for this request, not sent)")
                return self._failed(environ, start_response, "token_invalid", page)
        # This browser's device id, sent with the verification so that a link
        # bound to its first browser works there only. Only a verification
        # reaches here: in confirm mode that is the button's POST, never the
        # GET a scanner sends. The answer sets (renews) the cookie either way,
        # so the id is the same at the next click.
        device, cookie = self._device(environ)
        try:
            verified = self.verifier.verify(
                token,
                ip=environ.get("REMOTE_ADDR"),
                user_agent=environ.get("HTTP_USER_AGENT"),
                tenant=tenant,
                device=device,
            )
        except VerificationError as e:
            if e.reason == "service_unavailable":
                log.warning("auto-login: service unavailable (%s)", e.detail)
            else:
                log.info("auto-login refused: %s", e.reason)
            return self._failed(environ, start_response, e.reason, page, cookie)
        try:
            extra = self.login(environ, verified.user_id, verified.claims)
        except LoginRefusedError:
            log.info(
                "auto-login refused by the portal for user %s%s",
                verified.user_id,
                _of_tenant(tenant),
            )
            return self._failed(environ, start_response, "login_refused", page, cookie)
        log.info("auto-login: signed in user %s%s", verified.user_id, _of_tenant(tenant))
        # The target comes from the verified token only: not the request's
        # path, query, "next" or Host header.
        location = _quote_path(environ, "").rstrip("/") + _drop_param(
            verified.target, self.token_param
        )
        return _redirect(start_response, location, [*(extra or ()), *cookie])

    def _failed(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        reason: str,
        page: str,
        cookie: Headers = (),
    ) -> Iterable[bytes]:
        extra = self.on_failure(environ, reason) if self.on_failure else None
        # ``page`` has no token parameter: following it can never loop back here.
        return _redirect(start_response, page, [*(extra or ()), *cookie])

    def _device(self, environ: Mapping[str, Any]) -> tuple[str, list[tuple[str, str]]]:
        """Return this browser's device id and the ``Set-Cookie`` header that keeps it."""
        device = _cookie(environ, self.device_cookie)
        if device is None or not DEVICE_ID.fullmatch(device):
            # No cookie yet (a first click, a cleared browser, a scanner) or
            # one that is not ours: a fresh random id.
            device = new_device_id()
        # HttpOnly: no script of the portal (or injected into it) reads it.
        # SameSite=Lax: sent on the click from a mail client or webmail (a
        # top-level GET from another site) and on the confirm POST (same site).
        header = (
            f"{self.device_cookie}={device}; Max-Age={DEVICE_COOKIE_MAX_AGE}; Path=/; "
            "HttpOnly; SameSite=Lax" + ("; Secure" if self.secure_cookies else "")
        )
        return device, [("Set-Cookie", header)]

    def _confirm_page(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        token: str,
        page: str,
    ) -> Iterable[bytes]:
        action = _quote_path(environ, self.confirm_path)
        body = _CONFIRM_PAGE.format(
            action=html.escape(action),
            param=html.escape(self.token_param),
            token=html.escape(token),
            page=html.escape(page),
        ).encode()
        start_response(
            "200 OK",
            [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Length", str(len(body))),
                *NO_STORE,
                (
                    "Content-Security-Policy",
                    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                    "frame-ancestors 'none'; base-uri 'none'",
                ),
                ("X-Frame-Options", "DENY"),
            ],
        )
        return [body]

    def _confirmed(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        form = _read_form(environ)
        page = form.get("page", "/")
        # The failure landing comes from the form: accept only a path here,
        # without the token.
        if not is_portal_path(page):
            page = "/"
        page = _drop_param(page, self.token_param)
        # No CSRF token: the link token itself is the credential. A forged
        # cross-site POST can only carry a token its forger holds, and so signs
        # the browser in as the forger: no more than mailing that link would.
        return self._sign_in(environ, start_response, form.get(self.token_param, ""), page)


def _of_tenant(tenant: str | None) -> str:
    # User 42 of acme and user 42 of globex are two people: say which.
    return "" if tenant is None else f" of tenant {tenant}"


def new_device_id() -> str:
    """Return a fresh device id: 256 random bits, 43 base64url characters."""
    return secrets.token_urlsafe(32)


def _cookie(environ: Mapping[str, Any], name: str) -> str | None:
    """Return the first value of cookie ``name`` in the request, or ``None``."""
    # By hand, not http.cookies: SimpleCookie gives up on the whole header at
    # the first cookie it cannot parse, and the portal's other cookies are
    # none of our business.
    for piece in environ.get("HTTP_COOKIE", "").split(";"):
        key, equals, value = piece.strip().partition("=")
        if equals and key == name:
            return value.strip().strip('"')
    return None


def _one_tenant(tenant: str) -> TenantFunction:
    def one_tenant(environ: Mapping[str, Any]) -> str:
        return tenant

    return one_tenant


def request_host(environ: Mapping[str, Any]) -> str | None:
    """Return the request's host name from ``Host``: lower case, no port, no final dot.

    ``None`` without a ``Host`` header: ``SERVER_NAME`` is the server's own
    name, not the one the user's link named. Behind a proxy, let
    ``werkzeug.middleware.proxy_fix.ProxyFix(x_host=1)`` (outermost) set ``Host``.
    """
    host = environ.get("HTTP_HOST")
    if not isinstance(host, str):
        return None
    host = host.strip().lower()
    if host.startswith("["):  # an IPv6 literal, "[::1]:8080"
        host = host[: host.find("]") + 1]
    else:
        name, colon, port = host.rpartition(":")
        if colon and port.isdigit():
            host = name
    return host.rstrip(".") or None


def tenant_from_host(hosts: Mapping[str, str]) -> TenantFunction:
    """Return a ``tenant`` function that reads the tenant id of each host from ``hosts``.

    ``{"acme.portal.example.com": "acme", "help.globex.com": "globex"}``: host
    names (any case; a port is ignored) to tenant ids. A host that is not there
    has no tenant. A malformed tenant id raises ``ValueError`` here.
    """
    table: dict[str, str] = {}
    for host, tenant in hosts.items():
        name = request_host({"HTTP_HOST": host})
        if name is None:
            raise ValueError(f"{host!r} is not a host name")
        table[name] = check_tenant_id(tenant)

    def tenant_of_host(environ: Mapping[str, Any]) -> str | None:
        host = request_host(environ)
        return None if host is None else table.get(host)

    return tenant_of_host


def subdomain_tenant(base_domain: str) -> TenantFunction:
    """Return a ``tenant`` function that takes the tenant id from the host's first label.

    With ``"portal.example.com"``, ``acme.portal.example.com`` is tenant
    ``acme``; ``portal.example.com`` itself, ``a.b.portal.example.com`` and
    labels that are not tenant ids have none. Every well-formed label is sent
    to the service, which answers ``tenant_not_found`` for one it does not know
    (``token_invalid`` here); map the hosts with :func:`tenant_from_host` to
    keep that call.
    """
    suffix = "." + base_domain.strip().lower().strip(".")
    if suffix == ".":
        raise ValueError("give the portal's base domain, such as portal.example.com")

    def tenant_of_subdomain(environ: Mapping[str, Any]) -> str | None:
        host = request_host(environ)
        if host is None or not host.endswith(suffix):
            return None
        label = host[: -len(suffix)]
        return label if is_tenant_id(label) else None

    return tenant_of_subdomain


def _prefetch(environ: Mapping[str, Any]) -> bool:
    purpose = environ.get("HTTP_SEC_PURPOSE", "") + environ.get("HTTP_PURPOSE", "")
    return "prefetch" in purpose.lower() or environ.get("HTTP_X_MOZ", "").lower() == "prefetch"


def _read_form(environ: Mapping[str, Any]) -> dict[str, str]:
    content_type = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if content_type != "application/x-www-form-urlencoded" or not 0 < length <= MAX_CONFIRM_BODY:
        return {}
    body = environ["wsgi.input"].read(length).decode("latin-1")
    form: dict[str, str] = {}
    for name, value in parse_qsl(body, keep_blank_values=True):
        form.setdefault(name, value)
    return form


def _redirect(
    start_response: Callable[..., Any], location: str, extra: Headers | None
) -> Iterator[bytes]:
    start_response(
        "303 See Other",
        [
            ("Location", location),
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", "0"),
            *NO_STORE,
            *(extra or ()),
        ],
    )
    return iter(())


class FlaskAutoLogin:
    """The middleware for a Flask portal: callbacks run with ``request`` and ``session``.

    ``login(request, user_id, claims)`` signs the user in (``session["user_id"] =
    user_id``) or raises :class:`LoginRefusedError`; ``on_failure(request, reason)``
    may ``flash()`` a message. Both run in a request context of the app (its
    ``before_request`` hooks do not run), and the session they change is saved
    into the redirect's ``Set-Cookie``. The other keyword arguments are the
    middleware's (``tenant=`` included: the tenant is in
    ``request.environ["autologin.tenant"]``).
    """

    def __init__(
        self,
        app: Any = None,
        *,
        login: Callable[[Any, str, dict[str, Any]], None],
        on_failure: Callable[[Any, str], None] | None = None,
        **options: Any,
    ) -> None:
        self.login = login
        self.on_failure = on_failure
        self.options = options
        self.middleware: AutoLoginMiddleware | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Any) -> None:
        """Wrap ``app.wsgi_app`` in the middleware."""
        self.middleware = AutoLoginMiddleware(
            app.wsgi_app,
            login=lambda environ, user_id, claims: self._in_request(
                app, environ, self.login, user_id, claims
            ),
            on_failure=lambda environ, reason: self._in_request(
                app, environ, self.on_failure, reason
            ),
            **self.options,
        )
        app.wsgi_app = self.middleware
        app.extensions["autologin"] = self

    @staticmethod
    def _in_request(app: Any, environ: dict[str, Any], callback: Any, *args: Any) -> Headers:
        if callback is None:
            return []
        from flask import request, session

        with app.request_context(environ):
            callback(request, *args)
            response = app.response_class()
            if not app.session_interface.is_null_session(session):
                app.session_interface.save_session(app, session, response)
            return [("Set-Cookie", v) for v in response.headers.getlist("Set-Cookie")]
