"""The letter names its addressee, its share and the patient's initials, so that a desk printing several letters
cannot mix them up; and it says that downloading needs a computer (issue 14)."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from pypdf import PdfReader

from radshare.delivery.letter import letter_pdf
from radshare.shares.models import Share
from radshare.shares.services import current_code
from tests.shares.helpers import ANNA, PIET, make_share, make_study


def letter_text(share: Share) -> str:
    pdf = letter_pdf(share, current_code(share))
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    return re.sub(r"\s+", " ", text)


def _letter_share(organisation: Any, patient: Any = ANNA, **kwargs: Any) -> Share:
    study = make_study(organisation, patient)
    return make_share(organisation, [study], delivery="letter", email="", language="en", **kwargs).share


@pytest.mark.django_db
def test_the_letter_names_its_addressee_reference_and_the_patients_initials(organisation: Any) -> None:
    share = _letter_share(organisation, recipient_name="Huisartsenpraktijk De Linde, dr. K. de Vries")
    text = letter_text(share)
    assert "Huisartsenpraktijk De Linde, dr. K. de Vries" in text
    assert f"Reference: share {share.pk}" in text
    assert "Patient's initials: A.J." in text
    # Still nothing more of the patient than the initials (docs/security.md A20).
    for part in ("Jansen", "Anna", "14-03-1968", "1968"):
        assert part not in text


@pytest.mark.django_db
def test_letters_of_two_patients_differ_at_the_top_and_a_letter_without_a_name_still_has_its_reference(
    organisation: Any,
) -> None:
    anna, piet = _letter_share(organisation), _letter_share(organisation, PIET)
    anna_text, piet_text = letter_text(anna), letter_text(piet)
    assert f"Reference: share {anna.pk}" in anna_text
    assert "Patient's initials: A.J." in anna_text
    assert f"Reference: share {piet.pk}" in piet_text
    assert "Patient's initials: P.B." in piet_text


@pytest.mark.django_db
def test_the_letter_says_that_downloading_needs_a_computer(organisation: Any) -> None:
    text = letter_text(_letter_share(organisation))
    assert "To download the images you need a computer" in text


@pytest.mark.django_db
def test_a_dutch_letter_carries_the_same_reference(organisation: Any) -> None:
    study = make_study(organisation, ANNA)
    share = make_share(organisation, [study], delivery="letter", email="", language="nl").share
    text = letter_text(share)
    assert "Jansen" not in text
    assert str(share.pk) in text


@pytest.mark.parametrize(
    ("name", "initials"),
    [
        ("Jansen^Anna^Maria", "A.M.J."),
        ("van der Berg^Jan", "J.v.d.B."),
        ("Bakker^Piet-Hein", "P.H.B."),
        ("Jansen", "J."),
        ("^Anna", "A."),
        ("", ""),
        ("Yamada^Tarou=山田^太郎", "T.Y."),
    ],
)
def test_initials_of_a_person_name(name: str, initials: str) -> None:
    from radshare.studies.templatetags.dicom import person_initials

    assert person_initials(name) == initials
