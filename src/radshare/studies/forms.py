from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from radshare.core.dates import DayMonthYearField
from radshare.studies.browse import StudySearch


class StudySearchForm(forms.Form):
    patient_id = forms.CharField(label=_("Patient ID"), max_length=64, required=False)
    patient_name = forms.CharField(label=_("Patient name"), max_length=100, required=False)
    patient_birth_date = DayMonthYearField(label=_("Date of birth"), required=False)
    study_date_from = DayMonthYearField(label=_("Study date from"), required=False)
    study_date_to = DayMonthYearField(label=_("Study date to"), required=False)
    accession_number = forms.CharField(label=_("Accession number"), max_length=64, required=False)
    modality = forms.CharField(
        label=_("Modality"),
        max_length=16,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "CT, MR, CR…"}),
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("study_date_from"), data.get("study_date_to")
        if start and end and start > end:
            self.add_error("study_date_to", _("The end date lies before the start date."))
        return data

    def criteria(self) -> StudySearch:
        return StudySearch(**{k: v for k, v in self.cleaned_data.items() if v not in (None, "")})
