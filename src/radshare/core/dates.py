"""One way to type a date, for everyone who types one: the recipient at the date step, the sender in the share
dialog, and every date filter of the portal (docs/architecture.md "Dates people type").

A browser's ``<input type="date">`` shows the date in the browser's own locale (mm/dd/yyyy in an English
Chromium), so a patient who types day-month-year as the hint says gets another date and loses a try. This field is
plain text, read as day-month-year whatever the browser's locale. A date in a form that cannot be read for sure
(a two-digit year, letters, a part missing, a day that does not exist) is refused by the form with what to fix,
before any comparison: it never costs a recipient a try (docs/security.md A3).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

MAX_AGE_YEARS = 130  # older than this is a typo in the year
MAX_LENGTH = 20  # 14 - 03 - 1968 fits; more is not a date (and is not worth reading)
HINT = _("Day-month-year (dd-mm-yyyy), for example 14-03-1968.")
FILTER_HINT = _("dd-mm-yyyy")

_SEP = r"\s*[-/.\s]\s*"
# 14-03-1968, 14/3/1968, 14.3.1968, 14 3 1968 (the year's length is checked after, to say what is wrong with it)
_DAY_FIRST = re.compile(rf"(\d{{1,2}}){_SEP}(\d{{1,2}}){_SEP}(\d+)")
_YEAR_FIRST = re.compile(rf"(\d{{4}}){_SEP}(\d{{1,2}}){_SEP}(\d{{1,2}})")  # 1968-03-14
_ALLOWED = re.compile(r"[\d\s\-/.]*")

MESSAGES = {
    "letters": _("Type the date in digits, as day-month-year: for example 14-03-1968."),
    "short_year": _("Type the year in full, with four digits: for example 14-03-1968, not 14-03-68."),
    "incomplete": _("Type the day, the month and the year: for example 14-03-1968."),
    "format": _("Type the date as day-month-year, for example 14-03-1968."),
    "month": _("There is no month %(month)s. Type the day first, then the month: for example 14-03-1968."),
    "no_such_date": _("This date does not exist. Check the day and the month."),
    "future": _("This date lies in the future. Type the patient's date of birth."),
    "too_old": _("Check the year: type it with four digits, for example 1968."),
}


def _error(code: str, **params: Any) -> ValidationError:
    return ValidationError(MESSAGES[code], code=code, params=params or None)


def _parts(raw: str) -> tuple[int, int, int]:
    """Day, month and year as typed; refuses what cannot be read for sure (never guesses a century or an order)."""
    if len(raw) > MAX_LENGTH:
        raise _error("format")
    if not _ALLOWED.fullmatch(raw):
        raise _error("letters")
    if match := _YEAR_FIRST.fullmatch(raw):
        year, month, day = match.groups()
        return int(day), int(month), int(year)
    digits: list[str] = re.findall(r"\d+", raw)
    if match := _DAY_FIRST.fullmatch(raw):
        day, month, year = match.groups()
    elif len(digits) == 1 and len(digits[0]) == 8:  # 14031968
        day, month, year = digits[0][:2], digits[0][2:4], digits[0][4:]
    elif len(digits) == 1 and len(digits[0]) == 6:  # 140368
        raise _error("short_year")
    elif len(digits) < 3:  # 1968, 14-03
        raise _error("incomplete")
    else:
        raise _error("format")
    if len(year) == 2:
        raise _error("short_year")
    if len(year) != 4:
        raise _error("format")
    return int(day), int(month), int(year)


def parse_date(raw: str) -> dt.date:
    """The date in ``raw``, typed as day-month-year (14-03-1968, 14/3/1968, 14.3.1968, 14 3 1968, 14031968) or
    as yyyy-mm-dd; a ``ValidationError`` saying what to fix otherwise."""
    day, month, year = _parts(raw.strip())
    if month > 12 and 1 <= day <= 12:  # month and day swapped, as in an American date
        raise _error("month", month=month)
    try:
        return dt.date(year, month, day)
    except ValueError:
        raise _error("no_such_date") from None


def validate_birth_date(date: dt.date) -> None:
    """A date of birth that can be true: not in the future, not more than ``MAX_AGE_YEARS`` ago."""
    today = timezone.localdate()
    if date > today:
        raise _error("future")
    if date.year < today.year - MAX_AGE_YEARS:
        raise _error("too_old")


class DateTextInput(forms.TextInput):
    """A text field for a date, the same in every browser whatever its locale (deliberately not ``type=date``);
    a digit keypad on phones (14031968 is understood too, for keypads without a dash)."""

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        defaults = {
            "inputmode": "numeric",
            "autocomplete": "off",
            "spellcheck": "false",
            "maxlength": str(MAX_LENGTH),
        }
        super().__init__({**defaults, **(attrs or {})})

    def format_value(self, value: Any) -> str | None:
        if isinstance(value, dt.date):
            return value.strftime("%d-%m-%Y")
        return None if value is None or value == "" else str(value)


class DayMonthYearField(forms.Field):
    """A date typed as day-month-year in a plain text field (see the module's docstring); for the portal's filters
    (study dates, share and audit periods)."""

    widget = DateTextInput

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("help_text", FILTER_HINT)
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> dt.date | None:
        if isinstance(value, dt.date):
            return value
        text = str(value or "").strip()
        return parse_date(text) if text else None


class BirthDateField(DayMonthYearField):
    """A date of birth typed as day-month-year. ``autocomplete="bday"`` only where it may be the person's own date
    of birth (the browser offers its stored one)."""

    default_validators = [validate_birth_date]
    default_error_messages = {"required": _("Enter the date of birth.")}

    def __init__(self, *, autocomplete: str = "off", **kwargs: Any) -> None:
        kwargs.setdefault("help_text", HINT)
        super().__init__(**kwargs)
        self.widget.attrs["autocomplete"] = autocomplete


def time_zone_place() -> str:
    """The place whose clock the times on a page follow ("Amsterdam" for Europe/Amsterdam), for "(Amsterdam
    time)" next to a time a reader elsewhere must convert."""
    return timezone.get_current_timezone_name().rsplit("/", 1)[-1].replace("_", " ")
