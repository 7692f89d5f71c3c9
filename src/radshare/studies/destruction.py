"""Destroying a study (docs/architecture.md "Destruction", docs/security.md A22): which studies are due is decided
above this app (shares know what is live); here a marked study loses its files and then its rows.

The order makes it crash-safe: a study is first marked (``destroy_started_at``; from then on nobody lists, opens,
shares or adds to it), then every file is deleted (deleting a missing file is no error), then the rows go in one
transaction with one audit entry. A kill at any point leaves a marked study that the next run finishes; no row
points at a missing file except a marked one's. No instance joins a marked study (ingest refuses it), so the files
listed before the deletion are all there are.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from radshare.audit.actions import Action
from radshare.audit.services import ActorType, record
from radshare.core.storage import get_storage, instance_key
from radshare.studies import services, signals
from radshare.studies.models import Instance, Patient, Study


@dataclass(frozen=True)
class Destroyed:
    study_pk: int
    instances: int
    bytes: int


def mark(study_pks: Iterable[int]) -> int:
    """Start destroying these studies (those not started already); returns how many were marked."""
    return Study.objects.filter(pk__in=list(study_pks), destroy_started_at__isnull=True).update(
        destroy_started_at=timezone.now()
    )


def unmark(study_pk: int) -> None:
    """A marked study turned out to be needed after all (a share took it just before the mark)."""
    Study.objects.filter(pk=study_pk).update(destroy_started_at=None)


def destroy(study_pk: int, reason: str) -> Destroyed | None:
    """Finish destroying a marked study: files, then rows. None when it is not marked or already gone (another
    worker finished it). Safe to run again after a crash at any point, and by several workers at once."""
    rows = list(
        Instance.objects.filter(series__study_id=study_pk, series__study__destroy_started_at__isnull=False)
        .order_by()
        .values_list("pk", "storage_key", "size")
    )
    signals.study_destroying.send(
        sender=Study, study_pk=study_pk, instance_pks=[pk for pk, _key, _size in rows]
    )
    storage = get_storage()
    for _pk, key, _size in rows:
        storage.delete(instance_key(key))
    with transaction.atomic():
        study = (
            Study.objects.select_for_update().filter(pk=study_pk, destroy_started_at__isnull=False).first()
        )
        if study is None:
            return None
        done = Destroyed(study.pk, len(rows), sum(size for _pk, _key, size in rows))
        record(
            Action.STUDY_DESTROY,
            organisation=study.organisation_id,
            patient=study.patient_id,
            actor_type=ActorType.SYSTEM,
            study_uids=[study.study_instance_uid],
            detail={"study": study.pk, "instances": done.instances, "bytes": done.bytes, "reason": reason},
        )
        patient_pk = study.patient_id
        study.delete()  # its series, instances and renders with it; the shares' study rows keep what was shared
        if not Study.objects.filter(patient_id=patient_pk).exists():
            Patient.objects.filter(pk=patient_pk).delete()
    services.forget_cached_ids()
    return done
