"""The filters of the audit trail page (docs/security.md A19): every one optional, each with its label."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from radshare.audit.actions import Action
from radshare.audit.models import AuditEvent
from radshare.audit.queries import TrailFilter
from radshare.core.dates import DayMonthYearField
from radshare.organisations.models import Organisation
from radshare.studies.models import Patient


class TrailFilterForm(forms.Form):
    patient_id = forms.CharField(label=_("Patient ID"), max_length=64, required=False)
    share = forms.IntegerField(label=_("Share number"), min_value=1, required=False)
    user = forms.CharField(
        label=_("User"),
        max_length=150,
        required=False,
        help_text=_("User name, or part of it"),
    )
    action = forms.ChoiceField(label=_("Event"), choices=[("", _("All")), *Action.choices], required=False)
    outcome = forms.ChoiceField(
        label=_("Outcome"), choices=[("", _("All")), *AuditEvent.Outcome.choices], required=False
    )
    date_from = DayMonthYearField(label=_("From"), required=False)
    date_to = DayMonthYearField(label=_("To"), required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        first, last = data.get("date_from"), data.get("date_to")
        if first and last and first > last:
            self.add_error("date_to", _("This date is before the From date."))
        return data

    def criteria(self, organisation: Organisation) -> TrailFilter:
        """The filter for a valid form. A typed Patient ID becomes the internal ids of the organisation's patients
        with that ID (any issuer), as the trail stores them."""
        data = self.cleaned_data
        typed = (data.get("patient_id") or "").strip()
        refs = None
        if typed:
            refs = tuple(
                Patient.objects.filter(organisation=organisation, patient_id__iexact=typed)
                .order_by("pk")
                .values_list("pk", flat=True)
            )
        return TrailFilter(
            patient_refs=refs,
            share=data.get("share"),
            user=(data.get("user") or "").strip(),
            action=data.get("action") or "",
            outcome=data.get("outcome") or "",
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
        )
