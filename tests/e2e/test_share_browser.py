"""The share dialog in a real browser: the one-patient check on the selection, the fields that follow the
choices, and the link with its copy button. The script runs under the strict CSP (errors would show)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from radshare.organisations.models import Sender
from radshare.shares import codes
from radshare.shares.models import Share
from tests.e2e.conftest import log_in
from tests.shares.helpers import ANNA, PIET, make_study


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
def test_select_share_and_copy_the_link(
    browser: Any, live_server: Any, sender: Sender, organisation: Any
) -> None:
    anna, piet = make_study(organisation, ANNA), make_study(organisation, PIET)
    context = browser.new_context(locale="en-GB", extra_http_headers={"Accept-Language": "en"})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    log_in(page, live_server.url, sender)

    share_button = page.locator("#share-select button[type=submit]")
    status = page.locator("#selection-status")
    assert share_button.is_disabled()  # nothing selected yet
    page.check(f"#select-{anna.pk}")
    assert share_button.is_enabled()
    assert status.inner_text() == "Selected: 1"
    page.check(f"#select-{piet.pk}")
    assert share_button.is_disabled()
    assert "more than one patient" in status.inner_text()
    page.uncheck(f"#select-{piet.pk}")
    share_button.click()
    page.wait_for_url(f"**/portal/shares/new?study={anna.pk}")

    consent, email = page.locator("#consent"), page.locator("#email-field")
    assert consent.is_hidden()
    assert email.is_visible()
    page.check("input[name=recipient_type][value=care_provider]")
    assert consent.is_visible()
    page.check("input[name=delivery][value=url]")
    assert email.is_hidden()
    page.fill("input[name=phone]", "0612345678")
    page.check("input[name=consent_confirmed]")
    page.click("form.share-form button[type=submit]")
    page.wait_for_url("**/portal/shares/*/")

    share = Share.objects.get()
    assert (share.recipient_type, share.delivery, share.phone) == ("care_provider", "url", "+31612345678")
    link = page.input_value("#share-link")
    code = codes.normalize_code(link.split("?code=")[1])
    assert code is not None
    assert codes.code_hash(code) == share.code_hash
    assert page.locator("svg.qr").is_visible()
    page.click("button[data-copy=share-link]")
    expect(page.locator("#copy-status")).to_have_text("Copied")  # (wait_for_function needs eval: CSP says no)
    assert page.evaluate("navigator.clipboard.readText()") == link
    assert problems == []
    context.close()
