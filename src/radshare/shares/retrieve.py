"""Studies a share takes from a PACS (docs/requirements.md S1.2, S3.1): each is claimed by one worker, fetched
through ``pacs.client`` and counts only once it arrived whole; then the share is prepared as usual."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import timedelta
from functools import partial

from django.db import DatabaseError
from django.db.models import Q
from django.utils import timezone

from radshare.audit.actions import Action
from radshare.audit.services import Outcome
from radshare.core.workers import current_worker_id
from radshare.imaging.services import request_render
from radshare.pacs.client import Failure, PacsError, retrieve_study
from radshare.shares.models import Share, ShareStudy
from radshare.shares.services import Actor, audit, prepare
from radshare.studies.models import Study

RETRIEVE_CLAIM = timedelta(minutes=15)


PACS_REASON = "pacs:"  # a share's ``status_reason`` after a failed retrieve: this, then the ``Failure`` code


def failure_reason(exc: PacsError) -> str:
    """What a share that failed because of ``exc`` stores as its ``status_reason``: the code, never the English
    reason (the sender reads it in their own language, ``pacs.base.failure_text``)."""
    return PACS_REASON + exc.code


def _fail_retrieve(share: Share, reason: str) -> str:
    Share.objects.filter(pk=share.pk, status=Share.Status.RETRIEVING).update(
        status=Share.Status.FAILED, status_reason=reason[:200]
    )
    return Share.Status.FAILED


def _claim(ss: ShareStudy) -> bool:
    """Claim ``ss`` for this worker (False: another holds it). A claim names its worker and is given back when
    that worker stops sending heartbeats (R4); only a claim made outside a worker is judged by its age. Our own
    claim is a leftover of a run that ended early (the database was away): a worker runs one task at a time."""
    now = timezone.now()
    worker = current_worker_id()
    unclaimed = Q(retrieve_claimed_at__isnull=True) | Q(
        retrieve_claimed_by="", retrieve_claimed_at__lt=now - RETRIEVE_CLAIM
    )
    if worker:
        unclaimed |= Q(retrieve_claimed_by=worker)
    return bool(
        ShareStudy.objects.filter(pk=ss.pk)
        .filter(unclaimed)
        .update(retrieve_claimed_at=now, retrieve_claimed_by=worker)
    )


def _record_progress(pk: int, received: int, expected: int | None) -> None:
    ShareStudy.objects.filter(pk=pk).update(retrieve_received=received, retrieve_expected=expected)


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
        if not _claim(ss):
            return Share.Status.RETRIEVING  # another worker is on it
        try:
            result = retrieve_study(node, ss.study_instance_uid, on_progress=partial(_record_progress, ss.pk))
            study = Study.objects.filter(
                organisation=share.organisation, study_instance_uid=ss.study_instance_uid
            ).first()
            if study is None:
                raise PacsError(
                    "the PACS sent no images of this study", code=Failure.NO_IMAGES, temporary=False
                )
        except PacsError as exc:
            ShareStudy.objects.filter(pk=ss.pk).update(retrieve_claimed_at=None, retrieve_claimed_by="")
            audit(
                Action.PACS_RETRIEVE,
                share,
                actor,
                Outcome.FAILURE,
                node=node.pk,
                code=exc.code,
                reason=exc.reason,
            )
            return _fail_retrieve(share, failure_reason(exc))
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
            Action.PACS_RETRIEVE,
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
