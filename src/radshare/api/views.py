"""API endpoints. Thin: validate (the schemas), call the same services as the portal, audit, answer.

Every query is scoped to the key's organisation (docs/security.md A10): another organisation's patient simply has no
studies here (an empty list, never a hint that the patient exists elsewhere).
"""

from __future__ import annotations

from collections.abc import Sequence

from django.http import HttpRequest, HttpResponse
from django.utils import translation
from ninja import Query, Router
from ninja.errors import HttpError
from ninja.responses import Status

from radshare.api.schemas import (
    Error,
    NotificationOut,
    PatientOut,
    ResendIn,
    ResendOut,
    ShareCreatedOut,
    ShareIn,
    ShareOut,
    StudyOut,
    StudyQuery,
)
from radshare.audit.actions import Action
from radshare.audit.services import record
from radshare.delivery.letter import letter_response
from radshare.delivery.models import Notification
from radshare.delivery.outbox import link_notification
from radshare.delivery.services import resend
from radshare.organisations.models import ApiKey
from radshare.pacs.client import PacsError, find_studies
from radshare.pacs.client import StudyQuery as PacsQuery
from radshare.shares.codes import share_url
from radshare.shares.models import Share
from radshare.shares.pacs import audit_query, find_by_uid, searchable_nodes
from radshare.shares.retrieve import retrieval_progress
from radshare.shares.services import (
    Actor,
    NewShare,
    PacsSelection,
    ShareError,
    create_share,
    preparation_progress,
    revoke,
)
from radshare.studies.browse import StudySearch, search_studies
from radshare.studies.models import Study

router = Router(tags=["studies"])


def _key(request: HttpRequest) -> ApiKey:
    key = request.auth  # type: ignore[attr-defined]  # set by ninja's authentication
    assert isinstance(key, ApiKey)  # noqa: S101 - the router's auth guarantees it
    return key


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
    response={200: list[StudyOut], 401: Error, 422: Error, 429: Error, 502: Error},
    operation_id="list_studies",
    summary="A patient's studies held by the organisation",
)
def list_studies(request: HttpRequest, query: Query[StudyQuery]) -> list[StudyOut]:
    """The organisation's studies of one patient, newest first: held by radshare, or (``source=pacs``) found in
    its PACS nodes. ``patient_id`` is required: the API does not list everything."""
    key = _key(request)
    if query.source == "pacs":
        return _pacs_studies(request, key, query)
    studies = list(
        search_studies(
            key.organisation,
            StudySearch(patient_id=query.patient_id, issuer_of_patient_id=query.issuer),
        )
    )
    patients = sorted({s.patient_id for s in studies})
    record(
        Action.API_STUDIES_LIST,
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


def _pacs_studies(request: HttpRequest, key: ApiKey, query: StudyQuery) -> list[StudyOut]:
    nodes = searchable_nodes(key.organisation)
    if not nodes:
        return []
    out: list[StudyOut] = []
    problems = []
    for node in nodes:
        try:
            found = find_studies(node, PacsQuery(patient_id=query.patient_id))
        except PacsError as exc:
            audit_query(Actor(api_key=key, request=request), key.organisation, node, 0, ["patient_id"], exc)
            problems.append(f"{node.ae_title}: {exc.reason}")
            continue
        audit_query(Actor(api_key=key, request=request), key.organisation, node, len(found), ["patient_id"])
        here = set(
            Study.objects.filter(
                organisation=key.organisation, study_instance_uid__in=[s.study_instance_uid for s in found]
            ).values_list("study_instance_uid", flat=True)
        )
        out += [
            StudyOut(
                study_instance_uid=s.study_instance_uid,
                study_date=s.study_date,
                description=s.description,
                accession_number=s.accession_number,
                modalities=list(s.modalities),
                number_of_series=s.number_of_series or 0,
                number_of_instances=s.number_of_instances or 0,
                size=0,
                patient=PatientOut(
                    patient_id=s.patient_id,
                    issuer=s.issuer,
                    name=s.patient_name,
                    birth_date=s.patient_birth_date,
                ),
                pacs_node=node.ae_title,
                in_radshare=s.study_instance_uid in here,
            )
            for s in found
            if query.issuer is None or s.issuer in ("", query.issuer)
        ]
    if problems and not out:
        raise HttpError(502, "The PACS could not be searched: " + "; ".join(problems))
    return sorted(out, key=lambda s: (s.study_date is None, s.study_date), reverse=True)


shares_router = Router(tags=["shares"])


def _share_studies(
    request: HttpRequest, key: ApiKey, body: ShareIn
) -> tuple[list[int], Sequence[PacsSelection]]:
    """(ids of the studies held here, the PACS studies to retrieve). A study found nowhere is a 404; studies of
    another patient than ``patient_id`` are refused as ``mixed_patients``."""
    found = dict(
        Study.objects.filter(
            organisation=key.organisation, study_instance_uid__in=set(body.study_instance_uids)
        ).values_list("study_instance_uid", "patient__patient_id")
    )
    missing = [u for u in dict.fromkeys(body.study_instance_uids) if u not in found]
    pacs = find_by_uid(key.organisation, missing, Actor(api_key=key, request=request)) if missing else None
    if pacs is not None and len(pacs.selections) != len(missing):
        raise HttpError(
            404, "One or more of these studies are not held for this organisation nor in its PACS."
        )
    pids = set(found.values()) | {p.study.patient_id for p in (pacs.selections if pacs else [])}
    if pids != {body.patient_id}:
        raise ShareError("mixed_patients", "The studies do not all belong to this patient.", "patient_id")
    ids = list(
        Study.objects.filter(organisation=key.organisation, study_instance_uid__in=found).values_list(
            "pk", flat=True
        )
    )
    return ids, pacs.selections if pacs else ()


def _created_out(request: HttpRequest, new: NewShare, warnings: list[str]) -> ShareCreatedOut:
    share = new.share
    return ShareCreatedOut(
        id=share.pk,
        status=share.status,
        expires_at=share.expires_at,
        url=share_url(new.code) if share.delivery == Share.Delivery.URL else None,
        letter_url=(
            request.build_absolute_uri(f"/api/v1/shares/{share.pk}/letter")
            if share.delivery == Share.Delivery.LETTER
            else None
        ),
        warnings=warnings,
    )


@shares_router.post(
    "/shares",
    response={201: ShareCreatedOut, 400: Error, 401: Error, 404: Error, 422: Error, 429: Error},
    operation_id="create_share",
    summary="Share one patient's studies (the PACS button)",
)
def create_share_endpoint(request: HttpRequest, body: ShareIn) -> Status[ShareCreatedOut]:
    """Calls the same service as the portal's share dialog. Studies are found by Study Instance UID within the
    key's organisation, or else in its PACS nodes (then the share starts ``retrieving``), and must belong to
    ``patient_id``."""
    key = _key(request)
    ids, pacs = _share_studies(request, key, body)
    with translation.override("en"):
        new = create_share(
            key.organisation,
            ids,
            recipient_type=body.recipient.type,
            phone=body.recipient.phone,
            email=body.recipient.email,
            delivery=body.delivery,
            language=body.language,
            consent_confirmed=body.consent_confirmed,
            reason=body.reason,
            birth_date=body.birth_date,
            api_key=key,
            pacs=pacs,
            request=request,
        )
        warnings = [str(w) for w in new.warnings]
    return Status(201, _created_out(request, new, warnings))


def _share(key: ApiKey, share_id: int) -> Share:
    share = Share.objects.filter(pk=share_id, organisation=key.organisation).first()
    if share is None:
        raise HttpError(404, "No such share in this organisation.")
    return share


def _notification_out(n: Notification) -> NotificationOut:
    return NotificationOut(state=n.state, attempts=n.attempts, error=n.last_error, sent_at=n.sent_at)


def _share_out(share: Share) -> ShareOut:
    total, prepared = preparation_progress(share)
    retrieved, expected = retrieval_progress(share)
    notification = link_notification(share)
    return ShareOut(
        id=share.pk,
        status=share.status,
        status_reason=share.status_reason,
        recipient_type=share.recipient_type,
        delivery=share.delivery,
        created_at=share.created_at,
        expires_at=share.expires_at,
        ready_at=share.ready_at,
        study_instance_uids=list(share.share_studies.values_list("study_instance_uid", flat=True)),
        instances=total,
        instances_prepared=prepared,
        instances_retrieved=retrieved,
        instances_expected=expected,
        locked=share.is_locked(),
        notification=_notification_out(notification) if notification else None,
    )


@shares_router.get(
    "/shares/{share_id}",
    response={200: ShareOut, 401: Error, 404: Error, 422: Error, 429: Error},
    operation_id="get_share",
    summary="A share's status and preparation progress",
)
def get_share(request: HttpRequest, share_id: int) -> ShareOut:
    key = _key(request)
    share = _share(key, share_id)
    record(
        Action.API_SHARE_VIEW,
        request=request,
        api_key=key,
        patient=share.patient_id,
        study_uids=list(share.share_studies.values_list("study_instance_uid", flat=True)),
        detail={"share": share.pk},
    )
    return _share_out(share)


@shares_router.post(
    "/shares/{share_id}/revoke",
    response={200: ShareOut, 401: Error, 404: Error, 409: Error, 422: Error, 429: Error},
    operation_id="revoke_share",
    summary="End a share now; its link stops working at once",
)
def revoke_share(request: HttpRequest, share_id: int) -> ShareOut:
    key = _key(request)
    share = revoke(_share(key, share_id), Actor(api_key=key, request=request))
    return _share_out(share)


@shares_router.post(
    "/shares/{share_id}/resend",
    response={202: ResendOut, 400: Error, 401: Error, 404: Error, 409: Error, 422: Error, 429: Error},
    operation_id="resend_share",
    summary="Send the e-mail with the link again (optionally to a corrected address)",
)
def resend_share(request: HttpRequest, share_id: int, body: ResendIn | None = None) -> Status[ResendOut]:
    key = _key(request)
    notification = resend(
        _share(key, share_id), Actor(api_key=key, request=request), email=body.email if body else ""
    )
    return Status(202, ResendOut(id=share_id, notification=_notification_out(notification)))


@shares_router.get(
    "/shares/{share_id}/letter",
    response={401: Error, 404: Error, 409: Error, 422: Error, 429: Error},
    operation_id="share_letter",
    summary="The letter with the link and its QR code, as PDF (made on request, never stored)",
    openapi_extra={
        "responses": {
            200: {
                "description": "The letter",
                "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
            }
        }
    },
)
def share_letter(request: HttpRequest, share_id: int) -> HttpResponse:
    key = _key(request)
    share = _share(key, share_id)
    return letter_response(share, Actor(api_key=key, request=request))
