"""Onward sharing (docs/architecture.md "Onward shares"): the patient of a share passes it on to a care provider.

The onward share is a share of its own, made by ``services.create_share`` (the one door for making a share): its
own code, the provider's phone for the SMS code, the patient's date of birth as the second factor, at most the
original's studies and its end. Who may pass on is decided here and nowhere else:

* the organisation allows it (``Organisation.onward_sharing``: off, or patients only);
* the share's recipient is the patient (not a care provider), and the share is no onward share itself;
* fewer than ``Share.ONWARD_MAX`` onward shares were made from it, ended ones included.

A refusal changes nothing and is audited (``share.onward.refused``); the recipient's pages show no action then.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum

from django.db import transaction
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from radshare.audit.actions import Action
from radshare.audit.services import ActorType, Outcome, record
from radshare.organisations.models import Organisation
from radshare.shares import services
from radshare.shares.models import Share, ShareStudy
from radshare.shares.services import NewShare, ShareError


class Refused(StrEnum):
    """Why a share cannot be passed on (stable codes for the audit trail and the API of this module)."""

    SETTING_OFF = "setting_off"
    NOT_PATIENT = "not_patient"
    ONWARD = "onward_share"
    NOT_LIVE = "not_live"
    LIMIT = "limit"


def refusal(share: Share) -> Refused | None:
    """Why ``share``'s recipient may not pass it on now, or None when they may."""
    if share.organisation.onward_sharing != Organisation.OnwardSharing.PATIENTS:
        return Refused.SETTING_OFF
    if share.recipient_type != Share.RecipientType.PATIENT:
        return Refused.NOT_PATIENT
    if share.is_onward:
        return Refused.ONWARD
    if not share.is_openable():
        return Refused.NOT_LIVE
    if Share.objects.filter(parent=share).count() >= Share.ONWARD_MAX:
        return Refused.LIMIT
    return None


def offered(share: Share) -> bool:
    """The action may be shown at all: the limit reached still shows the list, with a line why no more."""
    return refusal(share) in (None, Refused.LIMIT)


def _record(
    action: Action,
    share: Share,
    request: HttpRequest,
    *,
    detail: dict[str, object],
    outcome: str = Outcome.SUCCESS,
    study_uids: Iterable[str] = (),
) -> None:
    """A step of onward sharing the patient of ``share`` took: the recipient as actor, known by their share's id,
    on behalf of the sender who shared. No names or contact details in ``detail``."""
    record(
        action,
        outcome=outcome,
        request=request,
        actor_type=ActorType.RECIPIENT,
        actor_label=f"share {share.pk}",
        organisation=share.organisation_id,
        patient=share.patient_id,
        on_behalf_of=share.created_by_id,
        study_uids=study_uids,
        detail=detail,
    )


def record_refusal(request: HttpRequest, share: Share, why: Refused) -> None:
    _record(
        Action.SHARE_ONWARD_REFUSED,
        share,
        request,
        outcome=Outcome.DENIED,
        detail={"share": share.pk, "reason": str(why)},
    )


def onward_shares(share: Share) -> list[Share]:
    """The shares passed on from ``share``, newest first (scoped to it)."""
    return list(Share.objects.filter(parent=share).order_by("-created_at", "-pk"))


class RefusedError(ShareError):
    """Passing on is not allowed for this share (see ``refusal``)."""

    def __init__(self, why: Refused) -> None:
        super().__init__(str(why), _("This share cannot be passed on."))
        self.why = why


def pass_on(
    request: HttpRequest,
    share: Share,
    *,
    study_ids: Sequence[int],
    email: str,
    phone: str,
    name: str,
    note: str,
    consent: bool,
    language: str,
) -> NewShare:
    """Make the onward share of ``share`` for a care provider; its e-mail goes out once it is ready, through the
    outbox, like any share's. Raises ``RefusedError`` (audited) or ``ShareError`` (the input); nothing is stored
    then."""
    with transaction.atomic():
        # The row lock makes the count of onward shares exact when the patient submits twice at once.
        locked = Share.objects.select_for_update().select_related("organisation").get(pk=share.pk)
        why = refusal(locked)
        if why is not None:
            record_refusal(request, locked, why)
            raise RefusedError(why)
        if not consent:
            raise ShareError(
                "consent_required", _("Confirm that you choose to share these images."), "consent"
            )
        if not name.strip():
            raise ShareError("name_required", _("Enter your name."), "name")
        held = set(
            ShareStudy.objects.filter(share=locked, study__isnull=False).values_list("study_id", flat=True)
        )
        chosen = set(study_ids)
        if not chosen:
            raise ShareError("no_studies", _("Select at least one study."), "studies")
        if not chosen <= held:
            raise ShareError("study_not_found", _("One of the selected studies was not found."), "studies")
        new = services.create_share(
            locked.organisation,
            sorted(chosen),
            recipient_type=Share.RecipientType.CARE_PROVIDER,
            phone=phone,
            delivery=Share.Delivery.EMAIL,
            email=email,
            language=language if language in Share.Language.values else locked.language,
            consent_confirmed=True,
            reason=note,
            birth_date=locked.confirmed_birth_date,
            created_by=locked.created_by,
            request=request,
            parent=locked,
            passed_on_by=name,
        )
        _record(  # the patient passed their share on, with their consent
            Action.SHARE_ONWARD_CREATE,
            locked,
            request,
            study_uids=new.share.share_studies.values_list("study_instance_uid", flat=True),
            detail={"share": new.share.pk, "original": locked.pk, "consent": new.share.consent_confirmed},
        )
        return new


def end(request: HttpRequest, share: Share, onward_pk: int) -> Share | None:
    """The patient ends one of their onward shares at once. None: no such onward share of ``share`` (a 404)."""
    with transaction.atomic():
        onward = Share.objects.select_for_update().filter(parent=share, pk=onward_pk).first()
        if onward is None:
            return None
        if onward.has_ended:
            return onward
        services.end_now(onward)
        _record(
            Action.SHARE_ONWARD_END,
            share,
            request,
            study_uids=onward.share_studies.values_list("study_instance_uid", flat=True),
            detail={"share": onward.pk, "original": share.pk},
        )
    return onward
