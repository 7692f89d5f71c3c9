"""The portal's "send the e-mail again" form."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _


class ResendForm(forms.Form):
    email = forms.EmailField(
        label=_("E-mail address (correct it if it was wrong)"),
        max_length=254,
        required=False,
        widget=forms.EmailInput(attrs={"autocomplete": "off"}),
    )
