"""The admin console's browser tests: one gunicorn server, one Chromium, a page that checks the CSP.

Shared by tests/e2e/test_console_*browser_e2e.py (a module's own fixture of the
same name, as in test_gunicorn_e2e.py, takes precedence).
"""

from __future__ import annotations

import pytest

from tests.conftest import CONSOLE_SECRET_KEY, production_config, sqlite_url
from tests.e2e.test_gunicorn_e2e import assert_no_secret_in
from tests.support.browser import WIDE, chromium
from tests.support.gunicorn_server import GunicornServer


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture
def server(tmp_path):
    config = production_config(sqlite_url(tmp_path))
    with GunicornServer(config, tmp_path) as server:
        # Tokens and tenant keys a test makes: none may reach the server's log.
        server.tokens = []
        yield server
    log = server.log()
    assert_no_secret_in(log, tokens=server.tokens)
    assert CONSOLE_SECRET_KEY not in log


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport=WIDE, base_url=server.url)
    page = context.new_page()
    page.csp_violations = []
    page.on(
        "console",
        lambda message: (
            page.csp_violations.append(message.text)
            if "Content Security Policy" in message.text
            else None
        ),
    )
    yield page
    context.close()
    # Nothing the console serves is blocked by its own policy.
    assert page.csp_violations == []
