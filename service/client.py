"""The email side's client: ask the service for the portal link of one email, or many.

It never holds an email back. When the service is slow, down, or answers
anything but a well-formed ``200`` (an error, bad JSON, a timeout, a refused
connection), the email gets the plain portal link (the portal's base URL plus
the target, no token) and the log says why, never with the token or the API
key::

    client = LinkClient("https://autologin.internal", issuer_key,
                        portal_base_url="https://portal.example.com")
    link = client.link("42", "alice@example.com", to=["alice@example.com"],
                       target="/tickets/1234")
    link.url  # with a token when the service allowed one

A deployment with many tenants (helpdesks) names the tenant and its own
portal address; its calls go to ``/v1/tenants/{tenant}/links``::

    acme = LinkClient("https://autologin.internal", issuer_key, tenant="acme",
                      portal_base_url="https://acme.portal.example.com")
    globex = acme.for_tenant("globex", portal_base_url="https://globex.portal.example.com")
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests

from service.portal import is_portal_path
from service.transport import ServiceClient, check_tenant_id, tenant_path

__all__ = ["EmailLinkRequest", "LinkClient", "PortalLink", "addresses"]

log = logging.getLogger("service.client")

#: Items per ``POST /v1/links/batch``: the service takes 1000, but its 1 MiB
#: body limit is reached sooner by items with long recipient lists.
BATCH_SIZE = 500


@dataclass(frozen=True)
class PortalLink:
    """The link for one email; ``str(link)`` is its URL."""

    url: str
    #: Whether ``url`` carries a token.
    auto_login: bool
    #: Why not: the service's ``disabled``, ``multiple_recipients`` or
    #: ``recipient_mismatch``; or this client's ``service_unavailable`` (no
    #: answer, a 5xx, bad JSON) or ``service_error`` (the service refused the
    #: request: a wrong key, an invalid address or target).
    reason: str | None = None
    #: ``2026-11-26T10:00:00Z`` when ``auto_login``.
    expires_at: str | None = None

    def __str__(self) -> str:
        return self.url


@dataclass(frozen=True)
class EmailLinkRequest:
    """One email of a batch: the arguments of :meth:`LinkClient.link`."""

    user_id: str
    email: str
    to: Sequence[str] = ()
    cc: Sequence[str] = ()
    bcc: Sequence[str] = ()
    target: str = "/"
    ttl_seconds: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the ``POST /v1/links`` body of this email."""
        body: dict[str, Any] = {
            "user_id": self.user_id,
            "email": self.email,
            "recipients": {
                "to": addresses(self.to),
                "cc": addresses(self.cc),
                "bcc": addresses(self.bcc),
            },
            "target": self.target,
        }
        if self.ttl_seconds is not None:
            body["ttl_seconds"] = self.ttl_seconds
        return body


def addresses(value: Sequence[str] | str) -> list[str]:
    """Return the addresses of a ``to``, ``cc`` or ``bcc`` given as a list or as one string."""
    # to="alice@example.com" means one address, not a list of characters;
    # cc="" means none.
    if isinstance(value, str):
        return [value] if value else []
    return list(value)


class _Fallback(Exception):
    """The service gave no usable answer; ``reason`` and ``why`` (for the log)."""

    def __init__(self, reason: str, why: str) -> None:
        super().__init__(why)
        self.reason = reason
        self.why = why


class LinkClient(ServiceClient):
    """A keep-alive client of ``POST /v1/links`` and ``/v1/links/batch`` (role ``issuer``).

    :param service_url: the service's base URL.
    :param api_key: an API key with the ``issuer`` role; sent as ``Authorization: Bearer``.
        A platform key may issue for any tenant; a tenant key only for its own.
    :param portal_base_url: the portal's origin (and base path): the plain link
        is this plus the target. It should equal the service's ``PORTAL_BASE_URL``,
        or with ``tenant`` that tenant's ``portal_base_url``; an answer whose link
        points elsewhere is not used.
    :param tenant: the tenant id (``acme``): calls go to ``/v1/tenants/acme/links``
        and ``.../links/batch``. ``None`` (the default): the unprefixed paths, which
        act in the key's own tenant (``default`` for a platform key). A malformed
        id raises ``ValueError``.
    :param connect_timeout: seconds to wait for a connection.
    :param read_timeout: seconds to wait for the answer: the longest an email waits.
    """

    def __init__(
        self,
        service_url: str,
        api_key: str,
        *,
        portal_base_url: str,
        tenant: str | None = None,
        connect_timeout: float = 1.0,
        read_timeout: float = 3.0,
        session: requests.Session | None = None,
    ) -> None:
        super().__init__(
            service_url,
            api_key,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            session=session,
            tenant=tenant,
        )
        self.portal_base_url = portal_base_url.rstrip("/")

    def __repr__(self) -> str:  # never the key
        tenant = "" if self.tenant is None else f", tenant={self.tenant!r}"
        return f"LinkClient({self.service_url!r}, portal_base_url={self.portal_base_url!r}{tenant})"

    def for_tenant(self, tenant: str, *, portal_base_url: str) -> LinkClient:
        """Return a client of ``tenant`` with its portal address; same key, timeouts and session.

        For an email system that sends for many tenants with one platform key:
        the connections are shared, and closing the new client leaves the
        session open (this client owns it).
        """
        other = copy.copy(self)
        other.tenant = check_tenant_id(tenant)
        other.portal_base_url = portal_base_url.rstrip("/")
        other._own_session = False
        return other

    def link(
        self,
        user_id: str,
        email: str,
        to: Sequence[str],
        cc: Sequence[str] = (),
        bcc: Sequence[str] = (),
        target: str = "/",
        ttl_seconds: int | None = None,
    ) -> PortalLink:
        """Return the link for one email: with a token when the service allows, else plain.

        Pass every address the email goes to (``to``, ``cc`` and ``bcc``) exactly
        as it will be sent: the service puts a token only into an email whose one
        reader is the user.
        """
        request = EmailLinkRequest(user_id, email, to, cc, bcc, target, ttl_seconds)
        if not is_portal_path(target):
            return self._fallback(request, "service_error", "target is not a path on the portal")
        try:
            answer = self._post(tenant_path(self.tenant, "/v1/links"), request.to_json())
            return self._answer(answer, request)
        except _Fallback as e:
            return self._fallback(request, e.reason, e.why)

    def links(self, requests_: Iterable[EmailLinkRequest | Mapping[str, Any]]) -> list[PortalLink]:
        """Return the links of many emails, in order; each fails (to its plain link) alone."""
        items = [r if isinstance(r, EmailLinkRequest) else EmailLinkRequest(**r) for r in requests_]
        out: list[PortalLink] = []
        for start in range(0, len(items), BATCH_SIZE):
            out += self._batch(items[start : start + BATCH_SIZE])
        return out

    def _batch(self, chunk: list[EmailLinkRequest]) -> list[PortalLink]:
        out: list[PortalLink | None] = [None] * len(chunk)
        sent = []
        for i, request in enumerate(chunk):
            if is_portal_path(request.target):
                sent.append(i)
            else:
                out[i] = self._fallback(
                    request, "service_error", "target is not a path on the portal"
                )
        if sent:
            try:
                answer = self._post(
                    tenant_path(self.tenant, "/v1/links/batch"),
                    {"items": [chunk[i].to_json() for i in sent]},
                )
                answers = answer.get("items") if isinstance(answer, dict) else None
                if not isinstance(answers, list) or len(answers) != len(sent):
                    raise _Fallback("service_unavailable", "batch answer of the wrong shape")
            except _Fallback as e:
                # One line for the whole request, not one per email.
                log.warning(
                    "auto-login links for %d emails%s: %s; they get plain links",
                    len(sent),
                    self._of_tenant(),
                    e.why,
                )
                for i in sent:
                    out[i] = self._plain(chunk[i], e.reason)
            else:
                for i, item in zip(sent, answers, strict=True):
                    try:
                        out[i] = self._answer(item, chunk[i])
                    except _Fallback as e:
                        out[i] = self._fallback(chunk[i], e.reason, e.why)
        return [link for link in out if link is not None]

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        status, answer, code = self.post(path, body, error=_Fallback)
        if status != 200:
            reason = "service_error" if 400 <= status < 500 else "service_unavailable"
            raise _Fallback(reason, f"HTTP {status} {code or ''}".strip())
        return answer

    def _answer(self, answer: Any, request: EmailLinkRequest) -> PortalLink:
        """Return the link of a 200 item, or raise ``_Fallback`` for a malformed one."""
        if not isinstance(answer, dict):
            raise _Fallback("service_unavailable", "answer is not a JSON object")
        if "error" in answer:
            error = answer["error"] if isinstance(answer["error"], dict) else {}
            # The detail names the field (recipients.to[0], target): no secret.
            raise _Fallback("service_error", f"{error.get('code')}: {error.get('detail')}".strip())
        url, auto_login = answer.get("url"), answer.get("auto_login")
        if not isinstance(url, str) or not isinstance(auto_login, bool):
            raise _Fallback("service_unavailable", "answer without url and auto_login")
        # The service and this client must agree on the portal: a link to
        # anywhere else is not put into an email.
        if not url.startswith(self.portal_base_url + "/"):
            raise _Fallback("service_error", "answer's link is not on the configured portal")
        reason = answer.get("reason")
        expires_at = answer.get("expires_at")
        return PortalLink(
            url,
            auto_login,
            reason if isinstance(reason, str) else None,
            expires_at if isinstance(expires_at, str) and auto_login else None,
        )

    def _fallback(self, request: EmailLinkRequest, reason: str, why: str) -> PortalLink:
        log.warning(
            "auto-login link for user %s%s: %s; the email gets the plain link",
            request.user_id,
            self._of_tenant(),
            why,
        )
        return self._plain(request, reason)

    def _of_tenant(self) -> str:
        # User 42 of acme and user 42 of globex are two people: say which.
        return "" if self.tenant is None else f" of tenant {self.tenant}"

    def _plain(self, request: EmailLinkRequest, reason: str) -> PortalLink:
        target = request.target if is_portal_path(request.target) else "/"
        return PortalLink(self.portal_base_url + target, False, reason, None)
