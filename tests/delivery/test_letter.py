"""The letter PDF: link, code and QR code that scans to exactly the link; no patient data, not even BSN digits."""

from __future__ import annotations

import datetime as dt
import io
import re
from typing import Any

import pypdfium2 as pdfium
import pytest
import zxingcpp
from pypdf import PdfReader

from radshare.delivery.content import expiry_text
from radshare.delivery.letter import letter_pdf, pdf_text
from radshare.shares import codes
from radshare.shares.codes import format_code, share_url
from radshare.shares.models import Share
from radshare.shares.services import create_share
from radshare.studies.synthetic import FakePatient
from tests.studies.factories import make_study

BSN_LAST3 = "719"
ANNA = FakePatient("A1", "Jansen^Anna^Maria", dt.date(1968, 3, 14), bsn=f"111222{BSN_LAST3}")
DESCRIPTION = "CT Thorax met contrast"


def _code_without(digits: str) -> str:
    """A code whose link cannot hold ``digits`` by chance, so finding them would mean a leak."""
    while True:
        code = codes.generate_code()
        if digits not in share_url(code):
            return code


def _share(organisation: Any, *, recipient_type: str = "patient", language: str = "en") -> tuple[Share, str]:
    study = make_study(organisation, ANNA, study_date=dt.date(2026, 11, 2), description=DESCRIPTION)
    share = create_share(
        organisation,
        [study.pk],
        recipient_type=recipient_type,
        phone="0612345678",
        delivery="letter",
        language=language,
        consent_confirmed=recipient_type == "care_provider",
    ).share
    assert share.patient is not None
    assert share.patient.bsn_last3 == BSN_LAST3
    return share, _code_without(BSN_LAST3)


def _text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def _qr_codes(pdf: bytes) -> list[str]:
    image = pdfium.PdfDocument(pdf)[0].render(scale=2).to_pil()
    return [b.text for b in zxingcpp.read_barcodes(image) if b.format == zxingcpp.BarcodeFormat.QRCode]


@pytest.mark.django_db
@pytest.mark.parametrize("recipient_type", ["patient", "care_provider"])
@pytest.mark.parametrize("language", ["en", "nl"])
def test_letter_holds_link_code_organisation_and_a_qr_code_of_the_link(
    organisation: Any, recipient_type: str, language: str
) -> None:
    share, code = _share(organisation, recipient_type=recipient_type, language=language)
    pdf = letter_pdf(share, code)
    reader = PdfReader(io.BytesIO(pdf))
    assert 1 <= len(reader.pages) <= 2
    width, height = (float(v) for v in reader.pages[0].mediabox[2:])
    assert (round(width), round(height)) == (595, 842)  # A4 in points
    text = _text(pdf)
    assert share_url(code) in text
    assert format_code(code) in text
    assert "Hospital A" in text
    assert "+31 20 123 4567" in text
    assert expiry_text(share, language) in text
    assert _qr_codes(pdf) == [share_url(code)]


@pytest.mark.django_db
@pytest.mark.parametrize("recipient_type", ["patient", "care_provider"])
def test_letter_holds_no_patient_data_and_no_bsn_digits(organisation: Any, recipient_type: str) -> None:
    share, code = _share(organisation, recipient_type=recipient_type)
    pdf = letter_pdf(share, code)
    text = _text(pdf)
    assert BSN_LAST3 not in text
    assert "BSN" not in text
    for part in ("Jansen", "Anna", "Maria"):
        assert part not in text
    for birth in ("1968-03-14", "14-03-1968", "19680314", "14 March 1968"):
        assert birth not in text
    assert "Thorax" not in text
    assert "612345678" not in text
    # nor in the document's metadata
    raw = pdf.decode("latin-1")
    assert "Jansen" not in raw
    assert BSN_LAST3 not in re.sub(r"\s", "", text)


@pytest.mark.django_db
def test_patient_and_care_provider_letters_differ(organisation: Any) -> None:
    patient_share, code = _share(organisation, recipient_type="patient")
    provider_share, _ = _share(organisation, recipient_type="care_provider")
    patient_text = _text(letter_pdf(patient_share, code))
    provider_text = _text(letter_pdf(provider_share, code))
    assert "JPEG" in patient_text
    assert "DICOM viewer" in provider_text
    assert "consent" in provider_text
    assert "DICOM viewer" not in patient_text


@pytest.mark.django_db
def test_letter_is_the_same_for_the_same_share_and_code(organisation: Any) -> None:
    share, code = _share(organisation)
    assert letter_pdf(share, code) == letter_pdf(share, code)


@pytest.mark.django_db
def test_organisation_names_beyond_latin1_do_not_break_the_letter(organisation: Any) -> None:
    organisation.name = "Ziekenhuis Ω Ærø \u2013 's-Hertogenbosch 東京 <&>"
    organisation.contact_url = "https://example.org/vragen?a=1&b=2"
    organisation.save()
    share, code = _share(organisation)
    pdf = letter_pdf(share, code)
    text = _text(pdf)
    assert "Ziekenhuis ? Ærø \u2013 's-Hertogenbosch ?? <&>" in text
    assert "https://example.org/vragen?a=1&b=2" in text
    assert _qr_codes(pdf) == [share_url(code)]


@pytest.mark.django_db
def test_a_long_base_url_still_scans(organisation: Any, radshare_config: Any) -> None:
    radshare_config(base_url="https://beelden-delen.ziekenhuis-met-een-lange-naam.example.nl")
    share, code = _share(organisation)
    pdf = letter_pdf(share, code)
    assert _qr_codes(pdf) == [share_url(code)]
    assert format_code(code) in _text(pdf)


def test_pdf_text_keeps_windows_1252_and_simplifies_the_rest() -> None:
    assert pdf_text("Ærø \u2013 \u2018s-Hertogenbosch ë €") == "Ærø \u2013 \u2018s-Hertogenbosch ë €"
    assert pdf_text("Łódź") == "?ódz"
    assert pdf_text("Ω 東") == "? ?"
