"""Corrections from the PACS (IHE Patient Information Reconciliation, docs/architecture.md "Corrections from the
PACS"): a study sent again under another patient is refused (0xA900) and recorded here as a ``StudyConflict``; an
organisation admin accepts the correction (the study moves to the new patient) or dismisses it.

This module owns the rows and the move. What a move means for shares (they are revoked, their senders told) is
decided above, in ``shares/conflicts.py``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet
from django.db.models.functions import Now
from django.utils import timezone

from radshare.audit.actions import Action
from radshare.audit.services import ActorType, Outcome, record
from radshare.organisations.models import Organisation, PacsNode, Sender
from radshare.studies.models import Patient, Study, StudyConflict

OPEN = StudyConflict.State.OPEN

# The Patient fields a conflict keeps of the new patient (``new_patient``): what the index would store.
NEW_PATIENT_FIELDS = ("patient_name", "patient_birth_date", "patient_sex", "bsn_last3", "bsn_hash")


class ConflictClosedError(Exception):
    """The conflict was decided meanwhile (or its study is being destroyed): nothing was changed."""


@dataclass(frozen=True)
class Refused:
    """An instance refused because its study is filed under another patient (``studies.services._index``)."""

    study_pk: int
    study_uid: str
    filed_under: int  # the patient the study is filed under now
    issuer: str  # Issuer of Patient ID and Patient ID the instance came with
    patient_id: str
    new_patient: dict[str, Any]  # ``studies.services._patient_fields`` of the instance


def record_conflict(organisation: Organisation, refused: Refused, node: PacsNode | None) -> None:
    """Count a refused instance on the open conflict of its study and new patient, opening (and auditing) the
    conflict the first time. One UPDATE when it is open already; call outside the refused instance's transaction
    (that one rolls back), so that the count stays."""
    seen: dict[str, Any] = {"refused": F("refused") + 1, "last_seen_at": Now()}
    if node is not None:
        seen["source_node"] = node
    open_row = StudyConflict.objects.filter(
        study_id=refused.study_pk,
        new_issuer_of_patient_id=refused.issuer,
        new_patient_id=refused.patient_id,
        state=OPEN,
    )
    with transaction.atomic():
        if open_row.update(**seen):
            return
        old = Patient.objects.filter(pk=refused.filed_under).values_list("issuer_of_patient_id", "patient_id")
        old_issuer, old_id = old.first() or ("", "")
        try:
            with transaction.atomic():
                conflict = StudyConflict.objects.create(
                    organisation=organisation,
                    study_id=refused.study_pk,
                    old_patient_id=old_id,
                    old_issuer_of_patient_id=old_issuer,
                    new_patient_id=refused.patient_id,
                    new_issuer_of_patient_id=refused.issuer,
                    new_patient=_as_json(refused.new_patient),
                    source_node=node,
                    refused=1,
                )
        except IntegrityError:  # another association opened it first
            open_row.update(**seen)
            return
        record(
            Action.DICOM_STORE_PATIENT_CONFLICT,
            outcome=Outcome.FAILURE,
            node=node,
            organisation=organisation,
            actor_type=None if node else ActorType.SYSTEM,
            patient=refused.filed_under,
            study_uids=[refused.study_uid],
            detail={
                "conflict": conflict.pk,
                "study": refused.study_pk,
                "reason": "study already filed under another patient; refused",
            },
        )


def _as_json(fields: dict[str, Any]) -> dict[str, Any]:
    birth = fields.get("patient_birth_date")
    return {
        **{name: str(fields.get(name) or "") for name in NEW_PATIENT_FIELDS},
        "patient_birth_date": birth.isoformat() if isinstance(birth, dt.date) else None,
    }


def new_patient_fields(conflict: StudyConflict) -> dict[str, Any]:
    """The new patient's attributes as Patient fields (the birth date as a date)."""
    stored = conflict.new_patient or {}
    fields: dict[str, Any] = {name: stored.get(name) or "" for name in NEW_PATIENT_FIELDS}
    try:
        fields["patient_birth_date"] = dt.date.fromisoformat(stored.get("patient_birth_date") or "")
    except (TypeError, ValueError):
        fields["patient_birth_date"] = None
    return fields


def open_conflicts(organisation: Organisation) -> QuerySet[StudyConflict]:
    """The organisation's open conflicts (of studies not being destroyed), the latest seen first."""
    return (
        StudyConflict.objects.filter(
            organisation=organisation, state=OPEN, study__destroy_started_at__isnull=True
        )
        .select_related("study__patient", "source_node")
        .order_by("-last_seen_at", "-pk")
    )


def open_conflict_count(organisation_id: int | None) -> int:
    if organisation_id is None:
        return 0
    return StudyConflict.objects.filter(
        organisation_id=organisation_id, state=OPEN, study__destroy_started_at__isnull=True
    ).count()


def _locked_open(organisation: Organisation, conflict_pk: int) -> StudyConflict:
    """The open conflict, locked for this transaction, with its study locked too."""
    conflict = (
        StudyConflict.objects.select_for_update().filter(organisation=organisation, pk=conflict_pk).first()
    )
    if conflict is None or conflict.state != OPEN:
        raise ConflictClosedError
    study = Study.objects.select_for_update().filter(pk=conflict.study_id, destroy_started_at__isnull=True)
    if not list(study.values_list("pk", flat=True)):
        raise ConflictClosedError
    return conflict


def _close(conflict: StudyConflict, state: str, user: Sender | None) -> None:
    conflict.state, conflict.decided_at, conflict.decided_by = state, timezone.now(), user
    conflict.save(update_fields=["state", "decided_at", "decided_by"])


@dataclass(frozen=True)
class Move:
    conflict: StudyConflict
    study: Study
    from_patient_pk: int
    to_patient: Patient
    patient_created: bool


def move_study(organisation: Organisation, conflict_pk: int, user: Sender | None) -> Move:
    """Accept a correction: the study now belongs to the conflict's new patient, made from ``new_patient`` when
    the organisation has no patient with that key yet. The old patient row stays, even when it has no study left.
    Raises ``ConflictClosedError`` when the conflict is no longer open. The caller's transaction holds the rest
    of the decision (shares, audit)."""
    with transaction.atomic():
        conflict = _locked_open(organisation, conflict_pk)
        study = Study.objects.get(pk=conflict.study_id)
        patient, created = Patient.objects.get_or_create(
            organisation=organisation,
            issuer_of_patient_id=conflict.new_issuer_of_patient_id,
            patient_id=conflict.new_patient_id,
            defaults=new_patient_fields(conflict),
        )
        from_patient_pk = study.patient_id
        study.patient = patient
        study.save(update_fields=["patient", "updated_at"])
        _close(conflict, StudyConflict.State.ACCEPTED, user)
        # Other open conflicts of this study now differ from the patient it is filed under.
        StudyConflict.objects.filter(study=study, state=OPEN).update(
            old_patient_id=patient.patient_id, old_issuer_of_patient_id=patient.issuer_of_patient_id
        )
    return Move(conflict, study, from_patient_pk, patient, created)


def dismiss(organisation: Organisation, conflict_pk: int, user: Sender | None) -> StudyConflict:
    """Close the conflict and change nothing else: the study stays where it is, and instances sent again under the
    other patient are refused again (and counted on a new conflict)."""
    with transaction.atomic():
        conflict = _locked_open(organisation, conflict_pk)
        _close(conflict, StudyConflict.State.DISMISSED, user)
    return conflict
