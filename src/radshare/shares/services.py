"""Creating and preparing shares: the rules the share dialog and the API both call (docs/requirements.md S2, S3).

``create_share`` checks everything a sender can get wrong (one patient, consent, contact details, a missing birth
date) and raises ``ShareError`` with a code and a message in the user's language; nothing is stored then. A new
share starts ``preparing``; ``prepare_share`` (a task, queued on commit) makes it ``ready`` as soon as every
instance is rendered, which for studies already here takes seconds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from radshare.audit.actions import Action
from radshare.audit.services import Outcome, record
from radshare.core.dates import validate_birth_date
from radshare.core.tasks import enqueue_on_commit
from radshare.core.usage import Usage, count, observe
from radshare.imaging.models import InstanceRender
from radshare.imaging.services import renders_done, renders_postponed
from radshare.organisations.models import ApiKey, Organisation, PacsNode, Sender
from radshare.pacs.client import PacsStudy
from radshare.shares import codes, signals
from radshare.shares.models import Share, ShareStudy
from radshare.shares.phones import Phone, PhoneError, normalize_phone
from radshare.studies.models import Patient, Study
from radshare.studies.services import PLACEHOLDER_BIRTH_DATES


class ShareError(Exception):
    """Why a share cannot be made. ``code`` is stable (API), ``message`` is for people, ``field`` names the input."""

    def __init__(self, code: str, message: str | Promise, field: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.message = message
        self.field = field


class ShareConflictError(ShareError):
    """The action does not fit the share's state (ended, not locked, ...): HTTP 409 in the API."""


@dataclass(frozen=True)
class PacsSelection:
    """A study found in a PACS (by C-FIND or QIDO-RS) that the share will retrieve from ``node``."""

    node: PacsNode
    study: PacsStudy


@dataclass(frozen=True)
class NewShare:
    share: Share
    code: str  # in clear: shown or sent once, never stored
    warnings: tuple[str | Promise, ...] = ()


def needs_birth_date(study: Study) -> bool:
    """The recipient must type the patient's birth date, so a missing or placeholder one must be confirmed."""
    return patient_needs_birth_date(study.patient)


def patient_needs_birth_date(patient: Patient) -> bool:
    birth = patient.patient_birth_date
    return birth is None or birth in PLACEHOLDER_BIRTH_DATES


MIXED = _("The selected studies belong to more than one patient. A share holds the studies of one patient.")


def _pacs_patient(organisation: Organisation, studies: list[Study], pacs: Sequence[PacsSelection]) -> Patient:
    """The one patient of a share that holds studies still in the PACS (matched by patient id and issuer)."""
    keys = {(p.study.patient_id, p.study.issuer) for p in pacs}
    if studies:
        patient = studies[0].patient
        if any(
            pid != patient.patient_id or issuer not in ("", patient.issuer_of_patient_id)
            for pid, issuer in keys
        ):
            raise ShareError("mixed_patients", MIXED, "studies")
        return patient
    if len({pid for pid, _issuer in keys}) > 1 or len({i for _pid, i in keys} - {""}) > 1:
        raise ShareError("mixed_patients", MIXED, "studies")
    first = pacs[0].study
    patient, _created = Patient.objects.get_or_create(
        organisation=organisation,
        issuer_of_patient_id=next((i for _pid, i in keys if i), ""),
        patient_id=first.patient_id,
        defaults={"patient_name": first.patient_name, "patient_birth_date": first.patient_birth_date},
    )
    return patient


def _studies(
    organisation: Organisation, study_ids: Sequence[int], pacs: Sequence[PacsSelection]
) -> tuple[list[Study], list[PacsSelection]]:
    if not study_ids:
        if pacs:
            return [], list(pacs)
        raise ShareError("no_studies", _("Select at least one study."), "studies")
    studies = list(
        Study.objects.present()
        .filter(organisation=organisation, pk__in=set(study_ids))
        .select_related("patient")
    )
    if len(studies) != len(set(study_ids)):
        raise ShareError("study_not_found", _("One of the selected studies was not found."), "studies")
    if len({s.patient_id for s in studies}) > 1:
        raise ShareError("mixed_patients", MIXED, "studies")
    here = {s.study_instance_uid for s in studies}
    return studies, [p for p in pacs if p.study.study_instance_uid not in here]  # held here: not retrieved


def _checked_recipient(
    recipient_type: str, consent_confirmed: bool, delivery: str, language: str, email: str, phone: str
) -> tuple[str, Phone]:
    """(the e-mail address to store, "" unless the link goes by e-mail; the phone number), all choices valid."""
    if recipient_type not in Share.RecipientType.values:
        raise ShareError("recipient_invalid", _("Choose who receives the share."), "recipient_type")
    if recipient_type == Share.RecipientType.CARE_PROVIDER and not consent_confirmed:
        raise ShareError(
            "consent_required",
            _("Confirm that the patient consents to sharing with this care provider."),
            "consent_confirmed",
        )
    if delivery not in Share.Delivery.values:
        raise ShareError("delivery_invalid", _("Choose how the link is delivered."), "delivery")
    if language not in Share.Language.values:
        raise ShareError("language_invalid", _("Choose Dutch or English."), "language")
    email = email.strip()
    if delivery == Share.Delivery.EMAIL:
        try:
            validate_email(email)
        except ValidationError:
            raise ShareError("email_invalid", _("Enter a valid e-mail address."), "email") from None
    try:
        number = normalize_phone(phone)
    except PhoneError as exc:
        raise ShareError("phone_invalid", exc.message, "phone") from None
    return (email if delivery == Share.Delivery.EMAIL else ""), number


def _real_birth_date(date: dt.date) -> bool:
    """Can be true (the dialog's field checked this already; the API's input was not) and is no placeholder."""
    try:
        validate_birth_date(date)
    except ValidationError:
        return False
    return date not in PLACEHOLDER_BIRTH_DATES


def _birth_date(patient: Patient, confirmed: dt.date | None) -> dt.date | None:
    if not patient_needs_birth_date(patient):
        return None
    if confirmed is None:
        raise ShareError(
            "birth_date_required",
            _(
                "The patient's date of birth is missing in the images. Enter it: the recipient has to type it."
            ),
            "birth_date",
        )
    if not _real_birth_date(confirmed):
        raise ShareError("birth_date_invalid", _("Enter the patient's real date of birth."), "birth_date")
    return confirmed


def create_share(
    organisation: Organisation,
    study_ids: Sequence[int],
    *,
    recipient_type: str,
    phone: str,
    delivery: str = Share.Delivery.EMAIL,
    email: str = "",
    language: str = Share.Language.NL,
    consent_confirmed: bool = False,
    reason: str = "",
    birth_date: dt.date | None = None,
    notify_on_open: bool = False,
    recipient_name: str = "",
    created_by: Sender | None = None,
    api_key: ApiKey | None = None,
    request: HttpRequest | None = None,
    pacs: Sequence[PacsSelection] = (),
    parent: Share | None = None,
    passed_on_by: str = "",
) -> NewShare:
    """Validate, store the share with its code (hashed, and encrypted for re-sending) and queue its preparation.
    ``pacs`` names studies still in a PACS: the share starts ``retrieving`` and preparation fetches them.
    ``parent``: the share its patient passes on (``shares/onward.py``, which checks who may): it ends no later
    than the parent, and ``passed_on_by`` is the patient's name as they typed it (docs/architecture.md "Onward
    shares")."""
    studies, pacs = _studies(organisation, study_ids, pacs)
    email, number = _checked_recipient(recipient_type, consent_confirmed, delivery, language, email, phone)
    with transaction.atomic():
        patient = _pacs_patient(organisation, studies, pacs) if pacs else studies[0].patient
    confirmed_birth = _birth_date(patient, birth_date)
    code = codes.generate_code()
    now = timezone.now()
    with transaction.atomic():
        share = Share.objects.create(
            organisation=organisation,
            patient=patient,
            status=Share.Status.RETRIEVING if pacs else Share.Status.PREPARING,
            created_by=created_by,
            api_key=api_key,
            recipient_type=recipient_type,
            delivery=delivery,
            language=language,
            email=email,
            phone=number.e164,
            code_hash=codes.code_hash(code),
            code_encrypted=codes.encrypt_code(code),
            consent_confirmed=consent_confirmed,
            confirmed_birth_date=confirmed_birth,
            reason=reason.strip()[:500],
            notify_on_open=notify_on_open and created_by is not None,
            created_at=now,  # validity counts from creation, exactly
            expires_at=min(
                [now + timedelta(days=settings.RADSHARE.share_validity_days)]
                + ([parent.expires_at] if parent is not None else [])
            ),
            parent=parent,
            passed_on_by_encrypted=Share.encrypt_name(passed_on_by) if parent is not None else "",
            # The addressee the letter names (docs/security.md A22): only a share delivered by letter has one.
            recipient_name_encrypted=Share.encrypt_name(
                recipient_name if delivery == Share.Delivery.LETTER else ""
            ),
        )
        _complete_new_share(share, studies, pacs, request)
    return NewShare(share, code, (number.warning,) if number.warning else ())


def _complete_new_share(
    share: Share, studies: list[Study], pacs: list[PacsSelection], request: HttpRequest | None
) -> None:
    """The rest of a new share's transaction: its study rows, its audit entry and its queued preparation."""
    # Locked, the studies cannot start being destroyed now; one that just started is refused (docs/architecture.md
    # "Destruction").
    if Study.objects.select_for_update().filter(
        pk__in=[s.pk for s in studies], destroy_started_at__isnull=False
    ):
        raise ShareError("study_not_found", _("One of the selected studies was not found."), "studies")
    ShareStudy.objects.bulk_create(
        ShareStudy(
            share=share,
            study=s,
            study_instance_uid=s.study_instance_uid,
            number_of_instances=s.number_of_instances,
            size=s.size,
        )
        for s in studies
    )
    ShareStudy.objects.bulk_create(
        ShareStudy(
            share=share,
            study_instance_uid=p.study.study_instance_uid,
            number_of_instances=p.study.number_of_instances or 0,
            pacs_node=p.node,
        )
        for p in pacs
    )
    if share.parent_id is None:  # an onward share's making is recorded as the patient's (shares/onward.py)
        record(
            Action.SHARE_CREATE,
            request=request,
            user=share.created_by,
            api_key=share.api_key,
            organisation=share.organisation,
            patient=share.patient,
            study_uids=[s.study_instance_uid for s in studies] + [p.study.study_instance_uid for p in pacs],
            actor_label="" if share.created_by else (share.api_key.prefix if share.api_key else ""),
            detail={
                "share": share.pk,
                "recipient_type": share.recipient_type,
                "delivery": share.delivery,
                "language": share.language,
                "reason": share.reason,
            },
        )
    count(
        Usage.SHARES_CREATED,
        organisation=share.organisation_id,
        kind=f"{share.delivery}.{share.recipient_type}",
    )
    from radshare.shares.tasks import prepare_share  # late import: tasks import this module

    enqueue_on_commit(prepare_share, share.pk)


def prepare(share_pk: int) -> str:
    """One preparation step; idempotent. Returns the share's status afterwards (``retrieving`` means studies are
    still to come from a PACS: ``retrieve_missing`` fetches them)."""
    with transaction.atomic():
        # The row lock keeps two workers from preparing the same share at once (docs/security.md R4).
        share = Share.objects.select_for_update().filter(pk=share_pk).first()
        if share is None:
            return "missing"
        if (
            share.status == Share.Status.RETRIEVING
            and not share.share_studies.filter(study__isnull=True).exists()
        ):
            share.status = Share.Status.PREPARING
            share.save(update_fields=["status"])
        if share.status != Share.Status.PREPARING:
            return share.status
        studies = [ss.study for ss in share.share_studies.select_related("study") if ss.study is not None]
        if len(studies) != share.share_studies.count():
            share.status, share.status_reason = Share.Status.FAILED, "study_missing"
            share.save(update_fields=["status", "status_reason"])
            return share.status
        if all(renders_done(study) for study in studies):
            share.status, share.ready_at, share.status_reason = Share.Status.READY, timezone.now(), ""
            share.save(update_fields=["status", "ready_at", "status_reason"])
            waited = (share.ready_at - share.created_at).total_seconds()
            observe(Usage.SHARE_PREPARATION, waited, organisation=share.organisation_id)
            # Delivery queues the e-mail in this transaction.
            signals.share_ready.send(sender=Share, share=share)
            record(
                Action.SHARE_READY,
                organisation=share.organisation_id,
                patient=share.patient_id,
                actor_type="system",
                study_uids=[s.study_instance_uid for s in studies],
                detail={"share": share.pk},
            )
        elif share.status_reason != (reason := _waiting_reason(studies)):
            share.status_reason = reason  # shown to the sender while the share waits
            share.save(update_fields=["status_reason"])
        return share.status


def _waiting_reason(studies: list[Study]) -> str:
    """Why a preparing share waits longer than usual: its renders cannot be written now (a full disk); they are
    tried again by themselves (docs/security.md R6, R8)."""
    return "storage_unwritable" if any(renders_postponed(study) for study in studies) else ""


def prepare_waiting(sender: object, study_ids: Iterable[int], **kwargs: object) -> int:
    """Receiver of ``imaging.services.renders_recorded``: shares waiting for these studies are prepared now, so
    one is ready as soon as its last render is (its task's polling, up to a minute apart, stays as the fallback).
    Returns how many became ready."""
    waiting = (
        Share.objects.filter(status=Share.Status.PREPARING, share_studies__study_id__in=list(study_ids))
        .order_by()
        .values_list("pk", flat=True)
        .distinct()
    )
    return sum(prepare(pk) == Share.Status.READY for pk in list(waiting))


def poll_delay(attempt: int) -> timedelta:
    """How long preparation waits before looking again: 2 s, 4 s, 8 s, ... at most a minute."""
    return timedelta(seconds=min(2 * 2 ** min(attempt, 10), 60))


PREPARATION_LIMIT = timedelta(hours=24)


def give_up_if_too_long(share_pk: int) -> bool:
    """A share still not ready a day after creation fails with a reason the sender can read
    (docs/requirements.md S3.1)."""
    cutoff = timezone.now() - PREPARATION_LIMIT
    return bool(
        Share.objects.filter(pk=share_pk, status=Share.Status.PREPARING, created_at__lt=cutoff).update(
            status=Share.Status.FAILED, status_reason="preparation_timeout"
        )
    )


# --- what a sender does with a share afterwards (B5.2, B5.3) ---------------------------------------------------


@dataclass(frozen=True)
class Actor:
    """Who acts: a sender in the portal or an API key; ``request`` gives the audit its address and agent."""

    user: Sender | None = None
    api_key: ApiKey | None = None
    request: HttpRequest | None = None


SYSTEM = Actor()


def audit(
    action: Action, share: Share, actor: Actor, outcome: str = Outcome.SUCCESS, **detail: object
) -> None:
    record(
        action,
        outcome=outcome,
        request=actor.request,
        user=actor.user,
        api_key=actor.api_key,
        actor_type=None if (actor.user or actor.api_key or actor.request) else "system",
        organisation=share.organisation_id,
        patient=share.patient_id,
        study_uids=list(share.share_studies.values_list("study_instance_uid", flat=True)),
        detail={"share": share.pk, **detail},
    )


def _end(share: Share, status: str) -> None:
    """Leave the tombstone of docs/architecture.md: no code, no contact details; what was shared, to whom and
    when stays."""
    now = timezone.now()
    share.status, share.ended_at = status, now
    share.code_hash, share.code_encrypted = None, ""
    share.email, share.phone, share.recipient_name_encrypted = "", "", ""
    share.passed_on_by_encrypted = ""
    share.locked_until = None
    share.save()
    signals.share_ended.send(sender=Share, share=share)


def _destroy_soon() -> None:
    """Shares ended: their studies go now, unless another live share holds them (one task for any number)."""
    from radshare.shares.tasks import destroy_studies  # late import: tasks import this module

    enqueue_on_commit(destroy_studies)


def revoke(share: Share, actor: Actor) -> Share:
    """End a share now (B5.2); the link stops working at once (every recipient request checks the status)."""
    with transaction.atomic():
        share = locked_for_change(share)
        share.revoked_at, share.revoked_by = timezone.now(), actor.user
        _end(share, Share.Status.REVOKED)
        audit(Action.SHARE_REVOKE, share, actor)
        end_onward_shares(share, actor)
        _destroy_soon()
    return share


def end_now(share: Share) -> None:
    """End an onward share at its patient's request (``shares/onward.py``), within the caller's transaction."""
    share.revoked_at = timezone.now()
    _end(share, Share.Status.REVOKED)
    _destroy_soon()


def end_onward_shares(share: Share, actor: Actor) -> list[int]:
    """The shares its patient passed on end with the revoked share, in its transaction (docs/architecture.md
    "Onward shares"). Returns their ids."""
    ended = []
    for onward in Share.objects.select_for_update().filter(parent=share).exclude(status__in=Share.ENDED):
        onward.revoked_at, onward.revoked_by = share.revoked_at, actor.user
        _end(onward, Share.Status.REVOKED)
        audit(Action.SHARE_ONWARD_REVOKED, onward, actor, original=share.pk)
        ended.append(onward.pk)
    return ended


def expire_due(now: dt.datetime | None = None) -> int:
    """End every share whose validity has passed (periodic; requests check ``expires_at`` themselves too)."""
    now = now or timezone.now()
    ended = 0
    due = (
        Share.objects.exclude(status__in=Share.ENDED).filter(expires_at__lte=now).values_list("pk", flat=True)
    )
    for pk in list(due):
        with transaction.atomic():
            share = Share.objects.select_for_update().get(pk=pk)
            if share.has_ended:
                continue
            _end(share, Share.Status.EXPIRED)
            audit(Action.SHARE_EXPIRE, share, SYSTEM)
            ended += 1
    if ended:
        _destroy_soon()
    return ended


def unlock(share: Share, actor: Actor) -> Share:
    """Lift a lockout after wrong dates of birth or SMS codes (docs/architecture.md "Lockouts")."""
    with transaction.atomic():
        share = locked_for_change(share)
        if share.locked_until is None:
            raise ShareConflictError("not_locked", _("This share is not locked."))
        share.locked_until = None
        share.birth_date_failures = share.birth_date_locks = share.sms_code_failures = 0
        share.save(
            update_fields=["locked_until", "birth_date_failures", "birth_date_locks", "sms_code_failures"]
        )
        audit(Action.SHARE_UNLOCK, share, actor)
    return share


def retry_preparation(share: Share, actor: Actor) -> Share:
    """Try a failed preparation again (the studies may have arrived meanwhile)."""
    with transaction.atomic():
        share = locked_for_change(share)
        if share.status != Share.Status.FAILED:
            raise ShareConflictError("not_failed", _("Only a failed share can be prepared again."))
        missing = share.share_studies.filter(study__isnull=True).exists()
        share.status = Share.Status.RETRIEVING if missing else Share.Status.PREPARING
        share.status_reason = ""
        share.save(update_fields=["status", "status_reason"])
        audit(Action.SHARE_RETRY, share, actor)
        from radshare.shares.tasks import prepare_share  # late import: tasks import this module

        enqueue_on_commit(prepare_share, share.pk)
    return share


def mark_opened(share: Share) -> bool:
    """The recipient logged in: ``opened`` the first time, and the sender told if they asked (B6.7)."""
    with transaction.atomic():
        first = Share.objects.filter(
            pk=share.pk, status__in=(Share.Status.READY, Share.Status.NOTIFIED), opened_at__isnull=True
        ).update(status=Share.Status.OPENED, opened_at=timezone.now())
        if first:
            share.refresh_from_db()
            count(Usage.SHARES_OPENED, organisation=share.organisation_id)
            signals.share_opened.send(sender=Share, share=share)
    return bool(first)


def preparation_progress(share: Share) -> tuple[int, int]:
    """(instances in the share, instances whose renders are done or known not to be images)."""
    renders = InstanceRender.objects.filter(instance__series__study__share_studies__share=share)
    total = renders.count()
    waiting = renders.filter(
        status__in=(InstanceRender.Status.PENDING, InstanceRender.Status.RENDERING)
    ).count()
    return total, total - waiting


def current_code(share: Share) -> str:
    """The code of a live share, from its encrypted copy (to show the link again or print the letter)."""
    if share.has_ended:
        raise ShareConflictError("share_ended", _("This share has ended."))
    code = codes.decrypt_code(share.code_encrypted)
    if code is None:
        raise ShareConflictError("code_unavailable", _("The link of this share can no longer be shown."))
    return code


def mark_notified(share_pk: int) -> bool:
    """The e-mail with the link went out: a ``ready`` share is now ``notified`` (later states stay)."""
    return bool(
        Share.objects.filter(pk=share_pk, status=Share.Status.READY).update(status=Share.Status.NOTIFIED)
    )


def locked_for_change(share: Share) -> Share:
    """The share, locked for this transaction; refused when it has ended."""
    locked = Share.objects.select_for_update().get(pk=share.pk)
    if locked.has_ended:
        raise ShareConflictError("share_ended", _("This share has ended."))
    return locked


def mark_downloaded(share: Share) -> bool:
    """The first ZIP download: the share's status says so (the sender sees it)."""
    return bool(
        Share.objects.filter(
            pk=share.pk, status__in=(Share.Status.READY, Share.Status.NOTIFIED, Share.Status.OPENED)
        ).update(status=Share.Status.DOWNLOADED)
    )
