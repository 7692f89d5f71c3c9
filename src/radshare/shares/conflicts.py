"""Deciding a correction from the PACS (docs/architecture.md "Corrections from the PACS").

``studies`` records the conflict and moves the study; this module, above both studies and shares, adds what a move
means for shares: every live share of the study is revoked (it was made for the old patient), its sender is told
(``signals.share_revoked_by_correction``, which delivery turns into a notice), and the decision is audited. All of
it is one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from radshare.audit.actions import Action
from radshare.audit.services import record
from radshare.organisations.models import Organisation
from radshare.shares import signals
from radshare.shares.models import Share, ShareStudy
from radshare.shares.services import Actor, ShareConflictError, revoke
from radshare.studies import conflicts
from radshare.studies.models import Study, StudyConflict


def live_shares_of(study: Study) -> list[Share]:
    """The shares a move of ``study`` revokes."""
    return list(
        Share.objects.live()
        .filter(organisation_id=study.organisation_id, share_studies__study=study)
        .distinct()
    )


@dataclass(frozen=True)
class Accepted:
    move: conflicts.Move
    revoked: list[int]  # the ids of the shares revoked


def accept(organisation: Organisation, conflict_pk: int, actor: Actor) -> Accepted:
    """The study moves to the conflict's new patient and every live share of it is revoked, its sender told.
    Raises ``studies.conflicts.ConflictClosedError`` when the conflict was decided meanwhile (nothing changes then)."""
    with transaction.atomic():
        move = conflicts.move_study(organisation, conflict_pk, actor.user)
        revoked = []
        for share in live_shares_of(move.study):
            try:
                share = revoke(share, actor)
            except ShareConflictError:  # ended meanwhile
                continue
            signals.share_revoked_by_correction.send(sender=Share, share=share)
            revoked.append(share.pk)
        # The study now belongs to another patient: the revoked shares (of the old one) let go of it and its
        # retention starts afresh, so it is not destroyed as "once shared" (docs/architecture.md "Destruction").
        ShareStudy.objects.filter(study=move.study).exclude(share__in=Share.objects.live()).update(study=None)
        Study.objects.filter(pk=move.study.pk).update(last_instance_at=timezone.now())
        record(
            Action.PORTAL_CONFLICT_ACCEPT,
            request=actor.request,
            user=actor.user,
            organisation=organisation,
            patient=move.to_patient.pk,
            study_uids=[move.study.study_instance_uid],
            detail={
                "conflict": move.conflict.pk,
                "study": move.study.pk,
                "from_patient": move.from_patient_pk,
                "to_patient": move.to_patient.pk,
                "patient_created": move.patient_created,
                "shares_revoked": revoked,
            },
        )
    return Accepted(move, revoked)


def dismiss(organisation: Organisation, conflict_pk: int, actor: Actor) -> StudyConflict:
    """Close the conflict; the study, its patient and its shares stay as they are."""
    with transaction.atomic():
        conflict = conflicts.dismiss(organisation, conflict_pk, actor.user)
        study = Study.objects.get(pk=conflict.study_id)
        record(
            Action.PORTAL_CONFLICT_DISMISS,
            request=actor.request,
            user=actor.user,
            organisation=organisation,
            patient=study.patient_id,
            study_uids=[study.study_instance_uid],
            detail={"conflict": conflict.pk, "study": study.pk, "refused": conflict.refused},
        )
    return conflict
