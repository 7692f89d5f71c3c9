"""Nothing outlives its time (docs/architecture.md "Destruction", docs/security.md A22): when a share ends, its
studies that no other live share needs lose their files and rows; unshared studies go after the retention; a crash
in the middle is finished by the next run."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from radshare.audit.actions import Action
from radshare.audit.models import AuditEvent
from radshare.core.storage import get_storage, instance_key, render_folder
from radshare.imaging import services as imaging
from radshare.imaging.models import InstanceRender
from radshare.shares import codes
from radshare.shares.destruction import destroy_due, due, next_retention_end
from radshare.shares.models import Share
from radshare.shares.services import SYSTEM, ShareError, prepare, revoke
from radshare.shares.tasks import destroy_studies, expire_shares
from radshare.studies import destruction
from radshare.studies.errors import StudyBeingDestroyedError
from radshare.studies.models import Instance, Patient, Series, Study
from radshare.studies.services import store_instance
from radshare.studies.synthetic import ct_series, encode
from tests.cli_runner import radshare_env
from tests.core.test_workers import _database_url
from tests.recipients.conftest import logged_in_client
from tests.shares.helpers import ANNA, PIET, make_share, make_study


def _files(study_pk: int) -> tuple[list[str], list[str]]:
    """(instance keys, render keys) the storage holds for the study's instances, from the index."""
    rows = list(Instance.objects.filter(series__study_id=study_pk).values_list("pk", "storage_key"))
    storage = get_storage()
    instances = [instance_key(key) for _pk, key in rows if storage.exists(instance_key(key))]
    renders = [key for pk, _key in rows for key in storage.iterate(render_folder(pk))]
    return instances, renders


def _ready(organisation: Any, studies: list[Study], **kwargs: Any) -> tuple[Share, str]:
    new = make_share(organisation, studies, delivery="url", email="", **kwargs)
    imaging.render_pending_now(parallel=False)
    assert prepare(new.share.pk) == "ready"
    new.share.refresh_from_db()
    return new.share, new.code


def _all_keys() -> set[str]:
    storage = get_storage()
    return {key for area in ("instances", "renders") for key in storage.iterate(area)}


@pytest.mark.django_db
def test_at_its_end_a_share_refuses_and_then_its_studies_are_destroyed(organisation: Any) -> None:
    ct = make_study(organisation, ANNA)
    share, code = _ready(organisation, [ct])
    client = logged_in_client(share)
    instance_pk = Instance.objects.filter(series__study=ct).values_list("pk", flat=True).first()
    render = InstanceRender.objects.get(instance_id=instance_pk)
    instances, renders = _files(ct.pk)
    assert len(instances) == 2
    assert renders  # rendered: previews, thumbnails, presets, full JPEGs
    assert client.get(f"/r/studies/{ct.pk}/").status_code == 200

    with time_machine.travel(share.expires_at + timedelta(seconds=1), tick=False):
        # One second after its end every door is shut, before any job has run (docs/security.md A7).
        assert "/r/invalid" in Client().get("/", {"code": codes.format_code(code)})["Location"]
        assert client.get("/r/studies").status_code == 302
        assert client.get(f"/r/studies/{ct.pk}/").status_code in (302, 404)
        assert client.get(f"/r/images/{render.pk}/0/preview.jpg").status_code in (302, 404)
        assert client.get("/r/download/dicom.zip").status_code in (302, 404)
        assert expire_shares.call() == 1
        assert destroy_studies.call() == 1

    assert not Study.objects.filter(pk=ct.pk).exists()
    assert not Instance.objects.filter(pk=instance_pk).exists()
    assert not Patient.objects.filter(patient_id=ANNA.patient_id).exists()  # no study of hers is left
    storage = get_storage()
    assert not any(storage.exists(key) for key in instances + renders)
    # What stays: the tombstone (what was shared, to whom, when) and the trail, neither with image content.
    share.refresh_from_db()
    assert share.status == Share.Status.EXPIRED
    assert list(share.share_studies.values_list("study_id", "study_instance_uid", "number_of_instances")) == [
        (None, ct.study_instance_uid, 2)
    ]
    destroyed = AuditEvent.objects.get(action=Action.STUDY_DESTROY)
    assert destroyed.detail["instances"] == 2
    assert destroyed.detail["bytes"] == ct.size
    assert destroyed.detail["reason"] == "share_ended"
    assert destroyed.study_uids == [ct.study_instance_uid]
    assert AuditEvent.objects.filter(action=Action.SHARE_CREATE).exists()


@pytest.mark.django_db
def test_a_second_live_share_keeps_the_study_whole_until_it_ends_too(organisation: Any) -> None:
    ct = make_study(organisation, ANNA)
    first, _ = _ready(organisation, [ct])
    second, _ = _ready(organisation, [ct])
    instances, renders = _files(ct.pk)
    revoke(first, SYSTEM)
    assert destroy_due() == 0
    assert _files(ct.pk) == (instances, renders)
    assert logged_in_client(second).get(f"/r/studies/{ct.pk}/").status_code == 200
    with time_machine.travel(second.expires_at + timedelta(seconds=1), tick=False):
        expire_shares.call()
        assert destroy_due() == 1
    assert not Study.objects.filter(pk=ct.pk).exists()
    assert not any(get_storage().exists(key) for key in instances + renders)


@pytest.mark.django_db
def test_a_revoked_share_destroys_its_studies_but_not_another_patients(organisation: Any) -> None:
    anna, piet = make_study(organisation, ANNA), make_study(organisation, PIET)
    share, _ = _ready(organisation, [anna])
    kept = _files(piet.pk)
    revoke(share, SYSTEM)
    assert destroy_due() == 1
    assert not Study.objects.filter(pk=anna.pk).exists()
    assert _files(piet.pk) == kept  # never shared, younger than the retention


@pytest.mark.django_db
def test_an_unshared_study_goes_after_the_retention_unless_a_share_is_being_prepared(
    organisation: Any,
) -> None:
    lone = make_study(organisation, ANNA)
    wanted = make_study(organisation, PIET)
    new = make_share(organisation, [wanted], delivery="url", email="")  # preparing: its renders are not made
    assert Share.objects.get(pk=new.share.pk).status == Share.Status.PREPARING
    retention = timedelta(days=settings.RADSHARE.unshared_retention_days)
    # Both arrived just under, then just over, the retention ago (the share of one is days from its own end).
    Study.objects.update(last_instance_at=timezone.now() - retention + timedelta(minutes=1))
    assert list(due()) == []
    Study.objects.update(last_instance_at=timezone.now() - retention - timedelta(minutes=1))
    assert list(due()) == [lone]
    assert destroy_due() == 1
    assert not Study.objects.filter(pk=lone.pk).exists()
    assert Study.objects.filter(pk=wanted.pk).exists()
    assert AuditEvent.objects.get(action=Action.STUDY_DESTROY).detail["reason"] == "retention"


@pytest.mark.django_db
def test_a_study_being_destroyed_takes_no_images_and_no_share(organisation: Any) -> None:
    series = ct_series(ANNA, count=3, size=16)
    for ds in series[:2]:
        store_instance(organisation, encode(ds), source="upload")
    study = Study.objects.get(study_instance_uid=series[0].StudyInstanceUID)
    assert destruction.mark([study.pk]) == 1
    # A new image of it, and one sent again, are refused for now (0xA700: the sender tries later), not lost.
    for ds in (series[2], series[0]):
        with pytest.raises(StudyBeingDestroyedError) as refused:
            store_instance(organisation, encode(ds), source="upload")
        assert refused.value.status == 0xA700
    assert Instance.objects.filter(series__study=study).count() == 2
    with pytest.raises(ShareError) as not_found:
        make_share(organisation, [study])
    assert not_found.value.code == "study_not_found"
    assert destroy_due() == 1
    # Afterwards the same study arrives as a new one.
    store_instance(organisation, encode(series[2]), source="upload")
    again = Study.objects.get(study_instance_uid=series[0].StudyInstanceUID)
    assert again.pk != study.pk
    assert again.number_of_instances == 1


@pytest.mark.django_db
def test_a_share_that_took_the_study_just_before_the_mark_keeps_it(organisation: Any) -> None:
    ct = make_study(organisation, ANNA)
    share, _ = _ready(organisation, [ct])
    destruction.mark([ct.pk])  # as a run that decided before the share was committed
    assert destroy_due() == 0
    ct.refresh_from_db()
    assert ct.destroy_started_at is None
    assert logged_in_client(share).get(f"/r/studies/{ct.pk}/").status_code == 200


CRASHING_RUN = """
import os, signal, sys
import django
django.setup()
from radshare.core.storage.filesystem import FileSystemStorage
from radshare.shares.destruction import destroy_due

real_delete, deleted = FileSystemStorage.delete, []

def delete(self, key):
    real_delete(self, key)
    deleted.append(key)
    if len(deleted) == int(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 in the middle of the job

FileSystemStorage.delete = delete
destroy_due()
"""


@pytest.mark.django_db(transaction=True)  # the crashing process must see the committed study
def test_a_destruction_killed_in_the_middle_is_finished_by_the_next_run(
    organisation: Any, tmp_path: Path
) -> None:
    series = ct_series(ANNA, count=200, size=8)
    for ds in series:
        store_instance(organisation, encode(ds), source="upload")
    study = Study.objects.get(study_instance_uid=series[0].StudyInstanceUID)
    assert study.number_of_instances == 200
    before = _all_keys()
    instances, _renders = _files(study.pk)
    assert len(instances) == 200
    destruction.mark([study.pk])
    connection.close()

    script = tmp_path / "crash.py"
    script.write_text(CRASHING_RUN)
    env = radshare_env(
        tmp_path / "data",
        database_url=_database_url(),
        storage_url=settings.RADSHARE.storage_url,
        secret_key=settings.RADSHARE.secret_key,
    )
    env["DJANGO_SETTINGS_MODULE"] = "radshare.settings"
    run = subprocess.run([sys.executable, str(script), "120"], env=env, capture_output=True, timeout=120)
    assert run.returncode == -9, run.stderr.decode()[-2000:]

    # Killed half way: the study is still marked, some files are gone, every row is still there.
    study.refresh_from_db()
    assert study.destroy_started_at is not None
    assert Instance.objects.filter(series__study=study).count() == 200
    gone = before - _all_keys()
    assert 0 < len(gone) < len(before)

    assert destroy_due() == 1
    assert not Study.objects.filter(pk=study.pk).exists()
    assert not Series.objects.filter(study_id=study.pk).exists()
    assert _all_keys() == set()  # nothing of it is left: no orphan, no half-deleted study
    out = io.StringIO()
    call_command("storage", "check", stdout=out)  # index and storage agree (a non-zero exit raises)
    assert AuditEvent.objects.filter(action=Action.STUDY_DESTROY).count() == 1


@pytest.mark.django_db
def test_the_next_retention_end_counts_only_studies_no_live_share_holds(organisation: Any) -> None:
    ct = make_study(organisation, ANNA)
    _ready(organisation, [ct])
    lone = make_study(organisation, PIET)
    Study.objects.filter(pk=ct.pk).update(
        last_instance_at=lone.last_instance_at - timedelta(days=3)
    )  # older, held
    assert next_retention_end() == lone.last_instance_at + timedelta(
        days=settings.RADSHARE.unshared_retention_days
    )
    lone.delete()
    assert next_retention_end() is None
