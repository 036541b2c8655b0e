"""Fixtures of the end-to-end tests.

The admin console's browser tests (tests/e2e/test_console_*browser_e2e.py):
one gunicorn server, one Chromium, a page that checks the CSP. The replicated
Redis tests (Sentinel, Cluster): ``launch``, hosts on a store URL. A module's
own fixture of the same name (as in test_gunicorn_e2e.py, test_redis_e2e.py)
takes precedence.
"""

from __future__ import annotations

import secrets

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


@pytest.fixture
def launch(tmp_path):
    """Start gunicorn hosts on a store URL, each with a key prefix of its own (``.prefix``).

    Stops them after the test and checks that no host logged a secret.
    """
    servers: list[GunicornServer] = []

    def launch(store_url: str, **extra) -> GunicornServer:
        prefix = f"ha-{secrets.token_hex(4)}:"
        config = production_config(
            store_url,
            STORE_KEY_PREFIX=prefix,
            RATE_LIMITS_ENABLED=False,  # the loads are far above the default limits
            # WAIT gets 1 s: a loaded test machine's replicas confirm within it.
            REDIS_SOCKET_TIMEOUT_SECONDS=2.0,
            **extra,
        )
        workdir = tmp_path / f"host-{len(servers)}"
        workdir.mkdir()
        server = GunicornServer(config, workdir)
        server.prefix = prefix
        servers.append(server)
        server.start()
        return server

    yield launch
    for server in servers:
        server.stop()
        assert_no_secret_in(server.log(), tokens=[])
