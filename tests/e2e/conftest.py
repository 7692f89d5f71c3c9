"""Debian's Chromium driven by Playwright (docs/architecture.md "Gotchas"), and logging in to the portal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from radshare.organisations.models import Sender
from tests.conftest import require

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PASSWORD = "correct horse battery staple"  # the ``sender`` fixture's


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright  # imported here: optional until installed
    except ImportError:
        require(False, "playwright (Python package)")
    require(Path(CHROMIUM).exists(), CHROMIUM)
    # Playwright runs an event loop in this thread; the test still reads the database between steps.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def log_in(page: Any, base: str, sender: Sender) -> None:
    page.goto(f"{base}/portal/login/")
    page.fill("input[name=username]", sender.get_username())
    page.fill("input[name=password]", PASSWORD)
    page.click("form.login button[type=submit], main form button[type=submit]")
    page.wait_for_url(f"{base}/portal/")
