"""The recipient's forms: the code, terms + date of birth, and the SMS code. Messages are for a patient on a phone."""

from __future__ import annotations

import re

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from radshare.core.dates import BirthDateField
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


class BirthDateForm(forms.Form):
    accept_terms = forms.BooleanField(
        label=_("I accept the terms of use"),
        error_messages={"required": _("Accept the terms of use to continue.")},
    )
    birth_date = BirthDateField(
        label=_("Date of birth of the patient"),
        autocomplete="bday",  # the recipient is often the patient
    )


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
