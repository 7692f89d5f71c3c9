"""API endpoints. Thin: validate (the schemas), call the same services as the portal, audit, answer.

Every query is scoped to the key's organisation (SECURITY.md A10): another organisation's patient simply has no
studies here (an empty list, never a hint that the patient exists elsewhere).
"""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Query, Router

from radshare.api.schemas import Error, PatientOut, StudyOut, StudyQuery
from radshare.audit.services import record
from radshare.organisations.models import ApiKey
from radshare.studies.models import Study
from radshare.studies.services import StudySearch, search_studies

router = Router(tags=["studies"])


def _study_out(study: Study) -> StudyOut:
    patient = study.patient
    return StudyOut(
        study_instance_uid=study.study_instance_uid,
        study_date=study.study_date,
        description=study.study_description,
        accession_number=study.accession_number,
        modalities=study.modalities,
        number_of_series=study.number_of_series,
        number_of_instances=study.number_of_instances,
        size=study.size,
        patient=PatientOut(
            patient_id=patient.patient_id,
            issuer=patient.issuer_of_patient_id,
            name=patient.patient_name,
            birth_date=patient.patient_birth_date,
        ),
    )


@router.get(
    "/studies",
    response={200: list[StudyOut], 401: Error, 422: Error},
    operation_id="list_studies",
    summary="A patient's studies held by the organisation",
)
def list_studies(request: HttpRequest, query: Query[StudyQuery]) -> list[StudyOut]:
    """The organisation's local studies of one patient, newest first. ``patient_id`` is required: the API does
    not list everything."""
    key = request.auth  # type: ignore[attr-defined]  # set by ninja's authentication
    assert isinstance(key, ApiKey)  # noqa: S101 - the router's auth guarantees it
    studies = list(
        search_studies(
            key.organisation,
            StudySearch(patient_id=query.patient_id, issuer_of_patient_id=query.issuer),
        )
    )
    patients = sorted({s.patient_id for s in studies})
    record(
        "api.studies.list",
        request=request,
        api_key=key,
        patient=patients[0] if len(patients) == 1 else None,
        study_uids=[s.study_instance_uid for s in studies],
        detail={
            "count": len(studies),
            "patient_refs": patients,
            "criteria": ["patient_id"] + (["issuer"] if query.issuer is not None else []),
        },
    )
    return [_study_out(s) for s in studies]
