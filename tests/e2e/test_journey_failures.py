"""Every page a recipient reaches when something is wrong (issue 14d), in Dutch on a phone and in English on a
desktop: a wrong date of birth, a date that cannot be read, a wrong SMS code, an expired one, a locked link, a share
not ready yet, a revoked link, and a share that ends during the session. Each says what happened and offers the next
step, and that step works. After a refused form the focus is on the error summary (docs/architecture.md "Forms and
their errors"). axe-core checks every page (tests/e2e/journey.py)."""

from __future__ import annotations

import datetime as dt
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone, translation
from django.utils.formats import date_format

from radshare.recipients.access import BIRTH_DATE_TRIES, SMS_CODE_TRIES
from radshare.recipients.models import OneTimeCode
from radshare.shares import codes
from radshare.shares.services import SYSTEM, revoke
from tests.e2e.journey import Journey, new_context, type_birth_date, type_sms_code, work
from tests.recipients.conftest import BIRTH, ready_share, sms_codes
from tests.shares.helpers import ANNA, make_share, make_study

WRONG = dt.date(1970, 1, 1)


def _summary_has_focus(journey: Journey, message: str) -> None:
    """A refused form: the summary has the focus, names the problem and links to the field to fix."""
    from playwright.sync_api import expect

    summary = journey.page.locator("#error-summary")
    expect(summary).to_be_focused()
    assert message in " ".join(summary.inner_text().split())
    assert summary.get_by_role("heading").inner_text() == journey.t("There is a problem")


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("language", "device"), [("nl", "iPhone 15"), ("en", "desktop")])
def test_each_failure_page_says_what_happened_and_what_to_do_next(
    playwright: Any,
    browser: Any,
    live_server: Any,
    organisation: Any,
    radshare_config: Any,
    tmp_path: Path,
    language: str,
    device: str,
) -> None:
    from playwright.sync_api import expect

    sms = tmp_path / "sms.jsonl"
    radshare_config(base_url=live_server.url, sms_url=f"file://{sms}")
    locale = {"nl": "nl-NL", "en": "en-GB"}[language]
    study = make_study(organisation, ANNA)
    share, code = ready_share(organisation, [study], delivery="url", email="", language=language)

    def nt(singular: str, plural: str, n: int, **params: Any) -> str:
        with translation.override(language):
            return translation.ngettext(singular, plural, n) % {"n": n, **params}

    def when(date: dt.date) -> str:
        with translation.override(language):
            return date_format(date, "j F Y")

    context = new_context(playwright, browser, device, locale)
    page = context.new_page()
    journey = Journey(page, f"failures-{language}", language)
    t = journey.t
    page.goto(codes.share_url(code))
    journey.check("date step")

    # A date that cannot be read for sure: what to fix, and no try is spent.
    type_birth_date(page, "14-03-68")
    _summary_has_focus(
        journey, t("Type the year in full, with four digits: for example 14-03-1968, not 14-03-68.")
    )
    journey.check("date that cannot be read")
    # A wrong date: the date as it was read, and the tries left; the summary's link leads back to the field.
    type_birth_date(page, WRONG.strftime("%d-%m-%Y"))
    left = BIRTH_DATE_TRIES - 1
    _summary_has_focus(
        journey,
        nt(
            "This date of birth (%(date)s) does not match. You can try %(n)s more time.",
            "This date of birth (%(date)s) does not match. You can try %(n)s more times.",
            left,
            date=when(WRONG),
        ),
    )
    journey.check("wrong date")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.locator("#id_birth_date")).to_be_focused()
    type_birth_date(page, BIRTH)
    page.wait_for_url(re.compile(r".*/r/sms-code$"))

    # A wrong SMS code: the tries left, and a new code on offer.
    sent = sms_codes(sms)[-1]
    type_sms_code(page, "000000" if sent != "000000" else "111111")
    _summary_has_focus(
        journey,
        nt(
            "This code is not right. Check the SMS and try again: you can try this code %(n)s more time.",
            "This code is not right. Check the SMS and try again: you can try this code %(n)s more times.",
            SMS_CODE_TRIES - 1,
        ),
    )
    assert page.get_by_role("button", name=t("Send a new code")).is_visible()
    journey.check("wrong SMS code")

    # An expired code: say so, and ask for a new one, which works.
    OneTimeCode.objects.filter(share=share).update(expires_at=timezone.now() - timedelta(seconds=1))
    type_sms_code(page, sent)
    _summary_has_focus(
        journey, t("This code has expired (a code works 5 minutes). Ask for a new code below.")
    )
    journey.check("expired SMS code")
    page.get_by_role("button", name=t("Send a new code")).click()
    page.wait_for_url(re.compile(r".*/r/sms-code$"))
    assert t("A new code is on its way. It can take a minute to arrive.") in journey.text()
    journey.check("new SMS code sent")
    assert len(sms_codes(sms)) == 2
    type_sms_code(page, sms_codes(sms)[-1])
    page.wait_for_url(re.compile(r".*/r/studies$"))

    # The share ends while the recipient looks: say so without telling why, and whom to ask for a new one.
    revoke(share, SYSTEM)
    page.get_by_role("link", name=t("View")).first.click()
    page.wait_for_url(re.compile(r".*/r/ended$"))
    assert page.locator("h1").inner_text() == t("This link no longer works")
    assert t("Ask %(name)s for a new link") % {"name": organisation.name} in journey.text()
    assert page.locator("main a[href^='tel:']").count() == 1
    journey.check("ended during a session")

    # The revoked link opened again later: the neutral page, with what to do.
    again = new_context(playwright, browser, device, locale)
    page = again.new_page()
    journey.go_on(page)
    page.goto(codes.share_url(code))
    page.wait_for_url(re.compile(r".*/r/invalid$"))
    assert page.locator("h1").inner_text() == t("This link is not valid (anymore)")
    assert t("What you can do") in journey.text()
    page.get_by_role("link", name=t("Type a code")).click()
    page.wait_for_url(f"{live_server.url}/")
    journey.check("revoked link, then the start page")

    # Locked after too many wrong dates: why, and what to do (wait, or contact the organisation).
    _locked, locked_code = ready_share(organisation, [study], delivery="url", email="", language=language)
    page.goto(codes.share_url(locked_code))
    for _ in range(BIRTH_DATE_TRIES):
        type_birth_date(page, WRONG.strftime("%d-%m-%Y"))
    page.wait_for_url(re.compile(r".*/r/locked$"))
    assert page.locator("h1").inner_text() == t("This link is locked for now")
    assert t(
        "There were too many wrong tries to open it, so we locked it to protect the patient's images."
    ) in (journey.text())
    assert page.locator("a[href^='tel:']").count() >= 1  # the organisation to contact
    journey.check("locked")
    again.close()

    # Not ready yet: say so, and look again later; once ready, the same button goes on to the date step.
    preparing = make_share(
        organisation, [make_study(organisation, ANNA, kind="cr")], delivery="url", email="", language=language
    )
    fresh = new_context(playwright, browser, device, locale)
    page = fresh.new_page()
    journey.go_on(page)
    page.goto(codes.share_url(preparing.code))
    page.wait_for_url(re.compile(r".*/r/preparing$"))
    assert page.locator("h1").inner_text() == t("The images are being prepared")
    journey.check("not ready")
    work()
    page.get_by_role("link", name=t("Check again")).click()
    page.wait_for_url(re.compile(r".*/r/birth-date$"))
    journey.check("ready after all")
    fresh.close()
    context.close()
