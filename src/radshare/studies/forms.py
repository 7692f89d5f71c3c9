from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from radshare.studies.services import StudySearch

DATE_INPUT_FORMATS = ["%d-%m-%Y", "%Y-%m-%d", "%d/%m/%Y", "%d.%m.%Y"]


class DateInput(forms.DateInput):
    input_type = "date"

    def format_value(self, value: Any) -> str | None:
        # <input type="date"> needs ISO; people may still type dd-mm-yyyy where the picker is absent.
        if hasattr(value, "isoformat"):
            return str(value.isoformat())
        return None if value is None else str(value)


class StudySearchForm(forms.Form):
    patient_id = forms.CharField(label=_("Patient ID"), max_length=64, required=False)
    patient_name = forms.CharField(label=_("Patient name"), max_length=100, required=False)
    patient_birth_date = forms.DateField(
        label=_("Date of birth"), required=False, widget=DateInput, input_formats=DATE_INPUT_FORMATS
    )
    study_date_from = forms.DateField(
        label=_("Study date from"), required=False, widget=DateInput, input_formats=DATE_INPUT_FORMATS
    )
    study_date_to = forms.DateField(
        label=_("Study date to"), required=False, widget=DateInput, input_formats=DATE_INPUT_FORMATS
    )
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
