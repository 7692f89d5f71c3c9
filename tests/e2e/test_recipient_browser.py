"""The recipient's way in, in a real browser on a phone-sized screen: every field found by its visible label
(its accessible name), one heading per step, the code gone from the address bar, no script or CSP errors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from radshare.shares import codes
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
    page.get_by_label("Date of birth of the patient").fill("1968-03-14")  # the date picker's value
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
