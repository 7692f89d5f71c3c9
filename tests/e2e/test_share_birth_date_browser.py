"""The share dialog's date of birth in a real browser with an American locale: the sender types the date twice as
day-month-year (what an ``<input type="date">`` would have read as month-day-year), and the share's page shows it
(docs/architecture.md "Dates people type")."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest

from radshare.organisations.models import Sender
from radshare.shares.models import Share
from tests.e2e.conftest import log_in
from tests.shares.helpers import NO_BIRTH, make_study


def _retype(page: Any, selector: str, typed: str) -> None:
    field = page.locator(selector)
    field.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Backspace")
    field.press_sequentially(typed)


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
def test_the_sender_types_the_missing_date_twice_and_sees_it_on_the_share(
    browser: Any, live_server: Any, sender: Sender, organisation: Any
) -> None:
    study = make_study(organisation, NO_BIRTH)
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(m.text) if m.type == "error" and "422" not in m.text else None
    )
    page.on("pageerror", lambda e: problems.append(str(e)))
    log_in(page, live_server.url, sender)
    page.goto(f"{live_server.url}/portal/shares/new?study={study.pk}")
    for name in ("birth_date", "birth_date_again"):
        assert page.locator(f"input[name={name}]").get_attribute("type") == "text"
    page.check("input[name=delivery][value=url]")
    page.locator("input[name=phone]").press_sequentially("0612345678")
    _retype(page, "input[name=birth_date]", "15-03-1968")
    _retype(page, "input[name=birth_date_again]", "15-03-1986")  # a typo
    page.click("form.share-form button[type=submit]")
    page.get_by_text("The two dates of birth differ.").first.wait_for()
    assert Share.objects.count() == 0
    _retype(page, "input[name=birth_date_again]", "15-03-1968")
    page.click("form.share-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/portal/shares/\d+/$"))
    assert Share.objects.get().confirmed_birth_date == dt.date(1968, 3, 15)
    typed = page.locator("#typed-birth-date")
    assert "15-03-1968" in typed.inner_text()
    assert "Typed by the sender" in typed.inner_text()
    assert problems == []
    context.close()
