"""A date of birth the sender types in the share dialog (the images hold none): the same text field as the
recipient's, typed twice, and shown on the share's page so that a typo can be found when a recipient is locked out
(docs/architecture.md "Dates people type")."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.utils import translation

from radshare.organisations.services import create_organisation, create_sender
from radshare.shares.models import Share
from tests.shares.helpers import ANNA, NO_BIRTH, make_share, make_study


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    with translation.override("en"):
        yield


@pytest.fixture
def client(sender: Any) -> Client:
    c = Client(HTTP_ACCEPT_LANGUAGE="en")
    c.force_login(sender)
    return c


def _form(study: Any, **overrides: Any) -> dict[str, Any]:
    return {
        "study": [study.pk],
        "recipient_type": "patient",
        "delivery": "url",
        "phone": "0612345678",
        "language": "nl",
        "reason": "",
        **overrides,
    }


def _text(response: Any) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def _input(text: str, name: str) -> str:
    match = re.search(rf'<input[^>]*name="{name}"[^>]*>', text)
    assert match is not None, name
    return match[0]


@pytest.mark.django_db
def test_the_dialog_asks_for_the_date_twice_in_plain_text_fields(client: Client, organisation: Any) -> None:
    study = make_study(organisation, NO_BIRTH)
    text = _text(client.get("/portal/shares/new", {"study": study.pk}))
    for name in ("birth_date", "birth_date_again"):
        field = _input(text, name)
        assert 'type="text"' in field  # not type=date: read as day-month-year in every browser
        assert 'inputmode="numeric"' in field
        assert 'autocomplete="off"' in field  # the patient's date, not the sender's own
    assert "Type the date of birth again" in text
    assert "Day-month-year (dd-mm-yyyy), for example 14-03-1968." in text


@pytest.mark.django_db
def test_two_different_dates_are_refused_with_a_clear_error(client: Client, organisation: Any) -> None:
    study = make_study(organisation, NO_BIRTH)
    response = client.post(
        "/portal/shares/new", _form(study, birth_date="15-03-1968", birth_date_again="15-03-1986")
    )
    assert response.status_code == 422
    assert "The two dates of birth differ" in _text(response)
    assert Share.objects.count() == 0
    once = client.post("/portal/shares/new", _form(study, birth_date="15-03-1968"))
    assert once.status_code == 422
    assert "Type the date of birth a second time." in _text(once)
    assert Share.objects.count() == 0


@pytest.mark.django_db
def test_an_unreadable_date_is_refused_with_what_to_fix(client: Client, organisation: Any) -> None:
    study = make_study(organisation, NO_BIRTH)
    response = client.post("/portal/shares/new", _form(study, birth_date="1-2-68", birth_date_again="1-2-68"))
    assert response.status_code == 422
    assert "four digits" in _text(response)
    assert Share.objects.count() == 0


@pytest.mark.django_db
def test_the_typed_date_is_stored_once_and_shown_on_the_shares_page(
    client: Client, organisation: Any
) -> None:
    study = make_study(organisation, NO_BIRTH)
    response = client.post(
        "/portal/shares/new", _form(study, birth_date="15-03-1968", birth_date_again="15031968")
    )
    assert response.status_code == 302, _text(response)
    share = Share.objects.get()
    assert share.confirmed_birth_date == dt.date(1968, 3, 15)
    assert share.patient is not None
    assert share.patient.patient_birth_date == dt.date(1900, 1, 1)  # the images' placeholder stays as it came
    page = _text(client.get(response["Location"]))
    assert "Date of birth typed at sharing" in page
    assert "15-03-1968" in page
    assert "Typed by the sender" in page
    assert "check it for a typo" in page
    # Locked: the lock notice points at it.
    Share.objects.filter(pk=share.pk).update(locked_until=Share.HELD)
    assert 'href="#typed-birth-date"' in _text(client.get(response["Location"]))


@pytest.mark.django_db
def test_a_share_whose_images_hold_the_date_shows_none_typed(client: Client, organisation: Any) -> None:
    share = make_share(organisation, [make_study(organisation, ANNA)]).share
    page = _text(client.get(f"/portal/shares/{share.pk}/"))
    assert "Date of birth typed at sharing" not in page


@pytest.mark.django_db
def test_another_organisations_sender_does_not_see_it(organisation: Any) -> None:
    share = make_share(
        organisation, [make_study(organisation, NO_BIRTH)], birth_date=dt.date(1968, 3, 15)
    ).share
    other = create_organisation("hospital-b", "Hospital B", require_two_factor=False)
    outsider = Client(HTTP_ACCEPT_LANGUAGE="en")
    outsider.force_login(create_sender(other, "bob", "correct horse battery staple"))
    response = outsider.get(f"/portal/shares/{share.pk}/")
    assert response.status_code == 404
    assert "15-03-1968" not in response.content.decode()
