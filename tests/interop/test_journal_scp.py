"""A real ``radshare scp`` in journal mode (``RADSHARE_INGEST_JOURNAL=1``) with DCMTK's storescu as the sender
(docs/architecture.md "C-STORE ingest"; in-process tests of the journal itself: tests/studies/test_journal.py).

The SCP acknowledges an instance once it is in the journal; its indexer process files it afterwards. What it
acknowledged must end up in the index exactly once, with the bytes that were sent, even when the SCP and its
indexer are killed with ``kill -9`` mid-send; a study filed under another patient is still refused before the
answer (0xA900); and associations running at once share one journal.
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pydicom
import pytest
from django.db.models import Count, Sum

from radshare.audit.models import AuditEvent
from radshare.organisations.services import add_pacs_node
from radshare.studies import journal
from radshare.studies.indexer import BATCH
from radshare.studies.models import Instance, JournalCursor, Patient, Series, Study, StudyConflict
from radshare.studies.synthetic import FakePatient, ct_series, encode
from tests.conftest import free_port, require_program
from tests.interop.test_crash_scp import (
    KILL_AFTER,
    _answers,
    check_index_against_storage,
    send_and_kill,
    sha256,
    stored_bytes,
)
from tests.interop.test_dcmtk_store import (
    CALLING,
    PATIENT,
    dataset_bytes,
    run_together,
    sop_uid,
    storescu,
    storescu_args,
    storescu_outcomes,
    write_study,
)
from tests.runtime.processes import START_TIMEOUT, kill, log_of, process_env, start, stop, wait_for

pytestmark = [pytest.mark.interop, pytest.mark.django_db(transaction=True)]

COUNT = 100  # instances of the study sent in the kill test (KILL_AFTER of them acknowledged before the kill)
INDEXED = 30  # seconds the index may take to catch up with what was acknowledged
OTHER = FakePatient("JOURNAL-2", "Journal^Other", dt.date(1964, 5, 6))
# storescu -d: the C-STORE response's status, in hex (at -v it names the whole 0xA9xx family only).
REFUSED = re.compile(r"^D: DIMSE Status +: 0xa900: ", re.MULTILINE)


def start_journal_scp(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``radshare scp`` in journal mode; its journal is ``<data_dir>/journal``, so a restart with the same
    ``data_dir`` claims the same journal folder and its indexer files what the last run left."""
    env = process_env(data_dir, dicom_port=str(port), dicom_bind="127.0.0.1", ingest_journal="1")
    proc = start("scp", env=env, log=log)
    wait_for("the SCP to answer C-ECHO", lambda: _answers(port), START_TIMEOUT, proc)
    return proc


def peer(port: int) -> SimpleNamespace:
    return SimpleNamespace(ae_title="RADSHARE", address=("127.0.0.1", port))


def store_entries() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="dicom.store").order_by("pk"))


def wait_for_entries(count: int, proc: subprocess.Popen[bytes]) -> list[AuditEvent]:
    """The ``dicom.store`` entries once there are ``count`` (the indexer writes each when it files the
    association's end record)."""
    wait_for(
        f"{count} dicom.store audit entries",
        lambda: AuditEvent.objects.filter(action="dicom.store").count() >= count,
        INDEXED,
        proc,
    )
    entries = store_entries()
    assert len(entries) == count, [e.detail for e in entries]
    return entries


def journal_folder(data_dir: Path) -> Path:
    return data_dir / "journal" / "00"


def cursor_of(folder: Path) -> JournalCursor:
    return JournalCursor.objects.get(journal=(folder / "id").read_text(encoding="ascii").strip())


def assert_journal_filed(folder: Path) -> None:
    """Everything in the journal is filed: one segment is left (the older ones were deleted once behind the
    cursor), and the cursor stands at its end, with no association left open."""
    cursor = cursor_of(folder)
    present = journal.segments(folder)
    assert len(present) == 1, present
    segment, offset = journal.split(cursor.position)
    assert segment == present[-1]
    assert offset == journal.segment_path(folder, segment).stat().st_size
    assert cursor.associations == {}


def sent_digests(files: list[Path]) -> dict[str, str]:
    return {sop_uid(f): sha256(dataset_bytes(f.read_bytes())) for f in files}


def write_patient_study(folder: Path, patient: FakePatient, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, ds in enumerate(ct_series(patient, count=count, size=64)):
        path = folder / f"ct{i:03d}.dcm"
        path.write_bytes(encode(ds))
        paths.append(path)
    return paths


def test_journal_mode_stores_and_files_a_study(organisation: Any, tmp_path: Path) -> None:
    require_program("storescu")
    node = add_pacs_node(organisation, CALLING)
    files = write_study(tmp_path / "study", count=60)
    sent = sent_digests(files)
    port = free_port()
    data_dir = tmp_path / "scp"

    proc = start_journal_scp(data_dir, port, tmp_path / "scp.log")
    try:
        run = storescu(peer(port), files)
        assert run.returncode == 0, run.stderr[-3000:]
        assert storescu_outcomes(run.stderr) == dict.fromkeys(files, "Success"), run.stderr[-3000:]
        wait_for("the index to hold the study", lambda: Instance.objects.count() >= len(files), INDEXED, proc)
        (entry,) = wait_for_entries(1, proc)
        cursor = cursor_of(journal_folder(data_dir))
        assert cursor.associations == {}  # the association's tally went with its entry
    finally:
        stop(proc)

    study = Study.objects.get(organisation=organisation)
    assert study.patient.patient_id == PATIENT.patient_id
    assert study.number_of_instances == Instance.objects.count() == len(files)
    assert Series.objects.get(study=study).number_of_instances == len(files)
    assert study.size == Instance.objects.aggregate(total=Sum("size"))["total"]
    assert set(Instance.objects.values_list("sop_instance_uid", flat=True)) == set(sent)
    assert set(Instance.objects.values_list("source", "source_node")) == {("scp", node.pk)}
    assert check_index_against_storage(sent) == []  # each file holds what was sent; no file without a row
    assert (entry.outcome, entry.actor_label, entry.organisation_id) == ("success", CALLING, organisation.pk)
    assert entry.detail == {"stored": len(files), "duplicate": 0, "refused": 0, "patients": 1}
    assert entry.study_uids == [study.study_instance_uid]
    assert_journal_filed(journal_folder(data_dir))
    assert not (data_dir / "journal" / "held").exists()
    assert "Traceback" not in log_of(tmp_path / "scp.log")


def test_killed_journal_scp_keeps_what_it_acknowledged_and_its_restart_files_it(
    organisation: Any, tmp_path: Path
) -> None:
    require_program("storescu")
    add_pacs_node(organisation, CALLING)
    files = write_study(tmp_path / "study", count=COUNT)
    sent = sent_digests(files)
    port = free_port()
    data_dir = tmp_path / "scp"  # both runs: the same journal

    proc = start_journal_scp(data_dir, port, tmp_path / "scp-first.log")
    try:
        # The indexer is up (it made its cursor): it files as the study arrives, so the kill finds the cursor
        # somewhere behind the acknowledgements, the restart going on from there.
        wait_for("the indexer to start", JournalCursor.objects.exists, START_TIMEOUT, proc)
        log = send_and_kill(proc, port, files)  # kill -9 of the process group: the indexer too
    finally:
        kill(proc)
    crash_output = log_of(tmp_path / "scp-first.log")
    outcomes = storescu_outcomes(log)
    acknowledged = {sop_uid(path) for path, status in outcomes.items() if status == "Success"}
    assert KILL_AFTER <= len(acknowledged) < COUNT, log[-3000:]
    assert set(outcomes.values()) <= {"Success", None}, log[-3000:]
    assert not store_entries()  # the association never ended

    proc = start_journal_scp(data_dir, port, tmp_path / "scp-again.log")
    try:
        # The new indexer files what the journal holds, then closes the association the crash left open.
        (interrupted,) = wait_for_entries(1, proc)
        indexed = {i.sop_instance_uid: i for i in Instance.objects.all()}
        assert acknowledged <= set(indexed), sorted(acknowledged - set(indexed))
        for uid in acknowledged:
            assert sha256(dataset_bytes(stored_bytes(indexed[uid]))) == sent[uid]
        # At most the one instance in flight was journaled without its answer reaching storescu.
        assert len(indexed) <= len(acknowledged) + 1
        rows = Instance.objects.count()
        assert rows == Instance.objects.values("sop_instance_uid").distinct().count() == len(indexed)
        assert (
            not Instance.objects.values("sop_instance_uid").annotate(n=Count("pk")).filter(n__gt=1).exists()
        )
        study = Study.objects.get()
        assert study.number_of_instances == rows
        assert interrupted.detail == {
            "stored": rows,
            "duplicate": 0,
            "refused": 0,
            "patients": 1,
            "interrupted": True,
        }
        assert interrupted.outcome == "failure"
        unindexed = check_index_against_storage(sent)
        # The batch being filed when the indexer was killed: files written, their rows never committed (orphans
        # for `radshare storage check --repair`); its records were filed again from the cursor.
        assert len(unindexed) <= BATCH, unindexed

        again = storescu(peer(port), files)
        assert again.returncode == 0, again.stderr[-3000:]
        assert storescu_outcomes(again.stderr) == dict.fromkeys(files, "Success"), again.stderr[-3000:]
        wait_for("the whole study indexed", lambda: Instance.objects.count() >= COUNT, INDEXED, proc)
        entries = wait_for_entries(2, proc)
    finally:
        stop(proc)

    assert entries[1].detail == {"stored": COUNT - rows, "duplicate": rows, "refused": 0, "patients": 1}
    study.refresh_from_db()
    instances = Instance.objects.filter(series__study=study)
    assert study.number_of_instances == instances.count() == Instance.objects.count() == COUNT
    assert set(instances.values_list("sop_instance_uid", flat=True)) == set(sent)
    assert Series.objects.get(study=study).number_of_instances == COUNT
    assert study.size == instances.aggregate(total=Sum("size"))["total"]
    assert check_index_against_storage(sent) == unindexed
    # The first run's segment was filed by the second run's indexer and deleted.
    assert_journal_filed(journal_folder(data_dir))
    assert "Traceback" not in crash_output
    assert "Traceback" not in log_of(tmp_path / "scp-again.log")


def test_a_patient_conflict_is_refused_before_the_answer(organisation: Any, tmp_path: Path) -> None:
    require_program("storescu")
    add_pacs_node(organisation, CALLING)
    files = write_study(tmp_path / "study", count=3)
    conflicting = pydicom.dcmread(files[0])
    conflicting.PatientID = OTHER.patient_id
    conflicting.PatientName = OTHER.patient_name
    conflicting.SOPInstanceUID = conflicting.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    other = tmp_path / "conflicting.dcm"
    conflicting.save_as(other, enforce_file_format=True)
    port = free_port()
    data_dir = tmp_path / "scp"

    proc = start_journal_scp(data_dir, port, tmp_path / "scp.log")
    try:
        first = storescu(peer(port), files)
        assert first.returncode == 0, first.stderr[-3000:]
        assert storescu_outcomes(first.stderr) == dict.fromkeys(files, "Success"), first.stderr[-3000:]
        wait_for("the study indexed", lambda: Instance.objects.count() >= len(files), INDEXED, proc)
        wait_for_entries(1, proc)

        refused = storescu(peer(port), [other], extra=["-d"])  # -d: the response's status in hex
        entries = wait_for_entries(2, proc)
    finally:
        stop(proc)

    assert f"I: Sending file: {other}" in refused.stderr, refused.stderr[-3000:]
    assert len(REFUSED.findall(refused.stderr)) == 1, refused.stderr[-3000:]
    assert not re.search(r"DIMSE Status +: 0x0000", refused.stderr)
    conflict = StudyConflict.objects.get()
    assert conflict.refused == 1
    assert (conflict.old_patient_id, conflict.new_patient_id) == (PATIENT.patient_id, OTHER.patient_id)
    study = Study.objects.get()
    assert conflict.study == study
    assert study.patient.patient_id == PATIENT.patient_id
    assert study.number_of_instances == Instance.objects.count() == len(files)
    assert set(Instance.objects.values_list("series__study__patient__patient_id", flat=True)) == {
        PATIENT.patient_id
    }
    assert not Instance.objects.filter(sop_instance_uid=str(conflicting.SOPInstanceUID)).exists()
    assert entries[1].detail == {"stored": 0, "duplicate": 0, "refused": 1, "patients": 0}
    assert entries[1].outcome == "failure"
    assert not (data_dir / "journal" / "held").exists()  # refused, not acknowledged and held
    assert_journal_filed(journal_folder(data_dir))
    assert "Traceback" not in log_of(tmp_path / "scp.log")


def test_two_associations_at_once_share_the_journal(organisation: Any, tmp_path: Path) -> None:
    require_program("storescu")
    add_pacs_node(organisation, CALLING)
    first = write_study(tmp_path / "first", count=40)
    second = write_patient_study(tmp_path / "second", OTHER, count=40)
    sent = sent_digests(first + second)
    port = free_port()
    data_dir = tmp_path / "scp"

    proc = start_journal_scp(data_dir, port, tmp_path / "scp.log")
    try:
        runs = run_together(storescu_args(peer(port), first), storescu_args(peer(port), second))
        for run, batch in zip(runs, (first, second), strict=True):
            assert run.returncode == 0, run.stderr[-3000:]
            assert storescu_outcomes(run.stderr) == dict.fromkeys(batch, "Success"), run.stderr[-3000:]
        entries = wait_for_entries(2, proc)
    finally:
        stop(proc)

    assert Patient.objects.count() == 2
    for batch, patient in ((first, PATIENT), (second, OTHER)):
        study = Study.objects.get(patient__patient_id=patient.patient_id)
        instances = Instance.objects.filter(series__study=study)
        assert study.number_of_instances == instances.count() == len(batch)
        assert set(instances.values_list("sop_instance_uid", flat=True)) == {sop_uid(f) for f in batch}
        assert Series.objects.get(study=study).number_of_instances == len(batch)
        assert study.size == instances.aggregate(total=Sum("size"))["total"]
    assert check_index_against_storage(sent) == []
    assert sorted(tuple(e.study_uids) for e in entries) == sorted(
        (s,) for s in Study.objects.values_list("study_instance_uid", flat=True)
    )
    for entry in entries:
        assert entry.detail == {"stored": 40, "duplicate": 0, "refused": 0, "patients": 1}
    assert_journal_filed(journal_folder(data_dir))
    assert "Traceback" not in log_of(tmp_path / "scp.log")
