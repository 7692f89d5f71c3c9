"""A patient's journey on a phone, with the keyboard only (issue 14b), once in Dutch on an iPhone and once in English
on an Android phone: the link from the e-mail that arrived at a real SMTP server, the terms, the date of birth typed
key by key as the hint shows it, the code from the SMS, the study, another series, the report; no download on a
phone. axe-core checks every page (tests/e2e/journey.py)."""

from __future__ import annotations

import email.policy
import re
from pathlib import Path
from typing import Any

import pytest
from django.utils import translation

from radshare.core import dates
from radshare.shares.services import create_share
from radshare.studies.models import Study
from radshare.studies.services import store_instance
from radshare.studies.synthetic import ct_series, encode
from tests.delivery.test_outbox import SmtpServer
from tests.e2e.journey import Journey, new_context, tab_to, work
from tests.imaging.test_reports import sr_dataset
from tests.recipients.conftest import sms_codes
from tests.shares.helpers import ANNA

FINDING = "No abnormalities in the lungs."


def two_series_and_a_report(organisation: Any) -> Study:
    """A CT study of ANNA with two series (3 and 2 images) and a structured report."""
    axial = ct_series(ANNA, count=3, size=32)
    study_uid = axial[0].StudyInstanceUID
    coronal = ct_series(ANNA, count=2, size=32, study_uid=study_uid)
    for ds in coronal:
        ds.SeriesNumber, ds.SeriesDescription = 3, "Coronal"
    report = sr_dataset(ANNA, study_uid, finding=FINDING, conclusion="Normal findings.")
    for ds in [*axial, *coronal, report]:
        store_instance(organisation, encode(ds), source="upload")
    return Study.objects.get(organisation=organisation, study_instance_uid=study_uid)


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("locale", "device"), [("nl-NL", "iPhone 15"), ("en-US", "Pixel 7")])
def test_a_patient_opens_the_emailed_link_on_a_phone_with_the_keyboard_only(
    playwright: Any,
    browser: Any,
    live_server: Any,
    organisation: Any,
    radshare_config: Any,
    smtp: SmtpServer,
    tmp_path: Path,
    locale: str,
    device: str,
) -> None:
    sms = tmp_path / "sms.jsonl"
    radshare_config(base_url=live_server.url, sms_url=f"file://{sms}")
    language = locale[:2]
    study = two_series_and_a_report(organisation)
    create_share(
        organisation,
        [study.pk],
        recipient_type="patient",
        delivery="email",
        email="anna@example.org",
        phone="0612345678",
        language=language,
    )
    work()  # renders, preparation, the e-mail
    [(_, raw)] = smtp.inbox.messages
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    [link] = re.findall(r"https?://\S+\?code=[\w-]+", mail.get_body(("plain",)).get_content())  # type: ignore[union-attr]

    context = new_context(playwright, browser, device, locale)
    page = context.new_page()
    journey = Journey(page, f"patient-{language}-{device.replace(' ', '-').lower()}", language)
    t = journey.t
    keyboard = page.keyboard

    page.goto(link)
    page.wait_for_url(re.compile(r".*/r/birth-date$"))
    journey.check("terms and date of birth")
    tab_to(page, page.locator("#id_accept_terms"))
    keyboard.press("Space")
    assert page.locator("#id_accept_terms").is_checked()
    field = page.locator("#id_birth_date")
    assert field.get_attribute("type") == "text"  # never a date picker in the browser's own order
    hint = page.locator("#id_birth_date_helptext").inner_text()
    with translation.override(language):
        assert hint == str(dates.HINT)  # "… (dd-mm-yyyy) …"; in Dutch "dd-mm-jjjj" once the catalogue has it
    example = re.search(r"\d\d-\d\d-\d{4}", hint)
    assert example is not None
    tab_to(page, field)
    typed = ANNA.birth_date.strftime("%d-%m-%Y")  # as the hint's example is written
    assert len(typed) == len(example.group(0))
    keyboard.type(typed, delay=20)  # key by key
    keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/r/sms-code$"))
    journey.check("SMS code")

    code_field = page.locator("#id_code")
    tab_to(page, code_field)
    keyboard.type(sms_codes(sms)[-1], delay=20)
    keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/r/studies$"))
    journey.check("studies")
    downloads = page.locator("a[href*='/download']")
    assert downloads.count() == 0  # no download action on a phone (docs/requirements.md S4.8)
    assert t(
        "You can view the images on this phone or tablet. To download them, open the link on a computer."
    ) in (journey.text())

    tab_to(page, page.get_by_role("link", name=t("View")))
    keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/r/studies/\d+/$"))
    position = page.locator("#viewer-position")
    assert position.inner_text() == "1 / 3"
    assert downloads.count() == 0
    journey.check("viewer, first series")

    second = page.locator(".series-button").nth(1)
    tab_to(page, second)
    keyboard.press("Enter")
    from playwright.sync_api import expect

    expect(second).to_have_attribute("aria-pressed", "true")
    expect(position).to_have_text("1 / 2")
    keyboard.press("End")  # the keys move through the series that is shown
    journey.check("viewer, second series")

    report = page.locator(".viewer-reports")
    report.scroll_into_view_if_needed()
    assert FINDING in report.inner_text()
    journey.check("report")

    tab_to(page, page.get_by_role("button", name=t("Log out")))
    keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/")
    journey.check("logged out")
    context.close()
