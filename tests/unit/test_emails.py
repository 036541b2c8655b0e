"""Portal links in email templates, and the sample-email command."""

from __future__ import annotations

import email
import json
from collections.abc import Iterator
from html.parser import HTMLParser
from importlib import resources

import jinja2
import pytest

from service.client import LinkClient
from service.emails import main, make_portal_link, render_ticket_update
from tests.conftest import API_KEYS, PORTAL, LinkActions
from tests.support.gunicorn_server import free_port

ISSUER_KEY = API_KEYS["issuer-key"][0]
ALICE = {"user_id": "42", "email": "alice@example.com"}


@pytest.fixture
def service_app(service_app):
    """The served app, with auto-login switched on through the admin API."""
    LinkActions(service_app.test_client()).enable()
    return service_app


@pytest.fixture
def client(service_url) -> Iterator[LinkClient]:
    with LinkClient(service_url, ISSUER_KEY, portal_base_url=PORTAL) as client:
        yield client


class Hrefs(HTMLParser):
    """Collect the href of every <a>, as a mail client reads it (entities decoded)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs.append(dict(attrs)["href"])


def test_portal_link_in_an_autoescaped_template_keeps_the_link_working(client):
    env = jinja2.Environment(autoescape=True)
    template = env.from_string('<a href="{{ portal_link("/tickets/1?tab=notes&x=1") }}">t</a>')
    portal_link = make_portal_link(client, **ALICE, to=["alice@example.com"])
    rendered = template.render(portal_link=portal_link)
    link = portal_link.get("/tickets/1?tab=notes&x=1")
    assert link.auto_login is True
    assert link.url.startswith(f"{PORTAL}/tickets/1?tab=notes&x=1&auto_login=ey")
    assert "&amp;x=1&amp;auto_login=ey" in rendered  # escaped in the HTML ...
    assert Hrefs(rendered).hrefs == [link.url]  # ... and exactly the link once read


def test_portal_link_asks_once_per_target(client, monkeypatch):
    calls = []
    link = client.link
    monkeypatch.setattr(
        client, "link", lambda *a, **kw: calls.append(kw["target"]) or link(*a, **kw)
    )
    portal_link = make_portal_link(client, **ALICE, to=["alice@example.com"])
    first, second, other = portal_link("/t/1"), portal_link("/t/1"), portal_link("/t/2")
    assert first == second != other
    assert calls == ["/t/1", "/t/2"]
    assert set(portal_link.issued) == {"/t/1", "/t/2"}


def test_one_recipient_gets_the_same_token_link_in_both_parts(client):
    rendered = render_ticket_update(
        client, **ALICE, to=["alice@example.com"], target="/tickets/1234"
    )
    link = rendered.link
    assert link.auto_login is True
    assert link.url.startswith(f"{PORTAL}/tickets/1234?auto_login=")
    assert link.url in rendered.text.splitlines()
    assert Hrefs(rendered.html).hrefs == [link.url]
    assert "signs you in" in rendered.text and "signs you in" in rendered.html
    message = rendered.message
    assert message["Subject"] == "[Ticket #1234] Printer on floor 3 does not print"
    assert message["To"] == "alice@example.com"
    assert message.get_content_type() == "multipart/alternative"
    text, html = (part.get_content() for part in message.iter_parts())
    assert (text, html) == (rendered.text, rendered.html)


def test_a_single_address_given_as_a_string_is_one_recipient_not_its_characters(client):
    rendered = render_ticket_update(client, **ALICE, to="alice@example.com", cc="")
    portal_link = make_portal_link(client, **ALICE, to="alice@example.com")

    assert rendered.link.auto_login is True
    assert rendered.message["To"] == "alice@example.com"
    assert portal_link.get("/").auto_login is True


@pytest.mark.parametrize(
    "recipients",
    (
        {"to": ["alice@example.com"], "cc": ["bob@example.com"]},
        {"to": ["alice@example.com"], "bcc": ["archive@example.com"]},
    ),
)
def test_two_recipients_get_the_plain_link(client, recipients):
    rendered = render_ticket_update(client, **ALICE, **recipients, target="/tickets/1234")
    assert (rendered.link.url, rendered.link.reason) == (
        f"{PORTAL}/tickets/1234",
        "multiple_recipients",
    )
    assert Hrefs(rendered.html).hrefs == [f"{PORTAL}/tickets/1234"]
    assert "signs you in" not in rendered.text + rendered.html
    assert rendered.message["Cc"] == recipients.get("cc", [None])[0]
    assert "archive@example.com" not in rendered.message.as_string()  # Bcc stays hidden


def test_the_email_goes_out_with_the_plain_link_when_the_service_is_down(caplog):
    url = f"http://127.0.0.1:{free_port()}"
    with LinkClient(url, ISSUER_KEY, portal_base_url=PORTAL, connect_timeout=0.5) as client:
        rendered = render_ticket_update(client, **ALICE, to=["alice@example.com"], target="/t/5")
    assert rendered.link.url == f"{PORTAL}/t/5"
    assert Hrefs(rendered.html).hrefs == [f"{PORTAL}/t/5"]
    assert "cannot connect" in caplog.text


def test_the_templates_ship_with_the_package():
    folder = resources.files("service") / "templates" / "email"
    assert {p.name for p in folder.iterdir()} >= {"ticket_update.html", "ticket_update.txt"}


# --- python -m service.emails ---------------------------------------------------


def run(capsys, *args: str) -> tuple[email.message.Message, str]:
    assert main(list(args)) == 0
    out, err = capsys.readouterr()
    return email.message_from_string(out), err


def test_the_command_prints_both_parts_with_a_token_link(service_url, capsys, monkeypatch):
    monkeypatch.setenv("AUTOLOGIN_ISSUER_KEY", ISSUER_KEY)
    message, summary = run(
        capsys,
        *("--user", "42", "--email", "alice@example.com", "--to", "alice@example.com"),
        *("--target", "/tickets/1234", "--service-url", service_url, "--portal-url", PORTAL),
    )
    text, html = (part.get_payload() for part in message.get_payload())
    link = next(line for line in text.splitlines() if line.startswith(PORTAL))
    assert link.startswith(f"{PORTAL}/tickets/1234?auto_login=ey")
    assert Hrefs(html).hrefs == [link]
    assert summary.startswith("# auto-login link, valid until ")
    assert link in summary
    assert ISSUER_KEY not in summary


def test_the_command_with_a_cc_shows_the_plain_link(service_url, capsys, monkeypatch):
    monkeypatch.setenv("MY_KEY", ISSUER_KEY)
    message, summary = run(
        capsys,
        *("--user", "42", "--email", "alice@example.com", "--to", "alice@example.com"),
        *("--cc", "bob@example.com", "--target", "/tickets/1234", "--api-key-env", "MY_KEY"),
        *("--service-url", service_url, "--portal-url", PORTAL),
    )
    assert message["Cc"] == "bob@example.com"
    assert summary == f"# plain link (no token: multiple_recipients): {PORTAL}/tickets/1234\n"


def test_the_command_reads_the_key_only_from_the_environment(capsys, monkeypatch):
    monkeypatch.delenv("AUTOLOGIN_ISSUER_KEY", raising=False)
    with pytest.raises(SystemExit) as exc_info:
        main(["--user", "42", "--email", "a@example.com", "--to", "a@example.com"])
    assert exc_info.value.code == 2
    assert "$AUTOLOGIN_ISSUER_KEY" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--user", "42", "--email", "a@example.com", "--api-key", ISSUER_KEY])
    capsys.readouterr()


def test_the_command_logs_why_a_link_is_plain(capsys, monkeypatch, caplog):
    monkeypatch.setenv("AUTOLOGIN_ISSUER_KEY", "some-key")
    url = f"http://127.0.0.1:{free_port()}"
    message, summary = run(
        capsys,
        *("--user", "42", "--email", "a@example.com", "--to", "a@example.com"),
        *("--service-url", url),
    )
    assert summary == "# plain link (no token: service_unavailable): http://127.0.0.1:8080/\n"
    assert "cannot connect" in caplog.text
    assert json.dumps(message.get_payload(0).get_payload()).count("http://127.0.0.1:8080/") == 1
