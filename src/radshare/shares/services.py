"""Creating and preparing shares: the rules the share dialog and the API both call (docs/requirements.md S2, S3).

``create_share`` checks everything a sender can get wrong (one patient, consent, contact details, a missing birth
date) and raises ``ShareError`` with a code and a message in the user's language; nothing is stored then. A new
share starts ``preparing``; ``prepare_share`` (a task, queued on commit) makes it ``ready`` as soon as every
instance is rendered, which for studies already here takes seconds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from radshare.audit.services import Outcome, record
from radshare.core.tasks import enqueue_on_commit
from radshare.core.workers import current_worker_id
from radshare.imaging.models import InstanceRender
from radshare.imaging.services import renders_done, request_render
from radshare.organisations.models import ApiKey, Organisation, PacsNode, Sender
from radshare.pacs.client import PacsError, PacsStudy, retrieve_study
from radshare.shares import codes, signals
from radshare.shares.models import Share, ShareStudy
from radshare.shares.phones import PhoneError, normalize_phone
from radshare.studies.models import Patient, Study
from radshare.studies.services import PLACEHOLDER_BIRTH_DATES

MAX_BIRTH_YEARS = 130


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


def _studies(organisation: Organisation, study_ids: Sequence[int], allow_none: bool = False) -> list[Study]:
    if not study_ids:
        if allow_none:
            return []
        raise ShareError("no_studies", _("Select at least one study."), "studies")
    studies = list(
        Study.objects.filter(organisation=organisation, pk__in=set(study_ids)).select_related("patient")
    )
    if len(studies) != len(set(study_ids)):
        raise ShareError("study_not_found", _("One of the selected studies was not found."), "studies")
    if len({s.patient_id for s in studies}) > 1:
        raise ShareError("mixed_patients", MIXED, "studies")
    return studies


def _birth_date(patient: Patient, confirmed: dt.date | None) -> dt.date | None:
    if not patient_needs_birth_date(patient):
        return None
    today = timezone.localdate()
    if confirmed is None:
        raise ShareError(
            "birth_date_required",
            _(
                "The patient's date of birth is missing in the images. Enter it: the recipient has to type it."
            ),
            "birth_date",
        )
    if (
        confirmed > today
        or confirmed.year < today.year - MAX_BIRTH_YEARS
        or confirmed in PLACEHOLDER_BIRTH_DATES
    ):
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
    created_by: Sender | None = None,
    api_key: ApiKey | None = None,
    request: HttpRequest | None = None,
    pacs: Sequence[PacsSelection] = (),
) -> NewShare:
    """Validate, store the share with its code (hashed, and encrypted for re-sending) and queue its preparation.
    ``pacs`` names studies still in a PACS: the share starts ``retrieving`` and preparation fetches them."""
    studies = _studies(organisation, study_ids, allow_none=bool(pacs))
    local_uids = {s.study_instance_uid for s in studies}
    pacs = [p for p in pacs if p.study.study_instance_uid not in local_uids]
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
            email=email if delivery == Share.Delivery.EMAIL else "",
            phone=number.e164,
            code_hash=codes.code_hash(code),
            code_encrypted=codes.encrypt_code(code),
            consent_confirmed=consent_confirmed,
            confirmed_birth_date=confirmed_birth,
            reason=reason.strip()[:500],
            notify_on_open=notify_on_open and created_by is not None,
            created_at=now,  # validity counts from creation, exactly
            expires_at=now + timedelta(days=settings.RADSHARE.share_validity_days),
        )
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
        record(
            "share.create",
            request=request,
            user=created_by,
            api_key=api_key,
            organisation=organisation,
            patient=patient,
            study_uids=[s.study_instance_uid for s in studies] + [p.study.study_instance_uid for p in pacs],
            actor_label="" if created_by else (api_key.prefix if api_key else ""),
            detail={
                "share": share.pk,
                "recipient_type": recipient_type,
                "delivery": delivery,
                "language": language,
                "reason": share.reason,
            },
        )
        from radshare.shares.tasks import prepare_share  # late import: tasks import this module

        enqueue_on_commit(prepare_share, share.pk)
    return NewShare(share, code, (number.warning,) if number.warning else ())


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
            share.status, share.ready_at = Share.Status.READY, timezone.now()
            share.save(update_fields=["status", "ready_at"])
            signals.share_ready.send(
                sender=Share, share=share
            )  # delivery queues the e-mail in this transaction
            record(
                "share.ready",
                organisation=share.organisation_id,
                patient=share.patient_id,
                actor_type="system",
                study_uids=[s.study_instance_uid for s in studies],
                detail={"share": share.pk},
            )
        return share.status


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


RETRIEVE_CLAIM = timedelta(minutes=15)


def _fail_retrieve(share: Share, reason: str) -> str:
    Share.objects.filter(pk=share.pk, status=Share.Status.RETRIEVING).update(
        status=Share.Status.FAILED, status_reason=reason[:200]
    )
    return Share.Status.FAILED


def retrieve_missing(share_pk: int) -> str:
    """Fetch the share's studies that are still in a PACS (S1.2/S3.1), one after the other; each counts as done
    only when the whole study arrived, so nothing half-retrieved reaches a recipient. Then prepare as usual."""
    share = Share.objects.select_related("organisation", "created_by", "api_key").filter(pk=share_pk).first()
    if share is None or share.status != Share.Status.RETRIEVING:
        return share.status if share else "missing"
    actor = Actor(user=share.created_by, api_key=share.api_key)
    for ss in share.share_studies.filter(study__isnull=True).select_related("pacs_node"):
        node = ss.pacs_node
        if node is None or not node.is_active:
            return _fail_retrieve(share, "pacs_node_missing")
        now = timezone.now()
        worker = current_worker_id()
        # A claim names its worker and is given back when that worker stops sending heartbeats (R4); only a claim
        # made outside a worker is judged by its age. Our own claim is a leftover of a run that ended early (the
        # database was away): a worker runs one task at a time.
        unclaimed = Q(retrieve_claimed_at__isnull=True) | Q(
            retrieve_claimed_by="", retrieve_claimed_at__lt=now - RETRIEVE_CLAIM
        )
        if worker:
            unclaimed |= Q(retrieve_claimed_by=worker)
        claimed = (
            ShareStudy.objects.filter(pk=ss.pk)
            .filter(unclaimed)
            .update(retrieve_claimed_at=now, retrieve_claimed_by=worker)
        )
        if not claimed:
            return Share.Status.RETRIEVING  # another worker is on it

        def progress(received: int, expected: int | None, pk: int = ss.pk) -> None:
            ShareStudy.objects.filter(pk=pk).update(retrieve_received=received, retrieve_expected=expected)

        try:
            result = retrieve_study(node, ss.study_instance_uid, on_progress=progress)
            study = Study.objects.filter(
                organisation=share.organisation, study_instance_uid=ss.study_instance_uid
            ).first()
            if study is None:
                raise PacsError("the PACS sent no images of this study", temporary=False)
        except PacsError as exc:
            ShareStudy.objects.filter(pk=ss.pk).update(retrieve_claimed_at=None, retrieve_claimed_by="")
            audit("pacs.retrieve", share, actor, Outcome.FAILURE, node=node.pk, reason=exc.reason)
            return _fail_retrieve(share, exc.reason)
        except BaseException:
            # Nothing waits on a claim whose worker lives on but no longer retrieves (the task is retried).
            with contextlib.suppress(DatabaseError):
                ShareStudy.objects.filter(pk=ss.pk).update(retrieve_claimed_at=None, retrieve_claimed_by="")
            raise
        ShareStudy.objects.filter(pk=ss.pk).update(
            study=study,
            number_of_instances=study.number_of_instances,
            size=study.size,
            retrieve_received=result.received + result.already_here,
            retrieve_expected=result.expected,
            retrieve_claimed_at=None,
            retrieve_claimed_by="",
        )
        audit(
            "pacs.retrieve",
            share,
            actor,
            node=node.pk,
            received=result.received,
            already_here=result.already_here,
        )
    request_render()
    return prepare(share_pk)


def release_retrieves_of(sender: object, worker_ids: Sequence[str], **kwargs: object) -> int:
    """Receiver of ``core.workers.worker_died``: retrieves those workers held may be taken up again. The
    preparation task they were running goes back to the queue with them and takes it up."""
    return ShareStudy.objects.filter(retrieve_claimed_by__in=worker_ids).update(
        retrieve_claimed_at=None, retrieve_claimed_by=""
    )


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


def audit(action: str, share: Share, actor: Actor, outcome: str = Outcome.SUCCESS, **detail: object) -> None:
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
    share.email, share.phone = "", ""
    share.locked_until = None
    share.save()
    signals.share_ended.send(sender=Share, share=share)


def revoke(share: Share, actor: Actor) -> Share:
    """End a share now (B5.2); the link stops working at once (every recipient request checks the status)."""
    with transaction.atomic():
        share = locked_for_change(share)
        share.revoked_at, share.revoked_by = timezone.now(), actor.user
        _end(share, Share.Status.REVOKED)
        audit("share.revoke", share, actor)
    return share


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
            audit("share.expire", share, SYSTEM)
            ended += 1
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
        audit("share.unlock", share, actor)
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
        audit("share.retry", share, actor)
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


def retrieval_progress(share: Share) -> tuple[int, int | None]:
    """(instances received, instances expected, when the PACS said) of the studies fetched from a PACS."""
    rows = list(
        share.share_studies.filter(pacs_node__isnull=False).values_list(
            "retrieve_received", "retrieve_expected"
        )
    )
    received = sum(r for r, _e in rows)
    expected = None if any(e is None for _r, e in rows) else sum(e or 0 for _r, e in rows)
    return received, expected
