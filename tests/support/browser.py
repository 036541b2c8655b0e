"""Debian's Chromium driven by Playwright (Playwright's own browser download does not work here)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

CHROMIUM = "/usr/bin/chromium"
#: Viewports of the console tests: a laptop and a phone.
WIDE = {"width": 1280, "height": 900}
NARROW = {"width": 390, "height": 844}
#: Flags for a closed network: no background connections that would be refused.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium() -> Iterator[object]:
    """Yield a headless Chromium ``Browser``; close it and Playwright afterwards."""
    from playwright.sync_api import sync_playwright

    path = shutil.which("chromium") or CHROMIUM
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=path, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()
