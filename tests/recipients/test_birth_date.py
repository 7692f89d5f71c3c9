"""What a patient meets at the date step, at the lock and at the SMS step (issue 14): one text field read as
day-month-year whatever the browser's locale, a date in a form that cannot be read for sure costs no try, the lock
page names when the lock ends and in which time zone, and a wrong SMS code says how many tries are left
(docs/architecture.md "Dates people type", docs/security.md A3, A4)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone, translation
from django.utils.formats import date_format

from radshare.recipients import access
from radshare.shares.models import Share
from tests.recipients.conftest import BIRTH, ready_share, sms_codes, to_sms_step
from tests.shares.helpers import ANNA, make_study


def _share(organisation: Any, sender: Any, language: str) -> tuple[Share, str]:
    """A ready share in ``language``: the recipient's pages follow it (and the browser's before the code)."""
    study = make_study(organisation, ANNA)
    return ready_share(organisation, [study], created_by=sender, delivery="url", email="", language=language)


@pytest.fixture
def shared(organisation: Any, sender: Any, sms_file: Path) -> tuple[Share, str]:
    return _share(organisation, sender, "en")


@pytest.fixture
def dutch(organisation: Any, sender: Any, sms_file: Path) -> tuple[Share, str]:
    return _share(organisation, sender, "nl")


def _client(language: str = "en") -> Client:
    return Client(HTTP_ACCEPT_LANGUAGE=language)


def _text(response: Any) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def _post_date(client: Client, typed: str) -> Any:
    return client.post("/r/birth-date", {"accept_terms": "on", "birth_date": typed})


def _failures(share: Share) -> int:
    share.refresh_from_db()
    return share.birth_date_failures


@pytest.mark.django_db
def test_the_field_is_one_text_field_with_a_day_month_year_hint(shared: tuple[Share, str]) -> None:
    _, code = shared
    client = _client()
    client.get("/", {"code": code})
    page = _text(client.get("/r/birth-date"))
    field = re.search(r'<input[^>]*name="birth_date"[^>]*>', page)
    assert field is not None
    assert 'type="text"' in field[0]
    assert 'inputmode="numeric"' in field[0]
    assert 'autocomplete="bday"' in field[0]
    assert ' max="' not in field[0]  # no date picker's limits left behind
    assert "Day-month-year (dd-mm-yyyy), for example 14-03-1968." in page
    assert "Pick the date" not in page


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("1-2-68", "four digits"),
        ("140368", "four digits"),
        ("14 maart 1968", "in digits"),
        ("1968", "the day, the month and the year"),
        ("03-14-1968", "There is no month 14. Type the day first, then the month"),
        ("31-02-1968", "does not exist"),
    ],
)
def test_a_date_that_cannot_be_read_for_sure_says_what_to_fix_and_costs_no_try(
    shared: tuple[Share, str], typed: str, message: str
) -> None:
    share, code = shared
    client = _client()
    client.get("/", {"code": code})
    assert f"try {access.BIRTH_DATE_TRIES - 1} more times" in _text(_post_date(client, "01-01-1970"))
    response = _post_date(client, typed)
    assert response.status_code == 422
    text = _text(response)
    assert message in text
    assert "more time" not in text  # not a wrong date: nothing was compared
    assert _failures(share) == 1
    # The next wrong date counts from where the first left off: the unreadable one cost nothing.
    assert f"try {access.BIRTH_DATE_TRIES - 2} more times" in _text(_post_date(client, "01-01-1970"))
    assert _failures(share) == 2


@pytest.mark.django_db
def test_a_wrong_date_says_how_it_was_read(shared: tuple[Share, str], dutch: tuple[Share, str]) -> None:
    """Day and month swapped by someone used to month-day-year: the message shows the date as it was read."""
    share, code = shared
    client = _client()
    client.get("/", {"code": code})
    text = _text(_post_date(client, "03-12-1968"))
    assert "This date of birth (3 December 1968) does not match. You can try 4 more times." in text
    assert _failures(share) == 1
    in_dutch = _client("nl")
    in_dutch.get("/", {"code": dutch[1]})
    assert "3 december 1968" in _text(_post_date(in_dutch, "03-12-1968"))  # the month in the page's language


@pytest.mark.django_db
def test_the_date_typed_as_the_hint_says_opens_the_sms_step(
    shared: tuple[Share, str], sms_file: Path
) -> None:
    _, code = shared
    client = _client()
    client.get("/", {"code": code})
    assert _post_date(client, "14 3 1968")["Location"] == "/r/sms-code"
    assert len(sms_codes(sms_file)) == 1


def _lock(client: Client) -> Any:
    for _ in range(access.BIRTH_DATE_TRIES):
        response = _post_date(client, "01-01-1970")
    assert response["Location"] == "/r/locked"
    return client.get("/r/locked")


@pytest.mark.django_db
def test_the_lock_page_names_the_day_time_and_time_zone_the_lock_ends(shared: tuple[Share, str]) -> None:
    share, code = shared
    client = _client()
    client.get("/", {"code": code})
    page = _text(_lock(client))
    share.refresh_from_db()
    assert share.locked_until is not None
    ends = timezone.localtime(share.locked_until, timezone.get_default_timezone())
    when = f"{ends.day} {ends:%B} {ends:%H:%M}"
    assert f"It is locked until {when} (Amsterdam time); you can try again after that." in page


@pytest.mark.django_db
def test_the_lock_page_speaks_the_recipients_language(dutch: tuple[Share, str]) -> None:
    share, code = dutch
    Share.objects.filter(pk=share.pk).update(birth_date_failures=access.BIRTH_DATE_TRIES - 1)
    client = _client("nl")
    client.get("/", {"code": code})
    assert _post_date(client, "01-01-1970")["Location"] == "/r/locked"
    share.refresh_from_db()
    assert share.locked_until is not None
    ends = timezone.localtime(share.locked_until, timezone.get_default_timezone())
    with translation.override("nl"):
        when = date_format(ends, "j F H:i")  # 5 december 09:23
    assert re.search(r" [a-z]+ ", when)
    page = _text(client.get("/r/locked"))
    assert when in page
    assert "Amsterdam" in page


def _wrong(sent: str) -> str:
    return f"{(int(sent) + 1) % 10**6:06d}"


@pytest.mark.django_db
def test_a_wrong_sms_code_says_how_many_tries_are_left(shared: tuple[Share, str], sms_file: Path) -> None:
    share, code = shared
    client = _client()
    to_sms_step(client, code)
    wrong = _wrong(sms_codes(sms_file)[-1])
    text = _text(client.post("/r/sms-code", {"code": wrong}))
    assert "you can try this code 4 more times" in text
    assert "you can try this code 3 more times" in _text(client.post("/r/sms-code", {"code": wrong}))
    # Nearer the share's limit than the code's: the lock that follows is named, and who lifts it.
    Share.objects.filter(pk=share.pk).update(sms_code_failures=access.SMS_CODE_TRIES_PER_SHARE - 2)
    text = _text(client.post("/r/sms-code", {"code": wrong}))
    assert "You can try 1 more time; after that the link is locked until Hospital A unlocks it." in text
    assert client.post("/r/sms-code", {"code": wrong})["Location"] == "/r/locked"


@pytest.mark.django_db
def test_the_right_date_after_unreadable_ones_still_opens(shared: tuple[Share, str]) -> None:
    share, code = shared
    client = _client()
    client.get("/", {"code": code})
    for typed in ("1-2-68", "31-02-1968", "1968", "14.3.68", "x"):
        assert _post_date(client, typed).status_code == 422
    assert _failures(share) == 0
    assert _post_date(client, BIRTH)["Location"] == "/r/sms-code"
