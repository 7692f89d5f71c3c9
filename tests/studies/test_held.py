"""Held images (``studies/held.py``) and ``radshare held``: what journal mode acknowledged for a study that was filed
under another patient a moment before waits for the admin's decision on the correction, then is filed or deleted."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from radshare.audit.models import AuditEvent
from radshare.organisations.services import add_pacs_node
from radshare.studies import conflicts, journal
from radshare.studies import held as held_module
from radshare.studies.indexer import Indexer
from radshare.studies.models import Instance, Study, StudyConflict
from radshare.studies.services import store_instance
from tests.studies.test_journal import ALICE, BOB, append_association, images

pytestmark = pytest.mark.django_db


@pytest.fixture
def held_bob(organisation: Any, radshare_config: Any, tmp_path: Path) -> list[bytes]:
    """Alice's study is filed; two images of it under Bob came through the journal and are held."""
    radshare_config(data_dir=str(tmp_path))
    node = add_pacs_node(organisation, "JOURNALSCU")
    store_instance(organisation, images(ALICE, 1)[0], source="scp", node=node)
    folder = tmp_path / "journal" / "00"
    folder.mkdir(parents=True)
    writer = journal.Writer(folder)
    bob = images(BOB, 2, study_uid=Study.objects.get().study_instance_uid)
    append_association(writer, organisation, node, "1-1", bob)
    writer.close()
    Indexer(folder, first_live_segment=1).pass_once(live=False)
    assert Instance.objects.count() == 1
    return bob


def held_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "journal" / "held").glob("*.dcm"))


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("held", *args, stdout=out)
    return out.getvalue()


def test_the_list_names_each_held_image_without_patient_data(
    held_bob: list[bytes], organisation: Any, tmp_path: Path
) -> None:
    files = held_files(tmp_path)
    assert len(files) == 2
    assert {f.read_bytes() for f in files} == set(held_bob)
    listing = run("list")
    assert "2 held image(s)" in listing
    assert all(f.name in listing for f in files)
    assert f"organisation {organisation.slug}" in listing
    assert f"study {Study.objects.get().study_instance_uid}" in listing
    assert BOB.patient_name not in listing
    assert BOB.patient_id not in listing
    assert "Bob" not in listing
    assert run() == listing  # list is the default


def test_held_images_wait_for_the_decision_then_are_filed_once_it_is_accepted(
    held_bob: list[bytes], organisation: Any, tmp_path: Path
) -> None:
    conflict = StudyConflict.objects.get()
    out = io.StringIO()
    with pytest.raises(CommandError, match="2 held image") as raised:
        call_command("held", "file", stdout=out)
    assert raised.value.returncode == 1
    assert "not decided yet" in out.getvalue()
    assert len(held_files(tmp_path)) == 2
    conflict.refresh_from_db()
    assert conflict.refused == 2  # not counted again

    assert not AuditEvent.objects.filter(action="held.file").exists()

    conflicts.move_study(organisation, conflict.pk, None)
    names = sorted(f.name for f in held_files(tmp_path))
    assert "No held images left (2 filed)" in run("file")
    entry = AuditEvent.objects.get(action="held.file")
    assert (entry.actor_type, entry.actor_label) == ("operator", "radshare held file")
    assert entry.organisation_id == organisation.pk
    assert entry.study_uids == [Study.objects.get().study_instance_uid]
    assert entry.detail == {"images": 2, "files": names}
    assert held_files(tmp_path) == []
    study = Study.objects.get()
    assert study.patient.patient_id == BOB.patient_id
    assert study.number_of_instances == Instance.objects.count() == 3
    assert "No held images" in run("list")


def test_a_dismissed_correction_s_images_stay_until_deleted(
    held_bob: list[bytes], organisation: Any, tmp_path: Path
) -> None:
    conflicts.dismiss(organisation, StudyConflict.objects.get().pk, None)
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("held", "file", stdout=out)
    assert "was dismissed" in out.getvalue()
    assert StudyConflict.objects.count() == 1  # no new conflict opened by the attempt
    assert len(held_files(tmp_path)) == 2
    first, second = held_files(tmp_path)
    with pytest.raises(CommandError, match=r"not held: nonsense\.dcm"):
        call_command("held", "delete", first.name, "nonsense.dcm")
    assert len(held_files(tmp_path)) == 2  # nothing deleted when one name is wrong
    with pytest.raises(CommandError, match="or give --all"):
        call_command("held", "delete")
    assert not AuditEvent.objects.filter(action="held.delete").exists()  # refused: nothing recorded
    assert "1 held image(s) deleted" in run("delete", first.name)
    assert held_files(tmp_path) == [second]
    assert "1 held image(s) deleted" in run("delete", "--all")
    assert held_files(tmp_path) == []
    entries = AuditEvent.objects.filter(action="held.delete").order_by("seq")
    assert [e.detail for e in entries] == [
        {"images": 1, "files": [first.name]},
        {"images": 1, "files": [second.name]},
    ]
    assert all(e.study_uids == [Study.objects.get().study_instance_uid] for e in entries)
    assert all("Bob" not in str(e.detail) for e in entries)
    assert Instance.objects.count() == 1


def test_a_held_image_is_written_whole_and_durable_with_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Once the indexer moves past its record, the journal segment may be deleted: the held file is then the only
    # copy of an acknowledged image, so it must survive a power cut with its folder entry, however the kernel
    # splits the write.
    real_write = held_module.os.write
    monkeypatch.setattr(held_module.os, "write", lambda fd, data: real_write(fd, bytes(data)[:1000]))
    synced: list[Path] = []
    real_fsync_folder = held_module.fsync_folder
    monkeypatch.setattr(
        held_module, "fsync_folder", lambda folder: (synced.append(folder), real_fsync_folder(folder))
    )
    payload = images(ALICE, 1)[0]
    name = held_module.keep(tmp_path / "held", "j", 0x10, 1, None, payload)
    assert (tmp_path / "held" / name).read_bytes() == payload
    assert synced == [tmp_path, tmp_path / "held"]  # the new folder's entry, then the file's
