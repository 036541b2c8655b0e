"""The link rules: who gets a token in which email, and what the link is.

One code path for the API (``POST /v1/links`` and its batch) and the admin
console's preview: :func:`parse_link_request` validates one request,
:func:`decide` says whether the email may carry a token and why not,
:func:`build_links` issues the tokens and writes the URLs, and
:func:`issue_links` does that a chunk at a time for a store that writes each
chunk's ledger entries while the next chunk is signed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

from service.clock import isoformat
from service.config import MIN_TTL_SECONDS
from service.errors import ApiError
from service.store import IssueState, LinkRecord, TokenState
from service.tokens import USER_ID, KeyRing, issue_token

__all__ = [
    "LinkAnswer",
    "LinkRequest",
    "build_links",
    "decide",
    "issue_links",
    "json_integer",
    "parse_link_request",
    "validate_target",
    "validate_user_id",
]

MAX_TARGET_LENGTH = 2048
#: The longest ``reference`` a link request may carry.
MAX_REFERENCE = 128
# A pragmatic address check: one @, an ASCII dot-atom local part (RFC 5322: no
# leading, trailing or doubled dot) of up to 64 characters, a dotted host name.
# Display names ("Alice <a@example.com>") are refused: the caller sends bare
# addresses, so there is exactly one way to compare them. openapi.json's Email
# pattern spells the same rule.
_EMAIL = re.compile(
    r"(?=[^@]{1,64}@)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@"
    r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
)
# RFC 3986 path, query and fragment characters, %XX escapes, at most one "#":
# the link must stay one URI that mail clients do not cut short.
_URI_CHARS = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Unicode's control characters (C0, DEL, C1), as openapi.json's reference pattern spells them.
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_URI_PATH = re.compile(rf"{_URI_CHARS}*(?:#{_URI_CHARS}*)?")


@dataclass(frozen=True)
class LinkRequest:
    """One validated link request."""

    user_id: str
    email: str
    recipients: tuple[str, ...]  # every address, lower-cased, as given
    target: str
    ttl_seconds: int | None
    #: The caller's note kept with the link in the ledger ("ticket 1234, reply 7").
    reference: str | None = None


@dataclass(frozen=True)
class LinkAnswer:
    """The link for one email, with or without a token."""

    url: str
    auto_login: bool
    reason: str | None
    expires_at: datetime | None
    #: The token's id (``None`` without a token).
    link_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the contract's JSON shape of this answer."""
        return {
            "url": self.url,
            "auto_login": self.auto_login,
            "reason": self.reason,
            "expires_at": _iso(self.expires_at) if self.expires_at else None,
            "link_id": self.link_id,
        }


@lru_cache(maxsize=64)
def _iso(moment: datetime) -> str:
    # Every answer of a batch expires at the same second: format it once.
    return isoformat(moment)


def json_integer(value: Any) -> int | None:
    """Return ``value`` as an int if JSON Schema calls it an integer (``86400.0`` too), else None.

    A bool is not a number here, and neither is a float with a fractional part
    or one too large to be a whole number of seconds anyone means.
    """
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return None


def _invalid(field: str, detail: str) -> ApiError:
    return ApiError(400, "invalid_request", f"{field}: {detail}")


def _address(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise _invalid(field, "must be a string e-mail address")
    if len(value) > 254 or not _EMAIL.fullmatch(value):
        raise _invalid(field, "is not an e-mail address")
    return value.lower()


def validate_target(value: Any, token_param: str) -> str:
    """Return ``value`` if it is a path on the portal, else raise ``invalid_target``.

    A value that is not a string at all is an ill-typed field, ``invalid_request``,
    as for every other field (API.md, "Errors").
    """

    def refuse(why: str) -> ApiError:
        return ApiError(400, "invalid_target", f"target: {why}")

    if not isinstance(value, str):
        raise _invalid("target", "must be a string path such as /tickets/1234")
    if not value or len(value) > MAX_TARGET_LENGTH:
        raise refuse(f"must be 1 to {MAX_TARGET_LENGTH} characters")
    if not _URI_PATH.fullmatch(value):
        raise refuse(
            "may hold only URI characters (RFC 3986: letters, digits, -._~!$&'()*+,;=:@/? "
            "and %XX), at most one #; percent-encode the rest"
        )
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        raise refuse("must be a path on the portal starting with a single /")
    # A path starting with one "/" has neither scheme nor host (RFC 3986);
    # the regex above allowed no backslash, space or control character.
    path_query = value.partition("#")[0]
    path, _, query = path_query.partition("?")
    if "%" in path:
        # A portal that decodes the path before redirecting must not end up on
        # another host: /%2F%2Fevil.test and /%5Cevil.test are refused too.
        decoded = unquote(path)
        if decoded.startswith("//") or "\\" in decoded or _CONTROL.search(decoded):
            raise refuse("must not encode another host or control characters")
    if token_param in query:
        for pair in query.split("&"):
            if pair.partition("=")[0] == token_param:
                raise refuse(f"must not carry the {token_param} parameter itself")
    return value


def validate_user_id(value: Any) -> str:
    """Return ``value`` if it is a portal user id, or raise ``invalid_request``."""
    if not isinstance(value, str) or not USER_ID.fullmatch(value):
        raise _invalid("user_id", "must be 1 to 128 of A-Z a-z 0-9 . _ : @ + -")
    return value


def parse_link_request(body: Any, *, token_param: str, max_ttl_seconds: int) -> LinkRequest:
    """Validate one link request body; raise ``ApiError`` naming the field."""
    if not isinstance(body, Mapping):
        raise ApiError(400, "invalid_request", "a link request must be a JSON object")
    user_id = validate_user_id(body.get("user_id"))
    email = _address(body.get("email"), "email")

    recipients_value = body.get("recipients")
    if not isinstance(recipients_value, Mapping):
        raise _invalid("recipients", "must be an object with to, cc and bcc lists")
    unknown = set(recipients_value) - {"to", "cc", "bcc"}
    if unknown:
        raise _invalid(f"recipients.{sorted(unknown)[0]}", "is not to, cc or bcc")
    if "to" not in recipients_value:
        raise _invalid("recipients.to", "is required (it may be empty when cc is not)")
    addresses: list[str] = []
    for name in ("to", "cc", "bcc"):
        listed = recipients_value.get(name, [])
        if not isinstance(listed, list):
            raise _invalid(f"recipients.{name}", "must be a list of addresses")
        addresses += [_address(a, f"recipients.{name}[{i}]") for i, a in enumerate(listed)]
    if not addresses:
        raise _invalid("recipients", "lists no address; an email needs at least one")

    target = validate_target(body.get("target", "/"), token_param)

    ttl = body.get("ttl_seconds")
    if ttl is not None:
        ttl = json_integer(ttl)
        if ttl is None:
            raise _invalid("ttl_seconds", "must be a whole number of seconds")
        if not MIN_TTL_SECONDS <= ttl <= max_ttl_seconds:
            raise ApiError(
                400,
                "invalid_ttl",
                f"ttl_seconds must be between {MIN_TTL_SECONDS} and {max_ttl_seconds}",
            )
    reference = body.get("reference")
    if reference is not None and (
        not isinstance(reference, str)
        or not 1 <= len(reference) <= MAX_REFERENCE
        or _CONTROL_CHARS.search(reference)
    ):
        raise _invalid(
            "reference",
            f"must be 1 to {MAX_REFERENCE} printable characters (no control characters)",
        )
    return LinkRequest(user_id, email, tuple(addresses), target, ttl, reference)


def local_part(address: str) -> str:
    """Return an address's local part as a role mailbox list spells it: lower case, no +tag."""
    return address.rpartition("@")[0].partition("+")[0].lower()


def decide(
    request: LinkRequest, *, enabled: bool, role_mailboxes: Container[str] = ()
) -> str | None:
    """Return why this email may not carry a token, or ``None`` when it may.

    The reasons in the contract's order: ``disabled``, ``multiple_recipients``,
    ``recipient_mismatch``, ``role_mailbox`` (a shared mailbox is read by
    several people: the CC risk by another name).
    """
    if not enabled:
        return "disabled"
    distinct = set(request.recipients)
    if len(distinct) > 1:
        return "multiple_recipients"
    if distinct != {request.email}:
        return "recipient_mismatch"
    if local_part(request.email) in role_mailboxes:
        return "role_mailbox"
    return None


def _url(base: str, target: str, param: str | None, token: str | None) -> str:
    if token is None:
        return base + target
    path_query, hash_mark, fragment = target.partition("#")
    joiner = "" if path_query.endswith(("?", "&")) else ("&" if "?" in path_query else "?")
    return f"{base}{path_query}{joiner}{param}={token}{hash_mark}{fragment}"


def build_links(
    requests: Sequence[LinkRequest],
    state: IssueState,
    *,
    ring: KeyRing,
    base_url: str,
    token_param: str,
    now: datetime,
    tenant_id: str = "default",
    issued_by: str = "",
) -> tuple[list[LinkAnswer], list[LinkRecord]]:
    """Answer each request: a token link when the rules allow, else the plain link.

    :returns: the answers in order, and the ledger entry of each token issued.
    """
    settings = state.settings
    default_ttl = settings.ttl_within(ring.max_ttl_seconds)
    roles = frozenset(settings.role_mailboxes)
    answers = []
    ledger = []
    for request in requests:
        reason = decide(request, enabled=settings.auto_login_enabled, role_mailboxes=roles)
        if reason is not None:
            answers.append(
                LinkAnswer(_url(base_url, request.target, None, None), False, reason, None)
            )
            continue
        user_epoch = state.user_epochs[request.user_id]
        token, claims = issue_token(
            request.user_id,
            TokenState(state.incarnation, state.epoch, user_epoch, epoch_id=state.epoch_id),
            target=request.target,
            ring=ring,
            ttl=request.ttl_seconds or default_ttl,
            now=now,
            tenant_id=tenant_id,
        )
        expires_at = datetime.fromtimestamp(claims.expires_at, now.tzinfo)
        answers.append(
            LinkAnswer(
                _url(base_url, request.target, token_param, token),
                True,
                None,
                expires_at,
                claims.token_id,
            )
        )
        ledger.append(
            LinkRecord(
                claims.token_id,
                request.user_id,
                request.target,
                request.reference,
                issued_by,
                now,
                expires_at,
                state.epoch,
                user_epoch,
                epoch_id=state.epoch_id,
            )
        )
    return answers, ledger


#: Links a batch signs at a time, while the store writes the chunk before.
LEDGER_CHUNK = 200


def issue_links(
    requests: Sequence[LinkRequest],
    state: IssueState,
    *,
    write: Callable[[Iterable[list[LinkRecord]]], None] | None,
    **build: Any,
) -> list[LinkAnswer]:
    """Issue ``requests`` as :func:`build_links` does, ``LEDGER_CHUNK`` at a time.

    :param write: takes the chunks' ledger entries as they are made and has
        written them all when it returns (``Store.record_link_chunks``);
        ``None``: the ledger is off. An error of it is raised here, and no
        answer is handed out.
    :param build: the keyword arguments of :func:`build_links`.
    """
    if write is None:
        return build_links(requests, state, **build)[0]
    answers: list[LinkAnswer] = []

    def chunks() -> Iterator[list[LinkRecord]]:
        for first in range(0, len(requests), LEDGER_CHUNK):
            part, issued = build_links(requests[first : first + LEDGER_CHUNK], state, **build)
            answers.extend(part)
            if issued:
                yield issued

    write(chunks())
    return answers
