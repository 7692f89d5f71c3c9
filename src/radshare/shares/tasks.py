"""Share preparation in the background (docs/requirements.md S3): ready within seconds when the studies are
rendered already."""

from __future__ import annotations

from datetime import timedelta

from django.db import DatabaseError
from django.tasks import task
from django.utils import timezone

from radshare.core.tasks import Periodic, retry
from radshare.imaging.services import request_render
from radshare.shares import destruction, retrieve, services
from radshare.shares.models import Share


@task()
def prepare_share(share_pk: int, attempt: int = 0) -> str:
    """Make the share ready once every render is done; until then look again after a short, growing delay."""
    try:
        status = services.prepare(share_pk)
        if status == Share.Status.RETRIEVING:
            status = retrieve.retrieve_missing(share_pk)
            if status == Share.Status.RETRIEVING:
                return status  # another worker retrieves it
        if status != Share.Status.PREPARING:
            return status
        if services.give_up_if_too_long(share_pk):
            return Share.Status.FAILED
        request_render()  # in case nothing is rendering what this share waits for
    except DatabaseError:
        retry(prepare_share, share_pk, attempt=attempt)
        return "retrying"
    run_after = timezone.now() + services.poll_delay(attempt)
    prepare_share.using(run_after=run_after).enqueue(share_pk, attempt=attempt + 1)
    return status


@task()
def expire_shares() -> int:
    """Periodic: end shares whose validity has passed, leaving their tombstones."""
    return services.expire_due()


@task()
def destroy_studies(attempt: int = 0) -> int:
    """Periodic, and queued when a share ends: destroy the studies that are due (docs/architecture.md
    "Destruction"); what a run leaves (a crash, a study being rendered) the next one finishes."""
    try:
        return destruction.destroy_due()
    except DatabaseError:
        retry(destroy_studies, attempt=attempt)
        return 0


PERIODIC = (
    Periodic("shares.expire", timedelta(minutes=1), expire_shares),
    Periodic("shares.destroy_studies", timedelta(minutes=1), destroy_studies),
)
