"""Searching the organisation's PACS from the portal (docs/requirements.md S1.2, "integration level 3"):
C-FIND or QIDO-RS, results
like the local study browser, studies already in radshare marked; the selection opens the share dialog."""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_safe

from radshare.organisations.auth import sender_required
from radshare.organisations.models import Organisation
from radshare.pacs.client import PacsError, StudyQuery, find_studies
from radshare.shares.pacs import audit_query, searchable_nodes
from radshare.shares.views import actor_of
from radshare.studies.forms import StudySearchForm
from radshare.studies.models import Study


class PacsSearchForm(StudySearchForm):
    node = forms.TypedChoiceField(label=gettext_lazy("PACS"), coerce=int, required=False, empty_value=None)

    def __init__(self, *args: Any, nodes: list[Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["node"]
        assert isinstance(field, forms.TypedChoiceField)  # noqa: S101 - declared above
        field.choices = [("", _("All")), *[(n.pk, n.description or n.ae_title) for n in nodes]]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        criteria = [k for k in ("patient_id", "patient_name", "patient_birth_date", "study_date_from",
                                "study_date_to", "accession_number") if data.get(k)]  # fmt: skip
        if self.is_bound and not criteria:
            raise forms.ValidationError(
                _(
                    "Enter a patient ID, name, date of birth, study date or accession number: "
                    "a PACS is not listed whole."
                )
            )
        return data


@require_safe
@sender_required
def pacs_search(request: HttpRequest, organisation: Organisation) -> HttpResponse:
    nodes = searchable_nodes(organisation)
    form = PacsSearchForm(request.GET or None, nodes=nodes)
    results: list[dict[str, Any]] = []
    problems: list[str] = []
    searched = False
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        query = StudyQuery(
            patient_id=data["patient_id"] or "",
            patient_name=data["patient_name"] or "",
            birth_date=data["patient_birth_date"],
            date_from=data["study_date_from"],
            date_to=data["study_date_to"],
            accession_number=data["accession_number"] or "",
            modality=(data["modality"] or "").upper(),
        )
        criteria = [k for k, v in data.items() if v and k != "node"]
        searched = True
        for node in nodes:
            if data["node"] is not None and node.pk != data["node"]:
                continue
            try:
                studies = find_studies(node, query)
            except PacsError as exc:
                audit_query(actor_of(request), organisation, node, 0, criteria, exc)
                problems.append(f"{node.description or node.ae_title}: {exc.message}")
                continue
            audit_query(actor_of(request), organisation, node, len(studies), criteria)
            here = set(
                Study.objects.filter(
                    organisation=organisation, study_instance_uid__in=[s.study_instance_uid for s in studies]
                ).values_list("study_instance_uid", flat=True)
            )
            results += [{"node": node, "study": s, "here": s.study_instance_uid in here} for s in studies]
        results.sort(key=lambda r: (r["study"].study_date is None, r["study"].study_date), reverse=True)
    return render(
        request,
        "shares/pacs_search.html",
        {
            "form": form,
            "nodes": nodes,
            "results": results,
            "problems": problems,
            "searched": searched,
            "organisation": organisation,
        },
    )
