"""Onward sharing in Chromium (docs/architecture.md "Onward shares"), with the keyboard: a patient on a phone passes
their share on; the provider gets the e-mail at a real SMTP server and the SMS code in the file backend, logs in with
the patient's date of birth, views and downloads; the patient ends it and the provider's next page says the link no
longer works; a second onward share ends with the original's revocation; the fourth is refused. And what must not
be: the setting off, a care provider passing on, an onward share passed on again. axe-core checks every page
(tests/e2e/journey.py); every step is in the audit trail."""

from __future__ import annotations

import email.policy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from radshare.audit.actions import Action
from radshare.audit.models import AuditEvent
from radshare.organisations.models import Organisation
from radshare.shares import codes
from radshare.shares.models import Share
from radshare.shares.services import Actor, revoke
from tests.delivery.test_outbox import SmtpServer
from tests.e2e.conftest import log_in
from tests.e2e.journey import Journey, new_context, tab_to, type_birth_date, type_sms_code, work
from tests.recipients.conftest import BIRTH, ready_share
from tests.shares.helpers import ANNA, make_study

PATIENT_NAME = "Anna de Vries"  # as the patient types it; the images say Jansen^Anna
PROVIDERS = [
    ("huisarts@praktijk.example", "0687654321"),
    ("specialist@clinic.example", "+32470123456"),
    ("third@clinic.example", "0611122233"),
]


def _sms_to(path: Path, number: str) -> list[dict[str, Any]]:
    return [m for m in (json.loads(line) for line in path.read_text().splitlines()) if m["to"] == number]


def _log_in(page: Any, link: str, sms: Path, number: str) -> None:
    """The link, the date of birth typed key by key, the newest SMS code sent to ``number``."""
    page.goto(link)
    page.wait_for_url(re.compile(r".*/r/birth-date$"))
    type_birth_date(page, BIRTH)
    page.wait_for_url(re.compile(r".*/r/sms-code$"))
    text = _sms_to(sms, number)[-1]["text"]
    type_sms_code(page, re.findall(r"\b\d{6}\b", text)[0])
    page.wait_for_url(re.compile(r".*/r/studies$"))


def _type(page: Any, selector: str, text: str) -> None:
    field = page.locator(selector)
    tab_to(page, field)
    page.keyboard.type(text, delay=5)


def _pass_on(page: Any, journey: Journey, email: str, phone: str, *, first: bool = False) -> None:
    """From the study list: the form, filled in with the keyboard; once submitted without consent first."""
    t = journey.t
    link = page.get_by_role("link", name=t("Pass on to a care provider"))
    tab_to(page, link)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/r/pass-on$"))
    if first:
        assert t("Give the care provider your date of birth.") in journey.text()
        journey.check("pass on: the form")
    _type(page, "#id_name", PATIENT_NAME)
    _type(page, "#id_email", email)
    _type(page, "#id_phone", phone)
    for box in page.locator("input[name=studies]").all():
        tab_to(page, box)
        page.keyboard.press("Space")
    _type(page, "#id_note", "For a second opinion.")
    if first:  # no consent yet: refused, with the error summary
        tab_to(page, page.get_by_role("button", name=t("Pass on")))
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert t("Confirm that you choose to share these images.") in journey.text()
        journey.check("pass on: consent missing")
        for box in page.locator("input[name=studies]").all():
            assert box.is_checked()
    tab_to(page, page.locator("#id_consent"))
    page.keyboard.press("Space")
    tab_to(page, page.get_by_role("button", name=t("Pass on")))
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/r/studies$"))


def _mail_link(smtp: SmtpServer, to: str) -> tuple[str, str]:
    for _envelope, raw in smtp.inbox.messages:
        mail = email.message_from_bytes(raw, policy=email.policy.default)
        if mail["To"] == to:
            text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
            [link] = re.findall(r"https?://\S+\?code=[\w-]+", text)
            return link, f"{mail['Subject']}\n{text}"
    raise AssertionError(f"no e-mail to {to}")


@pytest.fixture
def onward_org(organisation: Organisation) -> Organisation:
    organisation.onward_sharing = Organisation.OnwardSharing.PATIENTS
    organisation.save()
    return organisation


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("locale", "device"), [("nl-NL", "iPhone 15"), ("en-GB", "Pixel 7")])
@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume asynchronous iterators")
def test_a_patient_passes_the_share_on_ends_it_and_a_revocation_ends_the_rest(
    playwright: Any,
    browser: Any,
    live_server: Any,
    onward_org: Organisation,
    sender: Any,
    radshare_config: Any,
    smtp: SmtpServer,
    tmp_path: Path,
    locale: str,
    device: str,
) -> None:
    sms = tmp_path / "sms.jsonl"
    radshare_config(base_url=live_server.url, sms_url=f"file://{sms}")
    language = locale[:2]
    studies = [make_study(onward_org, ANNA), make_study(onward_org, ANNA, kind="cr")]
    share, code = ready_share(
        onward_org, studies, delivery="url", email="", language=language, created_by=sender
    )

    # The patient, on a phone.
    patient = new_context(playwright, browser, device, locale).new_page()
    journey = Journey(patient, f"onward-patient-{language}", language)
    t = journey.t
    _log_in(patient, codes.share_url(code), sms, share.phone)
    journey.check("patient: studies")
    (email_1, phone_1), (email_2, phone_2), (email_3, phone_3) = PROVIDERS
    _pass_on(patient, journey, email_1, phone_1, first=True)
    journey.check("patient: passed on")
    onward = Share.objects.get(parent=share)
    assert onward.expires_at <= share.expires_at
    assert "d***@" not in journey.text()
    assert "h***@praktijk.example" in journey.text()

    # The provider, on a computer: the e-mail at the SMTP server names the patient as typed and the organisation.
    work()
    link, mail = _mail_link(smtp, email_1)
    assert PATIENT_NAME in mail
    assert onward_org.name in mail
    assert "Jansen" not in mail
    provider_context = new_context(playwright, browser, "desktop", locale, accept_downloads=True)
    provider = provider_context.new_page()
    seen = Journey(provider, f"onward-provider-{language}", language)
    _log_in(provider, link, sms, "+31687654321")
    assert "Jansen" not in _sms_to(sms, "+31687654321")[-1]["text"]
    assert PATIENT_NAME in seen.text()
    assert "For a second opinion." in seen.text()
    assert provider.get_by_role("link", name=t("Pass on to a care provider")).count() == 0
    seen.check("provider: studies")
    assert provider_context.request.get(f"{live_server.url}/r/pass-on").status == 404  # not passed on again
    provider.get_by_role("link", name=t("View")).first.click()
    provider.wait_for_url(re.compile(r".*/r/studies/\d+/$"))
    seen.check("provider: viewer")
    provider.goto(f"{live_server.url}/r/download")
    with provider.expect_download() as download:
        provider.get_by_role("link", name=t("Download DICOM (ZIP)")).click()
    saved = tmp_path / "onward.zip"
    download.value.save_as(saved)
    assert saved.stat().st_size > 1000
    assert AuditEvent.objects.filter(action=Action.RECIPIENT_DOWNLOAD_START, detail__share=onward.pk).exists()

    # The patient ends it: confirmation, then at once; the provider's next page says it no longer works.
    patient.reload()
    end = patient.get_by_role("link", name=t("End now…"))
    tab_to(patient, end)
    patient.keyboard.press("Enter")
    patient.wait_for_url(re.compile(rf".*/r/pass-on/{onward.pk}/end$"))
    journey.check("patient: end, confirmation")
    tab_to(patient, patient.get_by_role("button", name=t("End the link now")))
    with patient.expect_navigation():
        patient.keyboard.press("Enter")
    journey.check("patient: ended")
    provider.goto(f"{live_server.url}/r/studies")
    provider.wait_for_url(re.compile(r".*/r/ended$"))
    seen.check("provider: no longer works")

    # A second onward share, opened by its provider, ends when the sender revokes the original.
    _pass_on(patient, journey, email_2, phone_2)
    second = Share.objects.filter(parent=share).latest("pk")
    work()
    link_2, _mail = _mail_link(smtp, email_2)
    other = new_context(playwright, browser, "desktop", locale).new_page()
    second_seen = Journey(other, f"onward-provider-2-{language}", language)
    _log_in(other, link_2, sms, "+32470123456")
    second_seen.check("second provider: studies")
    # The third is the last: the action is gone and the server refuses a fourth.
    _pass_on(patient, journey, email_3, phone_3)
    assert t("You cannot pass these images on again.") in journey.text()
    assert patient.get_by_role("link", name=t("Pass on to a care provider")).count() == 0
    journey.check("patient: limit reached")
    token = next(c["value"] for c in patient.context.cookies() if "csrftoken" in c["name"])
    refused = patient.context.request.post(
        f"{live_server.url}/r/pass-on",
        form={"name": PATIENT_NAME, "email": "x@example.org", "phone": "0612345678", "consent": "on"},
        headers={"X-CSRFToken": token, "Origin": live_server.url},
    )
    assert refused.status == 403
    assert Share.objects.filter(parent=share).count() == 3

    revoke(share, Actor(user=sender))
    other.goto(f"{live_server.url}/r/studies")
    other.wait_for_url(re.compile(r".*/r/ended$"))
    second_seen.check("second provider: no longer works after the revocation")
    assert {s.status for s in Share.objects.filter(parent=share)} == {Share.Status.REVOKED}

    # Every step is in the trail, and the sender's page lists the onward shares.
    def actions(pk: int) -> set[str]:
        return set(AuditEvent.objects.filter(detail__share=pk).values_list("action", flat=True))

    assert {Action.SHARE_ONWARD_CREATE, Action.SHARE_ONWARD_END, Action.RECIPIENT_LOGIN} <= actions(onward.pk)
    assert Action.RECIPIENT_DOWNLOAD_START in actions(onward.pk)
    assert {Action.SHARE_ONWARD_CREATE, Action.SHARE_ONWARD_REVOKED, Action.RECIPIENT_LOGIN} <= actions(
        second.pk
    )
    assert Action.SHARE_ONWARD_REFUSED in actions(share.pk)
    assert Action.SHARE_REVOKE in actions(share.pk)
    assert (
        AuditEvent.objects.filter(action=Action.SHARE_ONWARD_CREATE, detail__original=share.pk).count() == 3
    )
    portal = new_context(playwright, browser, "desktop", locale).new_page()
    portal_journey = Journey(portal, f"onward-sender-{language}", language)
    log_in(portal, live_server.url, sender)
    portal.goto(f"{live_server.url}/portal/shares/{share.pk}/")
    assert portal.locator("#onward tbody tr").count() == 3
    assert "share.onward.create" in portal_journey.text()
    assert "share.onward.revoked" in portal_journey.text()
    portal_journey.check("sender: the original's page")


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
def test_no_pass_on_with_the_setting_off_or_for_a_care_provider(
    playwright: Any,
    browser: Any,
    live_server: Any,
    organisation: Organisation,
    radshare_config: Any,
    tmp_path: Path,
) -> None:
    sms = tmp_path / "sms.jsonl"
    radshare_config(base_url=live_server.url, sms_url=f"file://{sms}")
    studies = [make_study(organisation, ANNA)]
    patients, code = ready_share(organisation, studies, delivery="url", email="")
    page = new_context(playwright, browser, "Pixel 7", "en-GB").new_page()
    journey = Journey(page, "onward-off", "en")
    _log_in(page, codes.share_url(code), sms, patients.phone)
    assert page.get_by_role("link", name="Pass on to a care provider").count() == 0
    journey.check("setting off: no action")
    token = next(c["value"] for c in page.context.cookies() if "csrftoken" in c["name"])
    form = {"name": "A", "email": "x@example.org", "phone": "0612345678", "consent": "on"}
    headers = {"X-CSRFToken": token, "Origin": live_server.url}
    assert page.context.request.get(f"{live_server.url}/r/pass-on").status == 404
    assert page.context.request.post(f"{live_server.url}/r/pass-on", form=form, headers=headers).status == 404

    # Allowed for patients, but this recipient is a care provider.
    organisation.onward_sharing = Organisation.OnwardSharing.PATIENTS
    organisation.save()
    provider_share, provider_code = ready_share(
        organisation,
        studies,
        delivery="url",
        email="",
        recipient_type="care_provider",
        consent_confirmed=True,
    )
    provider = new_context(playwright, browser, "desktop", "en-GB").new_page()
    seen = Journey(provider, "onward-care-provider", "en")
    _log_in(provider, codes.share_url(provider_code), sms, provider_share.phone)
    assert provider.get_by_role("link", name="Pass on to a care provider").count() == 0
    seen.check("care provider: no action")
    token = next(c["value"] for c in provider.context.cookies() if "csrftoken" in c["name"])
    headers = {"X-CSRFToken": token, "Origin": live_server.url}
    assert (
        provider.context.request.post(f"{live_server.url}/r/pass-on", form=form, headers=headers).status
        == 404
    )
    assert not Share.objects.filter(parent__isnull=False).exists()
    assert AuditEvent.objects.filter(action=Action.SHARE_ONWARD_REFUSED).count() == 2
