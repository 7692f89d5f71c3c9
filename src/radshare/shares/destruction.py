"""Which studies are destroyed when (docs/architecture.md "Destruction", docs/requirements.md S5, docs/security.md
A22). A study no live share holds is due:

* at once when a share of it has ended (expired or revoked), and
* ``RADSHARE_UNSHARED_RETENTION_DAYS`` after its last instance arrived when nobody shared it.

A study a live share holds stays, whatever its age; a share being prepared is live. The destruction itself (files,
then rows) is ``studies.destruction``; this module decides, marks and re-checks under the study's row lock.
"""

from __future__ import annotations

import datetime as dt
import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from radshare.imaging.services import rendering
from radshare.shares.models import Share, ShareStudy
from radshare.studies import destruction
from radshare.studies.models import Study

logger = logging.getLogger(__name__)

BATCH = 50  # studies per run: a run ends in reasonable time; the next one carries on


def held(now: dt.datetime | None = None) -> QuerySet[ShareStudy, int]:
    """Ids of the studies a live share holds."""
    return (
        ShareStudy.objects.filter(share__in=Share.objects.live(now), study__isnull=False)
        .order_by()
        .values_list("study_id", flat=True)
    )


def due(now: dt.datetime | None = None) -> QuerySet[Study]:
    """Studies to destroy now: not held by a live share, and either once shared (the share ended) or kept past
    the retention of unshared studies."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.RADSHARE.unshared_retention_days)
    once_shared = ShareStudy.objects.filter(study__isnull=False).order_by().values_list("study_id", flat=True)
    return (
        Study.objects.present()
        .exclude(pk__in=held(now))
        .filter(Q(pk__in=once_shared) | Q(last_instance_at__lt=cutoff))
    )


def _claim(study_pk: int) -> str | None:
    """The reason to go on with a marked study, or None: another worker has it, or a live share took it after
    all (then it is unmarked). Runs under the study's row lock, which a new share takes too."""
    with transaction.atomic():
        study = (
            Study.objects.select_for_update(skip_locked=True)
            .filter(pk=study_pk, destroy_started_at__isnull=False)
            .first()
        )
        if study is None:
            return None
        if held().filter(study_id=study_pk).exists():
            destruction.unmark(study_pk)
            return None
        once_shared = ShareStudy.objects.filter(study_id=study_pk).exists()
        return "share_ended" if once_shared else "retention"


def destroy_due(now: dt.datetime | None = None, limit: int = BATCH) -> int:
    """Mark what is due, then finish every marked study (also those a crashed run left). Returns how many
    studies were destroyed. Any number of workers may run it at once."""
    destruction.mark(due(now).values_list("pk", flat=True)[:limit])
    destroyed = 0
    marked = Study.objects.filter(destroy_started_at__isnull=False).order_by("destroy_started_at", "pk")
    for study_pk in list(marked.values_list("pk", flat=True)[:limit]):
        reason = _claim(study_pk)
        if reason is None:
            continue
        if rendering(study_pk):
            continue  # a render being written now would outlive its study; the next run takes it
        if destruction.destroy(study_pk, reason) is not None:
            destroyed += 1
    if destroyed:
        logger.info("destroyed %d studies", destroyed)
    return destroyed


def next_retention_end(now: dt.datetime | None = None) -> dt.datetime | None:
    """When the retention of the longest-kept study no live share holds runs out (in the past: overdue)."""
    unshared = (
        Study.objects.present()
        .exclude(pk__in=held(now))
        .order_by("last_instance_at")
        .values_list("last_instance_at", flat=True)
        .first()
    )
    return unshared + timedelta(days=settings.RADSHARE.unshared_retention_days) if unshared else None
