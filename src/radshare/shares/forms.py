"""The share dialog's form and the shares overview's filter. The rules themselves live in ``services``."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from radshare.shares.models import Share
from radshare.studies.forms import DATE_INPUT_FORMATS, DateInput


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
    phone = forms.CharField(
        label=_("Mobile number for the SMS code"),
        max_length=40,
        widget=forms.TextInput(attrs={"type": "tel", "autocomplete": "off", "inputmode": "tel"}),
        help_text=_("A Dutch number needs no +31; a foreign number starts with its country code, e.g. +44."),
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
    birth_date = forms.DateField(
        label=_("Patient's date of birth"),
        required=False,
        widget=DateInput,
        input_formats=DATE_INPUT_FORMATS,
        help_text=_(
            "The images lack it, and the recipient must type it to open the share. Format: dd-mm-yyyy."
        ),
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
        if not needs_birth_date:
            del self.fields["birth_date"]
        else:
            self.fields["birth_date"].required = True


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
    created_from = forms.DateField(
        label=_("Created from"), required=False, widget=DateInput, input_formats=DATE_INPUT_FORMATS
    )
    created_to = forms.DateField(
        label=_("Created to"), required=False, widget=DateInput, input_formats=DATE_INPUT_FORMATS
    )
