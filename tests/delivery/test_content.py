"""The recipient's e-mail and SMS texts: what they must say, and the patient data they must never hold (A20)."""

from __future__ import annotations

import datetime as dt
import html
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from django.utils import translation

from radshare.delivery.content import RenderedEmail, expiry_text, gsm7_length, share_email, sms_code_text
from radshare.shares.codes import format_code, share_url
from radshare.shares.models import Share
from radshare.shares.services import create_share
from radshare.studies.synthetic import FakePatient
from tests.studies.factories import make_study

BIRTH = dt.date(1968, 3, 14)
ANNA = FakePatient("A1", "Jansen^Anna^Maria", BIRTH, bsn="111222123")
NO_BSN = FakePatient("B1", "Visser^Bram", dt.date(1975, 11, 2))
PHONE = "0612345678"
DESCRIPTION = "CT Thorax met contrast"


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.lang = ""
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a":
            self.hrefs.append(values.get("href") or "")
        if tag == "html":
            self.lang = values.get("lang") or ""

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(html: str) -> _Parser:
    parser = _Parser()
    parser.feed(html)
    parser.close()
    return parser


def _share(
    organisation: Any,
    patient: FakePatient = ANNA,
    *,
    recipient_type: str = "patient",
    language: str = "en",
) -> tuple[Share, str]:
    study = make_study(organisation, patient, study_date=dt.date(2026, 11, 2), description=DESCRIPTION)
    new = create_share(
        organisation,
        [study.pk],
        recipient_type=recipient_type,
        phone=PHONE,
        email="someone@example.org",
        language=language,
        consent_confirmed=recipient_type == "care_provider",
    )
    return new.share, new.code


def _all_text(mail: RenderedEmail) -> str:
    return "\n".join((mail.subject, mail.text, mail.html, html.unescape(mail.html)))


def _assert_no_patient_data(mail: RenderedEmail, patient: FakePatient) -> None:
    everything = _all_text(mail)
    lowered = everything.lower()
    for part in re.split(r"[\^ ]", patient.patient_name):
        if part:
            assert part.lower() not in lowered, part
    day = patient.birth_date
    for shown in (
        day.isoformat(),
        day.strftime("%d-%m-%Y"),
        day.strftime("%Y%m%d"),
        day.strftime("%d/%m/%Y"),
        day.strftime("%d.%m.%Y"),
        f"{day.day}-{day.month}-{day.year}",
    ):
        assert shown not in everything, shown
    assert DESCRIPTION.lower() not in lowered
    assert "thorax" not in lowered
    assert patient.patient_id not in re.findall(r"\b\w+\b", everything)
    for phone in (PHONE, "+31612345678", "612345678", "12345678"):
        assert phone not in everything, phone


@pytest.mark.django_db
@pytest.mark.parametrize("recipient_type", ["patient", "care_provider"])
def test_email_holds_the_link_the_code_the_organisation_and_its_contacts(
    organisation: Any, recipient_type: str
) -> None:
    organisation.contact_email = "beeldvragen@hospital-a.example"
    organisation.contact_url = "https://hospital-a.example/beelden"
    organisation.save()
    share, code = _share(organisation, recipient_type=recipient_type)
    mail = share_email(share, code)
    url = share_url(code)
    for body in (mail.text, html.unescape(mail.html)):
        assert url in body
        assert format_code(code) in body
        assert "Hospital A" in body
        assert "+31 20 123 4567" in body
        assert "beeldvragen@hospital-a.example" in body
        assert "https://hospital-a.example/beelden" in body
        assert expiry_text(share, "en") in body
        assert "Last 3 digits of the patient's BSN (citizen service number): 123" in body
        assert "date of birth" in body
        assert "SMS" in body
    assert "Hospital A" in mail.subject
    assert "\n" not in mail.subject
    # the plain text carries the link on a line of its own, so that it stays clickable
    assert url in mail.text.splitlines()


@pytest.mark.django_db
def test_care_provider_is_told_to_use_a_dicom_viewer(organisation: Any) -> None:
    share, code = _share(organisation, recipient_type="care_provider")
    mail = share_email(share, code)
    for body in (mail.text, html.unescape(mail.html)):
        assert "DICOM viewer" in body
        assert "consent" in body
        assert "Dear colleague," in body
    assert "patient" in mail.subject


@pytest.mark.django_db
def test_patient_text_explains_viewing_and_both_download_kinds(organisation: Any) -> None:
    share, code = _share(organisation, recipient_type="patient")
    mail = share_email(share, code)
    assert "JPEG" in mail.text
    assert "DICOM" in mail.text
    assert "browser" in mail.text
    assert "DICOM viewer" not in mail.text
    assert "Dear Sir or Madam," in mail.text


@pytest.mark.django_db
@pytest.mark.parametrize("recipient_type", ["patient", "care_provider"])
@pytest.mark.parametrize("language", ["en", "nl"])
def test_no_patient_data_anywhere(organisation: Any, recipient_type: str, language: str) -> None:
    share, code = _share(organisation, recipient_type=recipient_type, language=language)
    _assert_no_patient_data(share_email(share, code), ANNA)


@pytest.mark.django_db
def test_unknown_bsn_is_said_so(organisation: Any) -> None:
    share, code = _share(organisation, NO_BSN)
    assert share.patient is not None
    assert share.patient.bsn_last3 == ""
    mail = share_email(share, code)
    for body in (mail.text, html.unescape(mail.html)):
        assert "Last 3 digits of the patient's BSN (citizen service number): unknown" in body
    _assert_no_patient_data(mail, NO_BSN)


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["en", "nl"])
def test_html_parses_declares_its_language_and_links_exactly_to_the_share(
    organisation: Any, language: str
) -> None:
    share, code = _share(organisation, language=language)
    mail = share_email(share, code)
    parsed = _parse(mail.html)
    assert parsed.lang == language
    share_links = [href for href in parsed.hrefs if not href.startswith(("mailto:", "tel:"))]
    assert share_links
    assert all(href == share_url(code) for href in share_links)
    assert "<img" not in mail.html
    assert "src=" not in mail.html
    assert "<script" not in mail.html


@pytest.mark.django_db
def test_html_escapes_the_organisation_name(organisation: Any) -> None:
    organisation.name = "Kliniek <b>Noord</b> & Zuid"
    organisation.save()
    share, code = _share(organisation)
    mail = share_email(share, code)
    assert "<b>" not in mail.html
    assert "Kliniek &lt;b&gt;Noord&lt;/b&gt; &amp; Zuid" in mail.html
    assert "Kliniek <b>Noord</b> & Zuid" in "".join(_parse(mail.html).text)
    assert "Kliniek <b>Noord</b> & Zuid" in mail.text  # plain text is not HTML-escaped
    assert "Kliniek <b>Noord</b> & Zuid" in mail.subject


@pytest.mark.django_db
def test_dutch_email_uses_dutch_dates_and_the_dutch_language_tag(organisation: Any) -> None:
    share, code = _share(organisation, language="nl")
    mail = share_email(share, code)
    assert '<html lang="nl"' in mail.html
    with translation.override("nl"):
        month = expiry_text(share, "nl").split()[1]
    assert month.islower()  # Django's own Dutch month names ("december")
    assert expiry_text(share, "nl") in mail.text
    assert share_url(code) in mail.text


@pytest.mark.django_db
def test_expiry_is_shown_in_amsterdam_time(organisation: Any) -> None:
    share, _ = _share(organisation)
    share.expires_at = dt.datetime(2026, 12, 9, 23, 30, tzinfo=dt.UTC)  # 10 December, 00:30 in Amsterdam
    assert expiry_text(share, "en") == "10 December 2026"
    assert expiry_text(share, "nl") == "10 december 2026"


def test_sms_holds_the_code_minutes_and_organisation() -> None:
    text = sms_code_text("Hospital A", "482913", 5, "en")
    assert "482913" in text
    assert "5 minutes" in text
    assert "Hospital A" in text
    assert gsm7_length(text) <= 160


@pytest.mark.parametrize("language", ["en", "nl"])
def test_sms_fits_one_segment_with_a_long_organisation_name(language: str) -> None:
    name = "Stichting Samenwerkende Ziekenhuizen " * 6  # ~220 characters
    text = sms_code_text(name[:200], "482913", 5, language)
    assert len(text) <= 160
    assert gsm7_length(text) <= 160
    assert "482913" in text
    assert "Stichting Samenwerkende" in text
    assert "5" in text


def test_sms_stays_in_gsm7() -> None:
    text = sms_code_text("Ziekenhuis Ω Ærø \u2013 \u2019s-Hertogenbosch ë", "482913", 5, "en")
    assert "Ziekenhuis Ω Ærø - 's-Hertogenbosch e" in text
    assert gsm7_length(text) == len(text) <= 160


def test_sms_holds_nothing_but_code_minutes_and_organisation() -> None:
    text = sms_code_text("Hospital A", "482913", 5, "en")
    rest = text.replace("482913", "").replace("Hospital A", "").replace("5", "")
    assert not re.search(r"\d", rest)
    assert "http" not in rest
