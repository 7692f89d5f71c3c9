"""The one date of birth field (docs/architecture.md "Dates people type"): what it reads, what it refuses and
why, and that it is plain text whatever the browser's locale."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone, translation

from radshare.core.dates import BirthDateField, parse_date, time_zone_place, validate_birth_date

MARCH_14 = dt.date(1968, 3, 14)


@pytest.mark.parametrize(
    "typed",
    [
        "14-03-1968",
        "14/3/1968",
        "14.3.1968",
        "14 3 1968",
        "14031968",
        "1968-03-14",
        " 14 - 03 - 1968 ",
        "14/03/1968",
    ],
)
def test_the_forms_people_type_are_read_as_day_month_year(typed: str) -> None:
    assert parse_date(typed) == MARCH_14


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("31-02-1968", "no_such_date"),
        ("1-2-68", "short_year"),
        ("140368", "short_year"),
        ("14 maart 1968", "letters"),
        ("14-03-1968a", "letters"),
        ("1968", "incomplete"),
        ("14/03", "incomplete"),
        ("03-14-1968", "month"),  # an American month-day-year: never guessed
        ("14-03-19680", "format"),
        ("1-2-3-4", "format"),
        ("1" * 200, "format"),
    ],
)
def test_a_date_that_cannot_be_read_for_sure_is_refused_with_what_to_fix(typed: str, code: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_date(typed)
    assert caught.value.code == code


def test_the_messages_say_what_to_fix() -> None:
    def message(typed: str) -> str:
        with pytest.raises(ValidationError) as caught:
            parse_date(typed)
        return str(caught.value.messages[0])

    with translation.override("en"):
        assert "four digits" in message("1-2-68")
        assert "There is no month 14. Type the day first, then the month" in message("03-14-1968")
        assert "does not exist" in message("31-02-1968")
        assert "in digits" in message("14 maart 1968")
        assert "the day, the month and the year" in message("1968")


@time_machine.travel(dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC))
def test_a_date_of_birth_lies_neither_ahead_nor_too_far_back() -> None:
    validate_birth_date(dt.date(2026, 6, 1))
    validate_birth_date(dt.date(1896, 1, 1))
    for wrong, code in ((dt.date(2026, 6, 2), "future"), (dt.date(1895, 12, 31), "too_old")):
        with pytest.raises(ValidationError) as caught:
            validate_birth_date(wrong)
        assert caught.value.code == code


class _Form(forms.Form):
    own = BirthDateField(label="Own", autocomplete="bday")
    other = BirthDateField(label="Other", required=False)


def test_the_field_is_plain_text_for_every_locale() -> None:
    with translation.override("en"):
        html = str(_Form(initial={"own": MARCH_14}))
    assert 'type="date"' not in html
    assert 'type="text"' in html
    assert 'inputmode="numeric"' in html
    assert 'autocomplete="bday"' in html  # only where it may be the person's own date
    assert 'autocomplete="off"' in html
    assert 'value="14-03-1968"' in html  # a date is shown as it is typed
    assert "Day-month-year (dd-mm-yyyy), for example 14-03-1968." in html


def test_the_field_cleans_to_a_date_and_checks_the_date_of_birth_rules() -> None:
    form = _Form({"own": "14/3/1968", "other": ""})
    assert form.is_valid(), form.errors
    assert form.cleaned_data == {"own": MARCH_14, "other": None}
    with translation.override("en"):
        assert _Form({"own": ""}).errors["own"] == ["Enter the date of birth."]
        assert "in the future" in _Form({"own": "01-01-2999"}).errors["own"][0]


def test_the_time_zone_is_named_by_its_place() -> None:
    assert time_zone_place() == "Amsterdam"  # TIME_ZONE Europe/Amsterdam
    with timezone.override("America/New_York"):
        assert time_zone_place() == "New York"
