"""Calling the service from outside: one keep-alive JSON client for both ends of the link.

The portal's :class:`~service.portal.Verifier` and the email helper's
:class:`~service.client.LinkClient` are both a :class:`ServiceClient`: one API
key, bounded connect and read timeouts, one ``requests`` session, and the
same answer when the service cannot be asked (they then fall back, each in
its own way). Only the standard library and ``requests`` are needed.

Both ends name a tenant the same way: a call of tenant ``acme`` goes to the
same path under ``/v1/tenants/acme/`` (:func:`tenant_path`); without a tenant,
the path is unprefixed and the service acts in the key's own tenant (``default``
for a platform key).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Self

import requests

__all__ = [
    "DEVICE_ID",
    "TENANT_ID",
    "ServiceClient",
    "check_tenant_id",
    "is_tenant_id",
    "tenant_path",
]

#: A tenant id (API.md, "Tenants"): 1 to 63 of ``a-z 0-9 -``, no ``-`` at either
#: end, so that it can be a DNS label. Its one home: the kit never imports the
#: server, and the server (service/tenancy.py) takes it from here.
TENANT_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
#: A device id (API.md, "Bound to the first browser"): 16 to 128 base64url
#: characters, what a portal keeps in a long-lived cookie of one browser. Its
#: one home too: the portal middleware sends it, the verifier checks it.
DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{16,128}")


def is_tenant_id(value: object) -> bool:
    """Return whether ``value`` is a well-formed tenant id (``acme``, ``globex-eu``)."""
    # fullmatch, not match with "$": "acme\n" is not an id.
    return isinstance(value, str) and TENANT_ID.fullmatch(value) is not None


def check_tenant_id(value: object) -> str:
    """Return ``value`` if it is a well-formed tenant id; raise ``ValueError`` otherwise."""
    if not isinstance(value, str) or not is_tenant_id(value):
        raise ValueError(
            f"tenant {value!r} is not a tenant id: 1 to 63 of a-z 0-9 -, "
            "not starting or ending with -"
        )
    return value


def tenant_path(tenant: str | None, path: str) -> str:
    """Return the service path ``/v1/...`` of ``tenant``: ``/v1/tenants/{tenant}/...``.

    ``None`` leaves ``path`` as it is; a malformed tenant id raises ``ValueError``
    (it is checked again here: it becomes part of a URL path).
    """
    if tenant is None:
        return path
    if not path.startswith("/v1/"):
        raise ValueError(f"{path!r} is not a /v1/ path")
    return f"/v1/tenants/{check_tenant_id(tenant)}/{path.removeprefix('/v1/')}"


class ServiceClient:
    """POST JSON to the service with an API key; a base of the two callers' clients.

    :param service_url: the service's base URL, e.g. ``https://autologin.internal``.
    :param api_key: the caller's API key; sent as ``Authorization: Bearer``, never shown.
    :param connect_timeout: seconds to wait for a connection.
    :param read_timeout: seconds to wait for the answer.
    :param session: a ``requests.Session`` to share; by default one of its own.
    :param tenant: the tenant id whose calls these are (``/v1/tenants/{tenant}/...``);
        ``None``: the unprefixed paths, the key's own tenant. A malformed id
        raises ``ValueError`` here, not at the first call.
    """

    def __init__(
        self,
        service_url: str,
        api_key: str,
        *,
        connect_timeout: float = 1.0,
        read_timeout: float = 3.0,
        session: requests.Session | None = None,
        tenant: str | None = None,
    ) -> None:
        #: The tenant of this client's calls, or ``None`` (unprefixed paths).
        self.tenant = None if tenant is None else check_tenant_id(tenant)
        self.service_url = service_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        self._timeout = (connect_timeout, read_timeout)
        self._own_session = session is None
        #: One keep-alive session, reused by every call (requests pools its
        #: connections): a call costs one round trip, not a handshake too.
        self.session = session or requests.Session()

    def __repr__(self) -> str:  # never the key
        tenant = "" if self.tenant is None else f", tenant={self.tenant!r}"
        return f"{type(self).__name__}({self.service_url!r}{tenant})"

    def post(
        self, path: str, body: Mapping[str, Any], *, error: Callable[[str, str], Exception]
    ) -> tuple[int, Any, str | None]:
        """POST ``body`` to ``path``; return the status, the JSON answer and its ``code``.

        No answer, or one that is not JSON, raises ``error("service_unavailable",
        why)``. ``code`` is the problem document's code of an error answer, else ``None``.
        """
        try:
            response = self.session.post(
                self.service_url + path, json=body, headers=self._headers, timeout=self._timeout
            )
        except requests.Timeout as e:
            raise error("service_unavailable", "timed out") from e
        except requests.ConnectionError as e:
            raise error("service_unavailable", "cannot connect") from e
        except requests.RequestException as e:
            raise error("service_unavailable", type(e).__name__) from e
        try:
            answer = json.loads(response.content)
        except ValueError as e:
            raise error(
                "service_unavailable", f"HTTP {response.status_code}, body is not JSON"
            ) from e
        code = answer.get("code") if isinstance(answer, dict) else None
        return response.status_code, answer, code

    def close(self) -> None:
        """Close the session if this client opened it."""
        if self._own_session:
            self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
