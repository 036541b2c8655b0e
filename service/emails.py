"""Portal links in email templates, and a command that renders a sample ticket email.

A template writes ``{{ portal_link("/tickets/1234") }}`` and gets the right link
for that email's recipients: with a token when the email has one reader, the
user, and auto-login is on; the plain link otherwise, or when the service does
not answer. Put the callable of :func:`make_portal_link` into the context::

    portal_link = make_portal_link(client, user_id="42", email="alice@example.com",
                                   to=["alice@example.com"])
    html = env.get_template("email/ticket_update.html").render(portal_link=portal_link, ...)

HTML autoescaping keeps the link working: ``&`` in its query becomes ``&amp;``
inside ``href="..."``, which the mail client reads back as ``&``.

An email of one tenant of a deployment with many names the tenant and that
tenant's portal address (``make_portal_link(client, tenant="acme",
portal_base_url="https://acme.portal.example.com", ...)``), or uses a client
made for it (``LinkClient(..., tenant="acme")``).

Try it (the issuer key is read from an environment variable, never argv)::

    AUTOLOGIN_ISSUER_KEY=... python -m service.emails --user 42 \\
        --email alice@example.com --to alice@example.com --target /tickets/1234
    AUTOLOGIN_ISSUER_KEY=... python -m service.emails --tenant acme \\
        --portal-url https://acme.portal.example.com --user 42 ...
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage

import jinja2

from service.client import LinkClient, PortalLink, addresses
from service.transport import check_tenant_id

__all__ = [
    "PortalLinks",
    "RenderedEmail",
    "describe",
    "email_environment",
    "main",
    "make_portal_link",
    "render_ticket_update",
]

#: SMTP's line limit (RFC 5321); longer lines must be quoted-printable.
_MAX_LINE = 998
_TICKET = re.compile(r"/tickets/([A-Za-z0-9_-]+)")


class PortalLinks:
    """``portal_link(target)`` for one email: one service call per distinct target.

    The same target asked twice (the HTML and the text part) gives the same
    link, so an email carries one token, not two. ``to``, ``cc`` and ``bcc``
    are every address the email goes to, exactly as it is sent (Bcc
    included): a token goes only into an email with one reader.

    ``tenant`` and ``portal_base_url`` make the links those of that tenant and
    its portal (``/v1/tenants/{tenant}/links``), through ``client`` (its key
    and connections). Without them the links are the client's own tenant's. A
    tenant other than the client's needs its ``portal_base_url``: each tenant has
    its own portal address, and the plain link must point at it. A malformed
    tenant id raises ``ValueError``.
    """

    def __init__(
        self,
        client: LinkClient,
        *,
        user_id: str,
        email: str,
        to: Sequence[str],
        cc: Sequence[str] = (),
        bcc: Sequence[str] = (),
        ttl_seconds: int | None = None,
        tenant: str | None = None,
        portal_base_url: str | None = None,
    ) -> None:
        if tenant is None:
            if portal_base_url is not None:
                raise ValueError("portal_base_url goes with a tenant (the client has its own)")
        elif portal_base_url is not None:
            client = client.for_tenant(tenant, portal_base_url=portal_base_url)
        elif check_tenant_id(tenant) != client.tenant:
            raise ValueError(
                f"give the portal_base_url of tenant {tenant!r}: each tenant has its own portal"
            )
        #: The client of this email's tenant.
        self.client = client
        self.user_id = user_id
        self.email = email
        self.recipients = (tuple(addresses(to)), tuple(addresses(cc)), tuple(addresses(bcc)))
        self.ttl_seconds = ttl_seconds
        #: The links handed out so far, by target.
        self.issued: dict[str, PortalLink] = {}

    def get(self, target: str = "/") -> PortalLink:
        """Return the :class:`PortalLink` of ``target`` (asking the service once)."""
        if target not in self.issued:
            to, cc, bcc = self.recipients
            self.issued[target] = self.client.link(
                self.user_id, self.email, to, cc, bcc, target=target, ttl_seconds=self.ttl_seconds
            )
        return self.issued[target]

    def __call__(self, target: str = "/") -> str:
        return self.get(target).url


#: The ``portal_link`` callable for one email's template context.
make_portal_link = PortalLinks


def email_environment() -> jinja2.Environment:
    """Return a Jinja2 environment for ``email/*.html`` and ``email/*.txt`` of this package.

    HTML is autoescaped, text is not; a missing variable is an error, not a
    blank in an email.
    """
    return jinja2.Environment(
        loader=jinja2.PackageLoader("service", "templates"),
        autoescape=jinja2.select_autoescape(["html"], default_for_string=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


@dataclass(frozen=True)
class RenderedEmail:
    """A rendered email: the MIME message, its two parts and the link they carry."""

    message: EmailMessage
    text: str
    html: str
    link: PortalLink


def _cte(body: str) -> str:
    # 7bit keeps the link readable in the raw message; qp when it must.
    if body.isascii() and max(map(len, body.splitlines()), default=0) <= _MAX_LINE:
        return "7bit"
    return "quoted-printable"


def render_ticket_update(
    client: LinkClient,
    *,
    user_id: str,
    email: str,
    to: Sequence[str],
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    target: str = "/",
    name: str | None = None,
    ticket_id: str | None = None,
    ticket_title: str = "Printer on floor 3 does not print",
    update: str = "We replaced the fuser unit. Can you check that it prints again?",
    sender: str = "helpdesk@example.com",
    env: jinja2.Environment | None = None,
) -> RenderedEmail:
    """Render the ticket-update email (text and HTML parts) for these recipients."""
    env = env or email_environment()
    portal_link = make_portal_link(client, user_id=user_id, email=email, to=to, cc=cc, bcc=bcc)
    link = portal_link.get(target)
    match = _TICKET.match(target)
    context = {
        "name": name or email.split("@")[0].capitalize(),
        "ticket_id": ticket_id or (match.group(1) if match else "1234"),
        "ticket_title": ticket_title,
        "update": update,
        "target": target,
        "portal_link": portal_link,
        "link_has_token": link.auto_login,
    }
    text = env.get_template("email/ticket_update.txt").render(context)
    html = env.get_template("email/ticket_update.html").render(context)
    message = EmailMessage()
    message["Subject"] = f"[Ticket #{context['ticket_id']}] {ticket_title}"
    message["From"] = sender
    if to:
        message["To"] = ", ".join(addresses(to))
    if cc:
        message["Cc"] = ", ".join(addresses(cc))
    # Bcc addresses count for the link but are never written into the message.
    message.set_content(text, cte=_cte(text))
    message.add_alternative(html, subtype="html", cte=_cte(html))
    return RenderedEmail(message, text, html, link)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service.emails",
        description="Render a sample ticket-update email with its portal link.",
    )
    parser.add_argument("--user", required=True, help="the portal's user id, e.g. 42")
    parser.add_argument("--email", required=True, help="the user's own address")
    parser.add_argument("--to", action="append", default=[], help="a To address (repeatable)")
    parser.add_argument("--cc", action="append", default=[], help="a Cc address (repeatable)")
    parser.add_argument("--bcc", action="append", default=[], help="a Bcc address (repeatable)")
    parser.add_argument("--target", default="/", help="the portal path, e.g. /tickets/1234")
    parser.add_argument("--service-url", default="http://127.0.0.1:8000")
    parser.add_argument(
        "--portal-url",
        default="http://127.0.0.1:8080",
        help="the portal's address (with --tenant: that tenant's portal_base_url)",
    )
    parser.add_argument(
        "--tenant",
        help="the tenant id (acme) of a deployment with many; default: the key's own tenant",
    )
    parser.add_argument(
        "--api-key-env",
        default="AUTOLOGIN_ISSUER_KEY",
        help="environment variable holding the issuer API key (a key on the command "
        "line would show in ps)",
    )
    parser.add_argument("--timeout", type=float, default=3.0, help="read timeout in seconds")
    return parser


def describe(link: PortalLink) -> str:
    """Say in one line what kind of link an email got."""
    if link.auto_login:
        return f"auto-login link, valid until {link.expires_at}"
    return f"plain link (no token: {link.reason})"


def main(argv: Sequence[str] | None = None) -> int:
    """Render the sample email and print it as a MIME multipart message."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not (args.to or args.cc or args.bcc):
        parser.error("give at least one --to, --cc or --bcc address")
    api_key = os.environ.get(args.api_key_env, "").strip()
    if not api_key:
        parser.error(f"set ${args.api_key_env} to an API key with the issuer role")
    if args.tenant is not None:
        try:
            check_tenant_id(args.tenant)
        except ValueError as e:
            parser.error(str(e))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with LinkClient(
        args.service_url,
        api_key,
        portal_base_url=args.portal_url,
        tenant=args.tenant,
        read_timeout=args.timeout,
    ) as client:
        rendered = render_ticket_update(
            client,
            user_id=args.user,
            email=args.email,
            to=args.to,
            cc=args.cc,
            bcc=args.bcc,
            target=args.target,
        )
    print(f"# {describe(rendered.link)}: {rendered.link.url}", file=sys.stderr)
    sys.stdout.write(rendered.message.as_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
