"""The recipient's way in, in a real browser on a phone-sized screen: every field found by its visible label
(its accessible name), one heading per step, the code gone from the address bar, no script or CSP errors."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest

from radshare.shares import codes
from radshare.shares.models import Share
from radshare.studies.synthetic import FakePatient
from tests.recipients.conftest import ready_share
from tests.shares.helpers import ANNA, make_study

PHONE = {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True}


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
def test_a_patient_on_a_phone_opens_the_link(
    browser: Any, live_server: Any, organisation: Any, radshare_config: Any, tmp_path: Path
) -> None:
    sms = tmp_path / "sms.jsonl"
    radshare_config(sms_url=f"file://{sms}", base_url=live_server.url)
    _share, code = ready_share(organisation, [make_study(organisation, ANNA)], delivery="url", email="")
    context = browser.new_context(locale="en-GB", extra_http_headers={"Accept-Language": "en"}, **PHONE)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    page.goto(codes.share_url(code))
    assert "code=" not in page.url
    assert page.locator("h1").count() == 1
    assert "terms of use and date of birth" in page.locator("h1").inner_text()
    page.get_by_label("I accept the terms of use").check()
    page.get_by_label("Date of birth of the patient").press_sequentially("14-03-1968")  # as the hint says
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(r".*/r/sms-code$"))
    assert "the code from the SMS" in page.locator("h1").inner_text()
    sent = re.findall(r"\b\d{6}\b", json.loads(sms.read_text().splitlines()[-1])["text"])[0]
    page.get_by_label("Code from the SMS").fill(sent)
    page.get_by_role("button", name="Open the images").click()
    page.wait_for_url(re.compile(r".*/r/studies$"))
    assert "Images from Hospital A" in page.locator("h1").inner_text()
    assert page.get_by_role("link", name="View").count() == 1
    # Nothing wider than the phone's screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r".*/$"))
    assert problems == []
    context.close()


EVA = FakePatient("S9", "Visser^Eva", dt.date(1968, 3, 15))  # a day above 12: read as a month it is no date


def _type_date(page: Any, typed: str) -> None:
    """Empty the date field and type ``typed`` key by key, as a person does; then continue."""
    field = page.locator("#id_birth_date")
    field.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Backspace")
    field.press_sequentially(typed)
    page.locator("main form button[type=submit]").click()


def _failures(share: Share) -> int:
    share.refresh_from_db()
    return share.birth_date_failures


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("locale", ["en-US", "nl-NL"])
def test_the_date_typed_as_day_month_year_opens_whatever_the_browsers_locale(
    browser: Any, live_server: Any, organisation: Any, radshare_config: Any, tmp_path: Path, locale: str
) -> None:
    """An English Chromium shows ``<input type="date">`` as mm/dd/yyyy: 15-03-1968 typed as the hint said became
    another date and cost a try. The field is text now, read as day-month-year (docs/architecture.md "Dates
    people type"); a date that cannot be read for sure says what to fix and costs no try."""
    radshare_config(sms_url=f"file://{tmp_path / 'sms.jsonl'}", base_url=live_server.url)
    language = locale[:2]  # the share's language, which its pages follow, matches the browser's
    study = make_study(organisation, EVA)
    share, code = ready_share(organisation, [study], delivery="url", email="", language=language)
    context = browser.new_context(locale=locale, **PHONE)
    page = context.new_page()
    problems: list[str] = []
    # A refused form answers 422, which Chromium logs as a failed load; anything else is a problem.
    page.on(
        "console", lambda m: problems.append(m.text) if m.type == "error" and "422" not in m.text else None
    )
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(codes.share_url(code))
    assert page.locator("#id_birth_date").get_attribute("type") == "text"
    assert page.locator("#id_birth_date").get_attribute("inputmode") == "numeric"
    page.locator("input[name=accept_terms]").check()
    form = page.locator("main form")
    if locale == "en-US":
        assert "dd-mm-yyyy" in form.inner_text()
        _type_date(page, "01-01-1970")
        assert "You can try 4 more times." in form.inner_text()
        assert _failures(share) == 1
    _type_date(page, "31-02-1968")  # no such date
    # The message says what to fix (in the page's language), and nothing about tries.
    no_such_date = {"en-US": "This date does not exist.", "nl-NL": "Deze datum bestaat niet."}[locale]
    assert page.get_by_text(no_such_date).first.is_visible()
    assert "more time" not in form.inner_text()
    assert _failures(share) == (1 if locale == "en-US" else 0)  # the tries left are as they were
    _type_date(page, "15-03-1968")
    page.wait_for_url(re.compile(r".*/r/sms-code$"))
    assert _failures(share) == 0
    assert problems == []
    context.close()
