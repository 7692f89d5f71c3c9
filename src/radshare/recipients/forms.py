"""The recipient's forms: the code, terms + date of birth, and the SMS code. Messages are for a patient on a phone."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from radshare.shares import codes


class CodeForm(forms.Form):
    code = forms.CharField(
        label=_("Code from your e-mail or letter"),
        max_length=40,
        widget=forms.TextInput(
            attrs={"autocomplete": "off", "autocapitalize": "characters", "spellcheck": "false"}
        ),
        help_text=_("12 letters and digits, for example ABCD-EFGH-JKMN."),
    )

    def clean_code(self) -> str:
        code = codes.normalize_code(self.cleaned_data["code"])
        if code is None:
            raise ValidationError(_("A code has 12 letters and digits. Check what you typed."))
        return code


_DATE = re.compile(r"^\s*(\d{1,2})[-/. ](\d{1,2})[-/. ](\d{4})\s*$")
_ISO = re.compile(r"^\s*(\d{4})-(\d{2})-(\d{2})\s*$")
_COMPACT = re.compile(r"^\s*(\d{2})(\d{2})(\d{4})\s*$")


def parse_birth_date(raw: str) -> dt.date:
    """dd-mm-yyyy as typed (also with / . or spaces, or ddmmyyyy), or yyyy-mm-dd from a date picker."""
    match = _ISO.match(raw)
    if match:
        year, month, day = (int(g) for g in match.groups())
    else:
        match = _DATE.match(raw) or _COMPACT.match(raw)
        if not match:
            raise ValidationError(_("Type the date of birth as day-month-year, for example 14-03-1968."))
        day, month, year = (int(g) for g in match.groups())
    try:
        date = dt.date(year, month, day)
    except ValueError:
        raise ValidationError(_("This date does not exist. Check the day and the month.")) from None
    today = timezone.localdate()
    if date > today:
        raise ValidationError(_("This date lies in the future. Type the patient's date of birth."))
    if date.year < today.year - 130:
        raise ValidationError(_("Check the year: type it with four digits, for example 1968."))
    return date


class BirthDateForm(forms.Form):
    accept_terms = forms.BooleanField(
        label=_("I accept the terms of use"),
        error_messages={"required": _("Accept the terms of use to continue.")},
    )
    birth_date = forms.CharField(
        label=_("Date of birth of the patient"),
        max_length=20,
        widget=forms.DateInput(attrs={"type": "date", "autocomplete": "bday", "max": ""}),
        help_text=_("Pick the date, or type it as day-month-year (14-03-1968)."),
        error_messages={"required": _("Enter the date of birth.")},
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["birth_date"].widget.attrs["max"] = timezone.localdate().isoformat()

    def clean_birth_date(self) -> dt.date:
        return parse_birth_date(self.cleaned_data["birth_date"])


class SmsCodeForm(forms.Form):
    code = forms.CharField(
        label=_("Code from the SMS"),
        max_length=12,
        widget=forms.TextInput(
            attrs={"inputmode": "numeric", "autocomplete": "one-time-code", "pattern": "[0-9 ]*"}
        ),
        help_text=_("6 digits."),
        error_messages={"required": _("Enter the code from the SMS.")},
    )

    def clean_code(self) -> str:
        code = re.sub(r"[\s-]", "", self.cleaned_data["code"])
        if not re.fullmatch(r"\d{6}", code):
            raise ValidationError(_("The code from the SMS has 6 digits."))
        return code
