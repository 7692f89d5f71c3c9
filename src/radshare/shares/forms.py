"""The share dialog's form and the shares overview's filter. The rules themselves live in ``services``."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from radshare.core.dates import BirthDateField, DayMonthYearField
from radshare.shares.models import Share


class ShareForm(forms.Form):
    study = forms.TypedMultipleChoiceField(coerce=int, widget=forms.MultipleHiddenInput)
    recipient_type = forms.ChoiceField(
        label=_("Recipient"),
        choices=[
            (Share.RecipientType.PATIENT, _("The patient")),
            (Share.RecipientType.CARE_PROVIDER, _("A care provider (GP, physiotherapist, other hospital)")),
        ],
        initial=Share.RecipientType.PATIENT,
        widget=forms.RadioSelect,
    )
    consent_confirmed = forms.BooleanField(
        label=_("The patient consents to sharing these images with this care provider."),
        required=False,
    )
    delivery = forms.ChoiceField(
        label=_("How the recipient gets the link"),
        choices=[
            (
                Share.Delivery.EMAIL,
                _("By e-mail, sent automatically once the studies are ready (recommended)"),
            ),
            (Share.Delivery.LETTER, _("By letter: a PDF to print or to attach to your own message")),
            (Share.Delivery.URL, _("Show the link on screen, to copy")),
        ],
        initial=Share.Delivery.EMAIL,
        widget=forms.RadioSelect,
    )
    email = forms.CharField(
        label=_("Recipient's e-mail address"),
        required=False,
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "off"}),
        help_text=_("Needed for delivery by e-mail."),
    )
    recipient_name = forms.CharField(
        label=_("Name on the letter (optional)"),
        required=False,
        max_length=Share.NAME_MAX_LENGTH,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
        help_text=_(
            "The recipient's name, printed at the top of the letter so that letters printed together are not "
            "mixed up. Stored encrypted, and removed when the share ends."
        ),
    )
    phone = forms.CharField(
        label=_("Mobile number for the SMS code"),
        max_length=40,
        widget=forms.TextInput(attrs={"type": "tel", "autocomplete": "off", "inputmode": "tel"}),
        help_text=_(
            "A Dutch number needs no +31; a foreign number starts with its country code, e.g. +44. The SMS "
            "service delivers to numbers from the EU and EEA only."
        ),
    )
    phone_warning_accepted = forms.BooleanField(
        label=_("I checked the number: it can receive SMS."), required=False
    )
    language = forms.ChoiceField(
        label=_("Language of the e-mail or letter"),
        choices=Share.Language.choices,
        initial=Share.Language.NL,
        widget=forms.RadioSelect,
    )
    birth_date = BirthDateField(label=_("Patient's date of birth"), required=False)
    # Typed twice: it is shown nowhere else, and a typo locks the recipient out (docs/architecture.md).
    birth_date_again = BirthDateField(
        label=_("Type the date of birth again"),
        required=False,
        help_text=_("The same date once more, to catch a typo: the recipient must type exactly this date."),
        error_messages={"required": _("Type the date of birth a second time.")},
    )
    reason = forms.CharField(
        label=_("Reason or note (optional; kept in the audit trail, not sent)"),
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    notify_on_open = forms.BooleanField(
        label=_("E-mail me when the recipient opens the share for the first time"), required=False
    )

    def __init__(self, *args: Any, study_choices: list[int], needs_birth_date: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        study = self.fields["study"]
        assert isinstance(study, forms.TypedMultipleChoiceField)  # noqa: S101 - declared above
        study.choices = [(pk, str(pk)) for pk in study_choices]
        self.needs_birth_date = needs_birth_date
        for name in ("birth_date", "birth_date_again"):
            if needs_birth_date:
                self.fields[name].required = True
            else:
                del self.fields[name]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        first, again = data.get("birth_date"), data.get("birth_date_again")
        if first and again and first != again:
            self.add_error(
                "birth_date_again",
                _("The two dates of birth differ. Check which one is right and type it in both fields."),
            )
        return data


STATUS_FILTER = [("", _("All")), ("live", _("Not ended")), *Share.Status.choices]


class ShareFilterForm(forms.Form):
    q = forms.CharField(
        label=_("Patient ID or name"),
        required=False,
        max_length=100,
        widget=forms.TextInput(attrs={"type": "search"}),
    )
    status = forms.ChoiceField(label=_("Status"), choices=STATUS_FILTER, required=False)
    delivery = forms.ChoiceField(
        label=_("Delivery"), choices=[("", _("All")), *Share.Delivery.choices], required=False
    )
    recipient_type = forms.ChoiceField(
        label=_("Recipient"), choices=[("", _("All")), *Share.RecipientType.choices], required=False
    )
    created_from = DayMonthYearField(label=_("Created from"), required=False)
    created_to = DayMonthYearField(label=_("Created to"), required=False)
