"""Sender pages in a real browser (issue 14): a new API key's copy button, and the name on the letter, asked only
when the link goes by letter. Scripts run under the strict CSP (errors would show)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from radshare.organisations.services import create_sender
from radshare.shares.models import Share
from tests.e2e.conftest import PASSWORD, log_in
from tests.shares.helpers import ANNA, make_study


def _page(browser: Any, live_server: Any) -> tuple[Any, Any, list[str]]:
    context = browser.new_context(locale="en-GB", extra_http_headers={"Accept-Language": "en"})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return context, page, problems


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
def test_a_new_api_key_is_copied_with_its_button(browser: Any, live_server: Any, organisation: Any) -> None:
    admin = create_sender(organisation, "carol", PASSWORD, admin=True)
    context, page, problems = _page(browser, live_server)
    log_in(page, live_server.url, admin)
    page.goto(f"{live_server.url}/portal/api-keys/")
    page.locator("input[name=name]").press_sequentially("PACS button")
    page.click("main form button[type=submit]")
    key = page.input_value("#new-api-key")
    assert key.startswith("rs_")
    copy = page.locator("button[data-copy=new-api-key]")
    assert copy.is_visible()  # hidden until the script is there to make it work
    copy.click()
    expect(page.locator("#api-key-copy-status")).to_have_text(
        "Copied"
    )  # (wait_for_function needs eval: CSP says no)
    assert page.evaluate("navigator.clipboard.readText()") == key
    assert problems == []
    context.close()


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
def test_the_name_on_the_letter_is_asked_for_a_letter_only(
    browser: Any, live_server: Any, sender: Any, organisation: Any
) -> None:
    study = make_study(organisation, ANNA)
    context, page, problems = _page(browser, live_server)
    log_in(page, live_server.url, sender)
    page.goto(f"{live_server.url}/portal/studies/{study.pk}/")
    page.click("text=Share this study")
    page.wait_for_url(f"**/portal/shares/new?study={study.pk}")
    letter = page.locator("#letter-field")
    assert letter.is_hidden()
    page.check("input[name=delivery][value=letter]")
    assert letter.is_visible()
    page.locator("input[name=recipient_name]").press_sequentially("Dr. K. de Vries")
    page.locator("input[name=phone]").press_sequentially("0612345678")
    page.click("form.share-form button[type=submit]")
    page.wait_for_url("**/portal/shares/*/")
    assert Share.objects.get().recipient_name == "Dr. K. de Vries"
    assert problems == []
    context.close()
