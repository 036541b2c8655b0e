"""Take auto-login tokens out of stored text: pure functions, no Flask.

A reply to a ticket email quotes the portal link, token and all, and the
ticket system keeps that reply. :func:`scrub_text` removes the token
parameter (name, value and one separator) from every link to the portal in
such a text, so that each link stays a working plain link to the same page,
and leaves every other character as it was. ``docs/SCRUB.md`` says exactly
what is found and what is not.

Everything here runs in linear time, for the text may be a megabyte chosen
by an attacker: the text is searched once for the portal's origin, each
link is read forward once, repetitions are possessive (they never give
characters back) and lookaheads look at most a few characters ahead.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote, urlsplit

from service.errors import ExpiredTokenError, TokenError
from service.tokens import KeyRing, verify_token

__all__ = ["CONTENT_TYPES", "ScrubResult", "scrub_text"]

CONTENT_TYPES = ("text/plain", "text/html")
#: How many times a link may be percent-encoded inside another one and still
#: be found: 1 is a mail gateway's wrapper (Safe Links), 2 a wrapper wrapped.
MAX_DEPTH = 2
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters a link in text may hold: printable ASCII, less the ones RFC 3986
# never allows and text puts around links (quotes, brackets, backslash).
_LINK = frozenset(map(chr, range(0x21, 0x7F))) - set('"<>[\\]^`{|}')
_TOKEN_CHARS = "A-Za-z0-9_.~+\\-"  # a JWT is [A-Za-z0-9_-] and dots; the rest: garbled values


@dataclass(frozen=True)
class ScrubResult:
    """A text with its tokens taken out."""

    #: The text, unchanged but for the removed token parameters.
    text: str
    #: How many token parameters were removed, genuine or not.
    removed: int
    #: Users whose genuine tokens (even expired or revoked) were found, once
    #: each, in order of first appearance.
    user_ids: tuple[str, ...]
    #: The link ids of those genuine tokens, once each, in order of first appearance.
    link_ids: tuple[str, ...] = ()


def _chars(chars: frozenset[str] | set[str]) -> str:
    return "[" + "".join(re.escape(c) for c in sorted(chars)) + "]"


def _spelled(text: str, depth: int) -> str:
    """Return a pattern for ``text`` percent-encoded ``depth`` times, hex in any case."""
    if depth == 0:
        return re.escape(text)
    # Encoding again only turns each % into %25: "?" is %3F, then %253F.
    return "".join(
        f"%{'25' * (depth - 1)}(?i:{part[1:]})" if part.startswith("%") else re.escape(part)
        for part in re.split(r"(%[0-9A-F]{2})", quote(text, safe=""))
        if part
    )


@dataclass(frozen=True)
class _Depth:
    """The patterns that read a link percent-encoded a given number of times."""

    after_host: re.Pattern[str]  # optional dot, port, base path; then / or ?
    path: re.Pattern[str]
    query: re.Pattern[str]  # the ? that starts the query
    separator: re.Pattern[str]  # between two parameters
    token: re.Pattern[str]  # name=value of the token parameter
    other: re.Pattern[str]  # any other parameter
    skip: re.Pattern[str]  # other parameters, each with the separator after it


def _depth(depth: int, base_path: str, param: str, html: bool) -> _Depth:
    if depth == 0:
        path = _chars(_LINK - {"?", "#"}) + "*+"
        # ? splits parameters too: inside a query it can only start the query
        # of a portal URL written unencoded into a parameter (?next=https://…).
        amp = r"&(?:(?i:amp);|#0{0,6}38;|#[xX]0{0,6}26;)?" if html else r"&(?:(?i:amp);)?"
        separator = rf"{amp}|\?"
        other = _chars(_LINK - {"&", "#", "?"}) + "*+"
        unit = f"[{_TOKEN_CHARS}=%]"
    else:
        # Inside a wrapper the link ends at the wrapper's own & or #, or at an
        # encoded &, # or ? of a shallower wrapper; at its own depth & and ?
        # separate parameters and # starts the fragment. The lookaheads below
        # follow a % and say which escapes are not plain characters here.
        own = "25" * (depth - 1)
        shallower = f"|(?:25){{0,{depth - 2}}}(?i:26|23|3F)" if depth > 1 else ""
        ends = f"(?:25){{0,{depth - 1}}}(?i:26|23|3F)"
        plain = _chars(_LINK - {"%", "&", "#"})
        path = f"(?:{plain}|%(?!{own}(?i:3F|23){shallower}))*+"
        separator = f"%{own}(?i:26|3F)"
        other = f"(?:{plain}|%(?!{ends}))*+"
        unit = f"(?:[{_TOKEN_CHARS}]|%(?!{ends}))"
    name = _spelled(param, depth) + _spelled("=", depth)
    return _Depth(
        after_host=re.compile(
            rf"\.?(?:{_spelled(':', depth)}(?P<port>[0-9]{{1,5}}))?{_spelled(base_path, depth)}"
            rf"(?={_spelled('/', depth)}|{_spelled('?', depth)})"
        ),
        path=re.compile(path),
        query=re.compile(_spelled("?", depth)),
        separator=re.compile(separator),
        token=re.compile(f"{name}(?P<value>{unit}++)"),
        other=re.compile(other),
        # The lookahead stops before a parameter that may be the token.
        skip=re.compile(f"(?:(?!{name}{unit}){other}(?P<separator>{separator}))*"),
    )


@dataclass(frozen=True)
class _Portal:
    """The compiled patterns of one portal origin, base path and token parameter."""

    origins: re.Pattern[str]
    port: int
    default_port: int
    depths: tuple[_Depth, ...]


@lru_cache(maxsize=16)
def _portal(base_url: str, token_param: str, html: bool) -> _Portal:
    parts = urlsplit(base_url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"base_url {base_url!r} is not an http(s) origin")
    host = parts.netloc.rpartition(":")[0] if parts.port is not None else parts.netloc
    base_path = parts.path.rstrip("/")
    origins = "|".join(
        f"(?P<d{d}>(?i:{re.escape(scheme)}{_spelled('://', d)}{_spelled(host, d)}))"
        for d in range(MAX_DEPTH + 1)
    )
    return _Portal(
        origins=re.compile(origins),
        port=parts.port or _DEFAULT_PORTS[scheme],
        default_port=_DEFAULT_PORTS[scheme],
        depths=tuple(_depth(d, base_path, token_param, html) for d in range(MAX_DEPTH + 1)),
    )


@dataclass(frozen=True)
class _Token:
    separator_start: int  # where the ?, & or &amp; before it starts
    start: int
    end: int
    value: str


@dataclass(frozen=True)
class _Link:
    end: int  # where reading stopped: the end of the path or of the query
    cuts: list[tuple[int, int]]  # spans to delete
    tokens: list[_Token]


def _read_link(
    text: str, pos: int, portal: _Portal, d: _Depth, user_of: Callable[[str], str | None]
) -> _Link:
    """Read the portal link whose host ends at ``pos``.

    Nothing is found unless the host is followed by the port, the base path
    and a ``/`` or ``?``: anything else is another host, or has no query.
    """
    after = d.after_host.match(text, pos)
    port = after.group("port") if after else None
    if after is None or (int(port) if port else portal.default_port) != portal.port:
        return _Link(pos, [], [])
    pos = d.path.match(text, after.end()).end()
    query = d.query.match(text, pos)
    if query is None:
        return _Link(pos, [], [])
    tokens: list[_Token] = []
    first_kept: int | None = None  # where the first parameter that stays starts
    separator_start, pos = query.start(), query.end()
    while True:
        token = d.token.match(text, pos)
        value = token.group("value").rstrip(".") if token else ""
        if value.endswith("_") and user_of(value) is None and user_of(value.rstrip("_")):
            # Proofpoint's wrapper closes the URL with "__" (/v3/__https://…__;…):
            # a genuine token followed by underscores leaves them in place.
            value = value.rstrip("_")
        if token and value:
            end = token.start("value") + len(value)
            tokens.append(_Token(separator_start, pos, end, value))
        else:
            first_kept = pos if first_kept is None else first_kept
            end = d.other.match(text, pos).end()
        # After a token's value anything but a separator ends the link: a
        # trailing "." or ")" belongs to the sentence, not to the token.
        separator = d.separator.match(text, end)
        if separator is None:
            break
        separator_start, pos = separator.start(), separator.end()
        if not value:
            # Pass every following parameter that is not the token in one
            # match: a query of a million "&" is no million Python steps.
            skipped = d.skip.match(text, pos)
            if skipped.start("separator") >= 0:
                separator_start, pos = skipped.start("separator"), skipped.end()
    if not tokens:
        return _Link(end, [], [])
    if first_kept is None:  # nothing stays: the ? goes too
        return _Link(end, [(query.start(), end)], tokens)
    # The first parameter that stays takes the place of the first one, after the ?.
    cuts = [(query.end(), first_kept)] if first_kept > query.end() else []
    cuts += [(t.separator_start, t.end) for t in tokens if t.start > first_kept]
    return _Link(end, cuts, tokens)


def _genuine(
    token: str, ring: KeyRing, tenant_id: str | None, legacy_before: float | None
) -> tuple[str, str] | None:
    """Return the user and link id of a genuine token of ``tenant_id``, expired or revoked alike."""
    try:
        claims = verify_token(token, ring, tenant_id=tenant_id, legacy_before=legacy_before)
    except ExpiredTokenError as e:
        return e.user_id, e.link_id  # type: ignore[return-value]  (a genuine token's)
    except TokenError:
        # Forged, garbled, another service's, tenant's or purpose's: removed
        # all the same, but none of this tenant's links has leaked.
        return None
    return claims.user_id, claims.token_id


def scrub_text(
    text: str,
    *,
    content_type: str,
    ring: KeyRing,
    base_url: str,
    token_param: str,
    tenant_id: str | None = None,
    legacy_before: float | None = None,
) -> ScrubResult:
    """Remove every token parameter from the portal links in ``text``.

    :param content_type: ``text/plain`` or ``text/html``; HTML also reads
        ``&#38;`` and ``&#x26;`` as parameter separators (``&amp;`` is read in both).
    :param ring: the keys that tell a genuine token, whose user is reported.
    :param base_url: the portal's origin and optional base path; only links
        under it are touched.
    :param token_param: the query parameter that carries the token.
    :param tenant_id: report only this tenant's users (every token is removed
        all the same); ``None``: any tenant's.
    """
    if content_type not in CONTENT_TYPES:
        raise ValueError(f"content_type must be one of {', '.join(CONTENT_TYPES)}")
    portal = _portal(base_url, token_param, content_type == "text/html")
    checked: dict[str, tuple[str, str] | None] = {}

    def genuine(value: str) -> tuple[str, str] | None:
        if value not in checked:
            checked[value] = _genuine(value, ring, tenant_id, legacy_before)
        return checked[value]

    def user_of(value: str) -> str | None:
        found = genuine(value)
        return None if found is None else found[0]

    cuts: list[tuple[int, int]] = []
    found: list[tuple[int, str]] = []
    # A link inside a link at the same depth (?next=https://portal/…) is read
    # as part of the outer one, so each character is read once per depth.
    read_up_to = [0] * (MAX_DEPTH + 1)
    for origin in portal.origins.finditer(text):
        depth = int(origin.lastgroup[1:])  # type: ignore[index]
        if origin.start() < read_up_to[depth]:
            continue
        link = _read_link(text, origin.end(), portal, portal.depths[depth], user_of)
        read_up_to[depth] = link.end
        cuts += link.cuts
        found += [(t.start, t.value) for t in link.tokens]
    if not found:
        return ScrubResult(text, 0, ())

    pieces, pos = [], 0
    for start, end in sorted(cuts):  # a link wrapped inside a token's value may overlap
        if start > pos:
            pieces.append(text[pos:start])
        pos = max(pos, end)
    pieces.append(text[pos:])

    users: dict[str, None] = {}  # ordered, once each
    links: dict[str, None] = {}
    for _, value in sorted(found):
        token = genuine(value)
        if token is not None:
            users[token[0]] = None
            links[token[1]] = None
    return ScrubResult("".join(pieces), len(found), tuple(users), tuple(links))
