"""The study browser's queries: search within one organisation, and one study by id, scoped the same way."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import F, Q, QuerySet

from radshare.organisations.models import Organisation
from radshare.studies.models import Study
from radshare.studies.services import bsn_hashes


@dataclass(frozen=True)
class StudySearch:
    patient_id: str = ""
    issuer_of_patient_id: str | None = None  # None: any issuer; "" only patients without one
    patient_name: str = ""
    patient_birth_date: dt.date | None = None
    study_date_from: dt.date | None = None
    study_date_to: dt.date | None = None
    accession_number: str = ""
    modality: str = ""
    bsn: str = ""  # matched by its keyed hash only (docs/security.md A23)


def search_studies(organisation: Organisation, criteria: StudySearch) -> QuerySet[Study]:
    """Studies of ``organisation`` matching every given criterion, newest first."""
    qs = Study.objects.present().filter(organisation=organisation).select_related("patient")
    if criteria.patient_id:
        qs = qs.filter(patient__patient_id__iexact=criteria.patient_id.strip())
    if criteria.issuer_of_patient_id is not None:
        qs = qs.filter(patient__issuer_of_patient_id=criteria.issuer_of_patient_id.strip())
    if criteria.patient_name:
        # People type "jansen" or "Jansen, Piet"; DICOM stores "Jansen^Piet".
        for part in criteria.patient_name.replace(",", " ").replace("^", " ").split():
            qs = qs.filter(patient__patient_name__icontains=part)
    if criteria.patient_birth_date:
        qs = qs.filter(patient__patient_birth_date=criteria.patient_birth_date)
    if criteria.study_date_from:
        qs = qs.filter(study_date__gte=criteria.study_date_from)
    if criteria.study_date_to:
        qs = qs.filter(study_date__lte=criteria.study_date_to)
    if criteria.accession_number:
        qs = qs.filter(accession_number__iexact=criteria.accession_number.strip())
    if criteria.bsn:
        digits = "".join(c for c in criteria.bsn if c.isdigit())  # "1234.56.782" as people write it
        qs = qs.filter(patient__bsn_hash__in=bsn_hashes(digits.zfill(9)))
    if criteria.modality:
        m = criteria.modality.strip().upper()
        qs = qs.filter(
            Q(modalities_in_study=m)
            | Q(modalities_in_study__startswith=m + "\\")
            | Q(modalities_in_study__endswith="\\" + m)
            | Q(modalities_in_study__contains=f"\\{m}\\")
        )
    return qs.order_by(F("study_date").desc(nulls_last=True), "-created_at")


def get_study(organisation: Organisation, study_pk: int) -> Study:
    """One study, only if it belongs to ``organisation`` (an id alone is never enough, docs/security.md A10)."""
    return Study.objects.present().select_related("patient").get(organisation=organisation, pk=study_pk)
