"""Debian's Chromium driven by Playwright (docs/architecture.md "Gotchas"), and logging in to the portal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from radshare.organisations.models import Sender
from tests.conftest import free_port, require
from tests.delivery.test_outbox import SmtpServer

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


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    """Playwright, once per test module (its device descriptors: ``playwright.devices["iPhone 15"]``)."""
    try:
        from playwright.sync_api import sync_playwright  # imported here: optional until installed
    except ImportError:
        require(False, "playwright (Python package)")
    require(Path(CHROMIUM).exists(), CHROMIUM)
    # Playwright runs an event loop in this thread; the test still reads the database between steps.
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as p:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Any) -> Iterator[Any]:
    """Debian's Chromium, started once per test module; each test opens its own context (cookies, device)."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    yield browser
    browser.close()


@pytest.fixture
def smtp(radshare_config: Any) -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) on loopback that radshare's e-mail goes to; ``smtp.inbox`` holds what came."""
    server = SmtpServer(free_port())
    radshare_config(email_url=f"smtp://127.0.0.1:{server.port}")
    server.start()
    yield server
    server.stop()


def log_in(page: Any, base: str, sender: Sender) -> None:
    page.goto(f"{base}/portal/login/")
    page.fill("input[name=username]", sender.get_username())
    page.fill("input[name=password]", PASSWORD)
    page.click("form.login button[type=submit], main form button[type=submit]")
    page.wait_for_url(f"{base}/portal/")
