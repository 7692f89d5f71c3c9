"""What every browser journey does at each step (docs/architecture.md "Forms and their errors"): axe-core checks the
page for WCAG 2.1 A and AA, the page's script and CSP errors are collected, and with ``RADSHARE_SCREENSHOTS=1`` the
step is saved as ``tests/e2e/screenshots/<journey>/<nn>-<step>.png``. Also: browser contexts for a desktop and for
phones (Playwright's device descriptors, run in Debian's Chromium), moving with the keyboard only, and running the
queued tasks as ``radshare worker`` would."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from django.utils import translation

WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
DESKTOP = {"viewport": {"width": 1280, "height": 900}}
PHONES = ("iPhone 15", "Pixel 7")
TIME_ZONE = "Europe/Amsterdam"


def new_context(playwright: Any, browser: Any, device: str, locale: str, **options: Any) -> Any:
    """A browser context as a person's browser: ``device`` is "desktop" or a Playwright device name (its screen,
    touch and user agent; the browser stays Debian's Chromium), ``locale`` such as "nl-NL" (also its
    Accept-Language)."""
    profile = dict(DESKTOP) if device == "desktop" else dict(playwright.devices[device])
    profile.pop("default_browser_type", None)  # e.g. webkit for an iPhone: we drive Chromium
    return browser.new_context(locale=locale, timezone_id=TIME_ZONE, **profile, **options)


class Journey:
    """One person's way through radshare in one browser page; ``check`` at every page it reaches."""

    def __init__(self, page: Any, name: str, language: str) -> None:
        from axe_playwright_python.sync_playwright import Axe

        self.name, self.language = name, language
        self.axe = Axe()
        self.steps = 0
        self.problems: list[str] = []
        self.go_on(page)

    def go_on(self, page: Any) -> None:
        """Go on in ``page`` (another browser, say): the steps keep counting."""
        self.page = page
        # A refused form answers 422 (and a refused download 403 or 429), which Chromium logs as a failed load.
        page.on(
            "console",
            lambda m: (
                self.problems.append(m.text)
                if m.type == "error" and not re.search(r"status of (403|422|429)", m.text)
                else None
            ),
        )
        page.on("pageerror", lambda e: self.problems.append(str(e)))

    def t(self, message: str) -> str:
        """``message`` as the page shows it in this journey's language (the catalogue's translation)."""
        with translation.override(self.language):
            return translation.gettext(message)

    def check(self, step: str) -> None:
        """The page as it is now: in the journey's language, one ``<h1>``, no WCAG 2.1 A/AA violation that axe-core
        finds, no script or CSP error so far."""
        self.steps += 1
        self.page.wait_for_load_state()
        if os.environ.get("RADSHARE_SCREENSHOTS") == "1":
            path = (
                SCREENSHOTS / self.name / f"{self.steps:02d}-{re.sub(r'[^a-z0-9]+', '-', step.lower())}.png"
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=path, full_page=True)
        where = f"{self.name}, step {self.steps} ({step}), {self.page.url}"
        assert self.page.locator("html").get_attribute("lang") == self.language, where
        assert self.page.locator("h1").count() == 1, where
        results = self.axe.run(
            self.page, options={"runOnly": {"type": "tag", "values": WCAG}, "resultTypes": ["violations"]}
        )
        assert results.violations_count == 0, f"{where}: {results.generate_report()}"
        assert self.problems == [], where

    def text(self) -> str:
        """The main content's text, white space made single."""
        return " ".join(self.page.locator("main").inner_text().split())


def tab_to(page: Any, target: Any, *, limit: int = 80) -> None:
    """Press Tab until ``target`` (a locator) has the focus, as a keyboard user does; fails if it never gets it."""
    for _ in range(limit):
        if target.evaluate("element => element === document.activeElement"):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{target} is not reached with the Tab key")


def type_birth_date(page: Any, typed: str, *, accept: bool = True) -> None:
    """On the date step: accept the terms, type ``typed`` key by key into the (emptied) date field, continue."""
    if accept and not page.locator("#id_accept_terms").is_checked():
        page.locator("#id_accept_terms").check()
    field = page.locator("#id_birth_date")
    field.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Backspace")
    field.press_sequentially(typed)
    with page.expect_navigation():  # the refused form again, or the next step
        page.locator("main form button[type=submit]").first.click()


def type_sms_code(page: Any, code: str) -> None:
    """On the SMS step: type ``code`` key by key into the (emptied) code field, continue."""
    field = page.locator("#id_code")
    field.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Backspace")
    field.press_sequentially(code)
    with page.expect_navigation():
        page.locator("main form button[type=submit]").first.click()


def work() -> None:
    """Run what is queued and due, as ``radshare worker`` does, in this process: renders first (without the
    process pool, which a test does not need), then every task, until none is left (docs/architecture.md "How a
    share travels")."""
    from django_tasks_db.management.commands.db_worker import Worker

    from radshare.imaging import services as imaging

    imaging.render_pending_now(parallel=False)
    Worker(
        queue_names=["*"],
        interval=0,
        batch=True,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id="e2e-journey",
        excluded_queue_names=[],
    ).run()
