"""The ingest journal (``studies/journal.py``) and its indexer (``studies/indexer.py``), in this process: the file
format, torn tails, rotation, group commit, and filing exactly once. The SCP in journal mode, as a real process
that is killed, is tested in ``tests/interop/test_journal_scp.py``."""

from __future__ import annotations

import datetime as dt
import errno
import io
import json
import logging
import os
import re
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pydicom
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from radshare.audit.models import AuditEvent
from radshare.core.models import UsageCount
from radshare.core.storage import filesystem as filesystem_module
from radshare.core.storage import get_storage, instance_key
from radshare.imaging.models import InstanceRender
from radshare.organisations.services import add_pacs_node
from radshare.studies import indexer as indexer_module
from radshare.studies import journal
from radshare.studies import services as services_module
from radshare.studies.errors import OutOfResourcesError
from radshare.studies.header import read_header
from radshare.studies.indexer import Indexer, backlogs
from radshare.studies.models import Instance, JournalCursor, Patient, Study, StudyConflict
from radshare.studies.services import store_instance
from radshare.studies.synthetic import FakePatient, cr_image, ct_series, encode

ALICE = FakePatient("J-ALICE", "Journal^Alice", dt.date(1980, 1, 2))
BOB = FakePatient("J-BOB", "Journal^Bob", dt.date(1970, 3, 4))


def images(patient: FakePatient, count: int, *, study_uid: str | None = None) -> list[bytes]:
    return [encode(ds) for ds in ct_series(patient, count=count, size=16, study_uid=study_uid)]


def records(folder: Path, *, live: bool = False) -> list[journal.Record]:
    return list(journal.read(folder, 0, live=live))


# --- the file format ------------------------------------------------------------------------------------------


def test_records_come_back_in_order_with_their_positions(tmp_path: Path) -> None:
    writer = journal.Writer(tmp_path)
    ends = [writer.append(journal.INSTANCE, {"n": i}, os.urandom(100 + i)) for i in range(5)]
    writer.close()
    got = records(tmp_path)
    assert [r.meta["n"] for r in got] == list(range(5))
    assert [r.end for r in got] == ends
    assert [r.start for r in got[1:]] == ends[:-1]  # each record starts where the last one ended
    assert all(len(r.payload) == 100 + i for i, r in enumerate(got))


def test_a_torn_tail_ends_an_old_segment_and_waits_in_the_newest(tmp_path: Path) -> None:
    writer = journal.Writer(tmp_path)
    for i in range(3):
        writer.append(journal.INSTANCE, {"n": i}, b"x" * 1000)
    writer.close()
    path = journal.segment_path(tmp_path, 1)
    os.truncate(path, path.stat().st_size - 500)  # a crash in the middle of the third record
    # Being written (the newest segment, live): the reader stops before it and comes back later.
    assert [r.meta["n"] for r in records(tmp_path, live=True)] == [0, 1]
    # The next SCP starts a new segment: the torn record of the old one was never acknowledged, and is skipped.
    writer = journal.Writer(tmp_path)
    writer.append(journal.INSTANCE, {"n": 3}, b"y")
    writer.close()
    assert [r.meta["n"] for r in records(tmp_path, live=True)] == [0, 1, 3]
    assert journal.segments(tmp_path) == [1, 2]


def test_a_damaged_record_is_not_read(tmp_path: Path) -> None:
    writer = journal.Writer(tmp_path)
    writer.append(journal.INSTANCE, {"n": 0}, b"a" * 100)
    writer.append(journal.INSTANCE, {"n": 1}, b"b" * 100)
    writer.close()
    path = journal.segment_path(tmp_path, 1)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # a flipped bit in the second record's payload
    path.write_bytes(bytes(data))
    assert [r.meta["n"] for r in records(tmp_path)] == [0]


def test_a_record_naming_a_file_the_writer_does_not_make_is_not_read(tmp_path: Path) -> None:
    writer = journal.Writer(tmp_path)
    writer.append_instance({"a": "1-1", "o": 1, "n": None}, b"a" * 100)
    writer.append(journal.INSTANCE, {"a": "1-1", "o": 1, "f": "../../id", "c": 0})
    writer.close()
    (good,) = records(tmp_path)
    assert good.file is not None
    assert good.data() == b"a" * 100
    assert good.payload_crc == zlib.crc32(b"a" * 100)


def test_a_record_gives_its_payload_crc_and_first_format_records_are_still_read(tmp_path: Path) -> None:
    payload = os.urandom(300)
    meta = json.dumps({"n": 0}).encode()
    # A record as the first format wrote it (CRC-32 over meta, then payload), as an older SCP left it.
    old = journal.HEADER.pack(
        journal.MAGIC_V1, journal.INSTANCE, len(meta), len(payload), zlib.crc32(payload, zlib.crc32(meta))
    )
    journal.segment_path(tmp_path, 1).write_bytes(old + meta + payload)
    writer = journal.Writer(tmp_path)
    writer.append(journal.INSTANCE, {"n": 1}, payload)
    writer.close()
    got = records(tmp_path)
    assert [(r.meta["n"], r.payload) for r in got] == [(0, payload), (1, payload)]
    assert got[0].payload_crc is None  # the indexer computes it
    assert got[1].payload_crc == zlib.crc32(payload)  # what a ZIP member of it records


def test_segments_rotate_and_are_read_across(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal, "SEGMENT_BYTES", 3000)
    writer = journal.Writer(tmp_path)
    for i in range(7):
        writer.append(journal.INSTANCE, {"n": i}, b"z" * 1000)
    writer.close()
    assert len(journal.segments(tmp_path)) >= 3
    got = records(tmp_path, live=True)
    assert [r.meta["n"] for r in got] == list(range(7))
    # Reading on from a record's end gives the rest, also across a segment's end.
    assert [r.meta["n"] for r in journal.read(tmp_path, got[2].end, live=True)] == [3, 4, 5, 6]


def test_concurrent_appends_share_fdatasyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    syncs = []
    real = os.fdatasync

    def slow_sync(fd: int) -> None:
        syncs.append(fd)
        threading.Event().wait(0.002)  # a disk that takes its time: appends arrive meanwhile
        real(fd)

    monkeypatch.setattr(os, "fdatasync", slow_sync)
    writer = journal.Writer(tmp_path)

    def send(thread: int) -> None:
        for i in range(25):
            writer.append(journal.INSTANCE, {"t": thread, "i": i}, os.urandom(2000))

    threads = [threading.Thread(target=send, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    got = records(tmp_path)
    assert len(got) == 200
    for thread in range(8):  # each association's records in its own order
        assert [r.meta["i"] for r in got if r.meta["t"] == thread] == list(range(25))
    assert len(syncs) < 200  # group commit: one fdatasync covered several appends


def test_a_failed_write_leaves_no_broken_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = journal.Writer(tmp_path)
    writer.append(journal.INSTANCE, {"n": 0}, b"a" * 100)
    real = os.writev

    def short(fd: int, parts: Any) -> int:
        os.write(fd, b"RSJ1 half a header")  # the disk fills part-way through
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "writev", short)
    with pytest.raises(OSError, match="No space"):
        writer.append(journal.INSTANCE, {"n": 1}, b"b" * 100)
    monkeypatch.setattr(os, "writev", real)
    writer.append(journal.INSTANCE, {"n": 2}, b"c" * 100)
    writer.close()
    assert [r.meta["n"] for r in records(tmp_path, live=True)] == [0, 2]


def test_each_scp_claims_a_journal_folder_of_its_own(tmp_path: Path) -> None:
    first, first_fd = journal.claim_slot(tmp_path)
    second, second_fd = journal.claim_slot(tmp_path)
    assert first != second
    os.close(first_fd)  # that SCP ended: the next one takes its folder (and files what it left)
    again, again_fd = journal.claim_slot(tmp_path)
    assert again == first
    os.close(second_fd)
    os.close(again_fd)
    assert journal.journal_id(first) == journal.journal_id(first) != journal.journal_id(second)


# --- the indexer ----------------------------------------------------------------------------------------------


def append_association(
    writer: journal.Writer,
    organisation: Any,
    node: Any,
    key: str,
    files: list[bytes],
    *,
    end: bool = True,
    inline: bool = False,
) -> None:
    """Records as the SCP appends them now: each instance a file of its own, with the header the SCP read;
    ``inline``: as an older SCP did, the bytes in the record, without the header."""
    meta = {"a": key, "o": organisation.pk, "n": node.pk, "ae": "JOURNALSCU", "ip": "127.0.0.1"}
    for data in files:
        if inline:
            writer.append(journal.INSTANCE, meta, data)
        else:
            writer.append_instance({**meta, "h": read_header(data).as_json()}, data)
    if end:
        tally = {"stored": 0, "duplicate": 0, "refused": 1, "studies": [], "patients": []}
        writer.append(journal.ASSOCIATION_END, {**meta, **tally})


@pytest.mark.django_db
def test_the_indexer_files_each_record_once(organisation: Any, tmp_path: Path) -> None:
    node = add_pacs_node(organisation, "JOURNALSCU")
    writer = journal.Writer(tmp_path)
    append_association(writer, organisation, node, "1-1", images(ALICE, 4))
    writer.close()
    indexer = Indexer(tmp_path, first_live_segment=1)
    assert indexer.pass_once(live=False)
    study = Study.objects.get()
    assert study.number_of_instances == Instance.objects.count() == 4
    cursor = JournalCursor.objects.get(journal=journal.journal_id(tmp_path))
    assert cursor.position == records(tmp_path)[-1].end
    assert cursor.associations == {}  # the association ended: its entry is written
    entry = AuditEvent.objects.get(action="dicom.store")
    # The refusal the SCP counted before answering, and the instances the indexer filed, in one entry.
    assert entry.detail == {"stored": 4, "duplicate": 0, "refused": 1, "patients": 1}
    assert entry.actor_label == "JOURNALSCU"
    assert entry.outcome == "failure"
    assert not indexer.pass_once(live=False)  # nothing new

    # Were the cursor lost, filing again finds duplicates: nothing is indexed or counted twice.
    JournalCursor.objects.update(position=0)
    again = Indexer(tmp_path, first_live_segment=1)
    again.pass_once(live=False)
    study.refresh_from_db()
    assert study.number_of_instances == Instance.objects.count() == 4
    second = AuditEvent.objects.filter(action="dicom.store").latest("pk")
    assert second.detail == {"stored": 0, "duplicate": 4, "refused": 1, "patients": 1}


@pytest.mark.django_db
def test_the_indexer_files_with_the_header_the_scp_read(
    organisation: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = add_pacs_node(organisation, "JOURNALSCU")
    files = images(ALICE, 4)
    meta = {"a": "1-1", "o": organisation.pk, "n": node.pk, "ae": "JOURNALSCU", "ip": "127.0.0.1"}
    writer = journal.Writer(tmp_path)
    # As the SCP writes them (the header it read), of another version (unknown fields), of an older SCP (none).
    heads: list[Any] = [read_header(files[0]).as_json(), read_header(files[1]).as_json(), {"bogus": 1}, None]
    for data, head in zip(files, heads, strict=True):
        writer.append(journal.INSTANCE, meta if head is None else {**meta, "h": head}, data)
    writer.close()
    parsed = []

    def counted(data: Any) -> Any:
        parsed.append(data)
        return read_header(data)

    monkeypatch.setattr(services_module, "read_header", counted)
    Indexer(tmp_path, first_live_segment=1).pass_once(live=False)
    assert len(parsed) == 2  # only the two records without a usable header were parsed again
    filed = {i.sop_instance_uid: i for i in Instance.objects.all()}
    for data in files:
        header = read_header(data)
        instance = filed[header.sop_instance_uid]
        assert (instance.rows, instance.transfer_syntax_uid) == (header.rows, header.transfer_syntax)
        assert instance.crc32 == zlib.crc32(data)
    study = Study.objects.get()
    assert (study.patient.patient_name, study.patient.patient_birth_date) == (
        "Journal^Alice",
        ALICE.birth_date,
    )


@pytest.mark.django_db
def test_rendering_is_called_for_once_per_batch_while_a_long_association_is_filed(
    organisation: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    node = add_pacs_node(organisation, "JOURNALSCU")
    writer = journal.Writer(tmp_path)
    append_association(writer, organisation, node, "1-1", images(ALICE, 120))
    writer.close()
    calls = []
    monkeypatch.setattr(indexer_module, "announce_arrivals", lambda: calls.append(1))
    with django_capture_on_commit_callbacks(execute=True):
        Indexer(tmp_path, first_live_segment=1).pass_once(live=False)
    # Two batches (64 records, then 56 and the end): each passes 50 stored instances, so each asks once, after its
    # commit (here the test's transaction holds both commits, so the calls come at its end).
    assert len(calls) == 2
    assert Instance.objects.count() == 120


@pytest.mark.django_db
def test_a_batch_counts_its_instances_once_as_filing_them_one_by_one_would(
    organisation: Any, tmp_path: Path
) -> None:
    node = add_pacs_node(organisation, "JOURNALSCU")
    first = [encode(ds) for ds in ct_series(ALICE, count=3, size=16)]
    study_uid = pydicom.dcmread(io.BytesIO(first[0])).StudyInstanceUID
    files = [
        *first,
        *[encode(ds) for ds in ct_series(ALICE, count=2, size=16, study_uid=study_uid)],  # a second series
        encode(cr_image(ALICE, study_uid=study_uid)),  # of another modality
        *images(BOB, 4),  # another study
    ]
    writer = journal.Writer(tmp_path)
    append_association(writer, organisation, node, "1-1", files)
    writer.close()
    Indexer(tmp_path, first_live_segment=1).pass_once(live=False)  # one batch
    assert Instance.objects.count() == len(files)
    for study in Study.objects.all():
        instances = Instance.objects.filter(series__study=study)
        assert study.number_of_instances == instances.count()
        assert study.size == sum(i.size for i in instances)
        assert study.number_of_series == study.series.count()
        assert study.last_instance_at is not None
        for series in study.series.all():
            assert series.number_of_instances == series.instances.count()
            assert series.size == sum(i.size for i in series.instances.all())
    assert Study.objects.get(study_instance_uid=study_uid).modalities_in_study == "CR\\CT"
    usage = dict(UsageCount.objects.filter(organisation_id=organisation.pk).values_list("name", "value"))
    assert usage["instances_received"] == len(files)
    assert usage["bytes_received"] == sum(len(f) for f in files)
    assert usage["studies_received"] == 2


@pytest.mark.django_db
def test_a_batch_whose_study_moved_meanwhile_is_filed_one_by_one_and_held(
    organisation: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
) -> None:
    node = add_pacs_node(organisation, "JOURNALSCU")
    alice = images(ALICE, 4)
    with django_capture_on_commit_callbacks(execute=True):  # this process now caches the study's ids
        store_instance(organisation, alice[0], source="scp", node=node)
    study = Study.objects.get()
    # An admin accepts a correction in a web process: the study is Bob's now; this process's cache still says Alice.
    bob = Patient.objects.create(organisation=organisation, patient_id="J-BOB", patient_name="Journal^Bob")
    Study.objects.filter(pk=study.pk).update(patient=bob)
    folder = tmp_path / "00"
    folder.mkdir()
    writer = journal.Writer(folder)
    append_association(writer, organisation, node, "1-1", alice[1:])
    writer.close()
    monkeypatch.setattr(indexer_module, "close_old_connections", lambda: None)
    caplog.set_level(logging.INFO, logger="radshare.studies.indexer")
    Indexer(folder, first_live_segment=1).pass_once(live=False)
    # The batch's write of the counts found the study moved: rolled back, then each record filed alone, which
    # looks the study up afresh and holds the images for the admin instead of filing them under Bob.
    assert "a batch of 4 records is filed one by one: StaleIdsError" in caplog.text
    study.refresh_from_db()
    assert (study.patient_id, study.number_of_instances) == (bob.pk, 1)
    assert Instance.objects.count() == 1
    assert StudyConflict.objects.get().refused == 3
    assert len(list((tmp_path / "held").iterdir())) == 3


@pytest.mark.django_db
def test_a_batch_that_fails_is_rolled_back_and_its_records_filed_one_by_one(
    organisation: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = add_pacs_node(organisation, "JOURNALSCU")
    writer = journal.Writer(tmp_path)
    append_association(writer, organisation, node, "1-1", images(ALICE, 5))
    writer.close()
    calls = {"n": 0}

    def fails_once_at_the_fourth(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 4:
            raise DatabaseError("the database went away a moment")
        return store_instance(*args, **kwargs)

    monkeypatch.setattr(indexer_module, "store_instance", fails_once_at_the_fourth)
    monkeypatch.setattr(indexer_module, "RETRY_FIRST", 0.01)
    # The test runs in a transaction of its own, whose connection must stay open (the indexer's process has none).
    monkeypatch.setattr(indexer_module, "close_old_connections", lambda: None)
    indexer = Indexer(tmp_path, first_live_segment=1)
    assert indexer.pass_once(live=False)
    # The batch's first three were rolled back with it, then all five filed one by one: 3 + 1 + 5 calls.
    assert calls["n"] == 9
    study = Study.objects.get()
    assert study.number_of_instances == Instance.objects.count() == 5
    # The files the rolled-back batch had written are gone with it: one file per instance, each named by its row.
    stored = {o.key for o in get_storage().scan("instances/")}
    assert stored == {instance_key(i.storage_key) for i in Instance.objects.all()}
    assert JournalCursor.objects.get().position == records(tmp_path)[-1].end
    entry = AuditEvent.objects.get(action="dicom.store")
    assert entry.detail == {"stored": 5, "duplicate": 0, "refused": 1, "patients": 1}  # counted once each


@pytest.mark.django_db
def test_a_batch_of_new_instances_is_inserted_at_once_and_one_sent_again_instance_by_instance(
    organisation: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    node = add_pacs_node(organisation, "JOURNALSCU")
    first = images(ALICE, 6)
    more = images(ALICE, 2, study_uid=read_header(first[0]).study_uid)
    writer = journal.Writer(tmp_path)
    # As the SCP writes them: with the header it read (which names each SOP Instance UID).
    append_association(writer, organisation, node, "1-1", first, end=False)
    indexer = Indexer(tmp_path, first_live_segment=1)
    caplog.set_level(logging.INFO, logger="radshare.studies.indexer")
    with CaptureQueriesContext(connection) as queries:
        assert indexer.pass_once(live=False) == 6
    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("INSERT INTO")]
    # One INSERT for the six instances and one for their six render rows, not one each.
    assert sum('"studies_instance"' in q for q in inserts) == 1
    assert sum('"imaging_instancerender"' in q for q in inserts) == 1
    assert Instance.objects.count() == InstanceRender.objects.filter(status="pending").count() == 6
    # The PACS sends the study again, with two new images: the batch is filed instance by instance (the unique SOP
    # Instance UID tells each duplicate), not rolled back and tried again.
    append_association(writer, organisation, node, "1-1", [*first, *more])
    writer.close()
    assert indexer.pass_once(live=False) == 9
    assert "one by one" not in caplog.text
    assert Study.objects.get().number_of_instances == Instance.objects.count() == 8
    entry = AuditEvent.objects.get(action="dicom.store")
    assert entry.detail == {"stored": 8, "duplicate": 6, "refused": 1, "patients": 1}


@pytest.mark.django_db
def test_where_a_multi_row_insert_gives_no_ids_the_rows_go_in_one_by_one(
    organisation: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite before 3.35 (RHEL 9 has 3.34) returns no ids from a multi-row INSERT, and the render rows need them.
    monkeypatch.setattr(connection.features, "can_return_rows_from_bulk_insert", False)
    node = add_pacs_node(organisation, "JOURNALSCU")
    first, *rest = images(ALICE, 4)
    store_instance(organisation, first, source="scp", node=node)  # the synchronous path
    writer = journal.Writer(tmp_path)
    append_association(writer, organisation, node, "1-1", rest, end=False)
    writer.close()
    Indexer(tmp_path, first_live_segment=1).pass_once(live=False)  # a batch
    assert Instance.objects.count() == InstanceRender.objects.filter(status="pending").count() == 4


@pytest.mark.django_db
def test_a_nudge_has_the_indexer_file_what_is_there_without_letting_more_gather(
    organisation: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a batch that was not full the indexer lets records gather (``GATHER``), unless the SCP nudges it: an
    association ended, or the SCP waits for the journal to be filed."""
    monkeypatch.setattr(indexer_module, "GATHER", 60.0)
    node = add_pacs_node(organisation, "JOURNALSCU")
    writer = journal.Writer(tmp_path)
    append_association(writer, organisation, node, "1-1", images(ALICE, 3))
    writer.close()
    stop, nudge = threading.Event(), threading.Event()
    stop.set()
    nudge.set()  # as the SCP does once it has appended the association's end
    started = time.monotonic()
    Indexer(tmp_path, first_live_segment=1).run(None, stop, alive=lambda: True, nudge=nudge)
    assert time.monotonic() - started < 30  # not the 60 s a batch would otherwise wait for more
    assert not nudge.is_set()  # taken: the next batch gathers again
    assert Instance.objects.count() == 3
    assert AuditEvent.objects.get(action="dicom.store").detail["stored"] == 3


@pytest.mark.django_db
def test_an_association_a_crash_cut_off_is_audited_as_interrupted(organisation: Any, tmp_path: Path) -> None:
    node = add_pacs_node(organisation, "JOURNALSCU")
    writer = journal.Writer(tmp_path)
    append_association(writer, organisation, node, "1-1", images(ALICE, 3), end=False)
    writer.close()
    # The SCP died with the association open; the next one starts segment 2.
    second = journal.Writer(tmp_path)
    stop = threading.Event()
    stop.set()
    Indexer(tmp_path, first_live_segment=2).run(None, stop, alive=lambda: True)
    second.close()
    assert Instance.objects.count() == 3
    entry = AuditEvent.objects.get(action="dicom.store")
    assert entry.detail == {"stored": 3, "duplicate": 0, "refused": 0, "patients": 1, "interrupted": True}
    assert entry.outcome == "failure"
    assert JournalCursor.objects.get().associations == {}
    assert journal.segments(tmp_path) == [2]  # the filed segment is gone


@pytest.mark.django_db
@pytest.mark.parametrize("linked", [True, False], ids=["linked", "another-file-system"])
def test_an_instance_s_file_goes_into_the_storage_as_it_is(
    organisation: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, linked: bool
) -> None:
    node = add_pacs_node(organisation, "JOURNALSCU")
    files = images(ALICE, 3)
    writer = journal.Writer(tmp_path)
    append_association(writer, organisation, node, "1-1", files)
    writer.close()
    written = {p.read_bytes(): p.stat().st_ino for p in (tmp_path / journal.FILES).iterdir()}
    assert len(written) == 3
    if not linked:  # the journal on one file system, the storage on another: the bytes are written there

        def no_link(source: Any, target: Any) -> None:
            raise OSError(errno.EXDEV, "Invalid cross-device link")

        monkeypatch.setattr(filesystem_module.os, "link", no_link)
    Indexer(tmp_path, first_live_segment=1).pass_once(live=False)
    storage = get_storage()
    for instance in Instance.objects.all():
        path = storage.local_path(instance_key(instance.storage_key))
        data = path.read_bytes()
        # Linked: the very file the SCP wrote and fsynced, its bytes not written a second time.
        assert (path.stat().st_ino == written[data]) is linked
        assert path.stat().st_nlink == 1  # the journal's name for it is gone once filed
        assert (instance.size, instance.crc32) == (len(data), zlib.crc32(data))
    assert sorted(written) == sorted(files)
    assert not list((tmp_path / journal.FILES).iterdir())


@pytest.mark.django_db
def test_instance_files_whose_records_a_crash_lost_are_filed_as_their_names_tell(
    organisation: Any, tmp_path: Path
) -> None:
    """An instance's record is not waited for (its file is): a power cut may lose records whose files are
    there. The next run files those files; one filed just before the cut (its name not yet removed) is known
    already; one cut off before it was acknowledged fails its CRC-32 and goes."""
    node = add_pacs_node(organisation, "JOURNALSCU")
    files = images(ALICE, 4)
    writer = journal.Writer(tmp_path)
    append_association(writer, organisation, node, "1-1", files[:1], end=False)
    (first,) = (tmp_path / journal.FILES).iterdir()
    os.link(first, tmp_path / "kept")
    Indexer(tmp_path, first_live_segment=1).pass_once(live=False)
    assert Instance.objects.count() == 1
    kept_until = records(tmp_path)[-1].end
    append_association(writer, organisation, node, "1-1", files[1:], end=False)
    writer.close()
    # The cut: the last three records lost, the fourth file cut off, the first file's name back.
    os.truncate(journal.segment_path(tmp_path, 1), journal.split(kept_until)[1])
    last = max((tmp_path / journal.FILES).iterdir(), key=lambda p: int(p.name.split("_")[0].split("-")[1]))
    os.truncate(last, 1000)
    (tmp_path / "kept").rename(first)
    second = journal.Writer(tmp_path)
    stop = threading.Event()
    stop.set()
    Indexer(tmp_path, first_live_segment=2).run(None, stop, alive=lambda: True)
    second.close()
    filed = {i.sop_instance_uid for i in Instance.objects.all()}
    assert filed == {read_header(data).sop_instance_uid for data in files[:3]}
    assert Study.objects.get().number_of_instances == 3
    entry = AuditEvent.objects.get(action="dicom.store")
    # The first was counted when it was filed; found again, it is not counted as sent twice.
    assert entry.detail == {"stored": 3, "duplicate": 0, "refused": 0, "patients": 1, "interrupted": True}
    assert entry.actor_label == "JOURNALSCU"  # from the record that was not lost
    assert not list((tmp_path / journal.FILES).iterdir())
    assert JournalCursor.objects.get().associations == {}


@pytest.mark.django_db
def test_an_instance_in_conflict_is_held_not_filed(organisation: Any, tmp_path: Path) -> None:
    node = add_pacs_node(organisation, "JOURNALSCU")
    alice = images(ALICE, 1)
    store_instance(organisation, alice[0], source="scp", node=node)
    study_uid = Study.objects.get().study_instance_uid
    # Acknowledged from the journal under another patient (a correction a moment earlier): kept for the admin.
    folder = tmp_path / "00"
    folder.mkdir()
    writer = journal.Writer(folder)
    bob = images(BOB, 2, study_uid=study_uid)
    append_association(writer, organisation, node, "1-1", bob)
    writer.close()
    kept = [(path, tmp_path / f"kept-{path.name}") for path in (folder / journal.FILES).iterdir()]
    for path, copy in kept:
        os.link(path, copy)
    Indexer(folder, first_live_segment=1).pass_once(live=False)
    assert Instance.objects.count() == 1
    conflict = StudyConflict.objects.get()
    assert conflict.refused == 2
    assert {p.read_bytes() for p in (tmp_path / "held").iterdir()} == set(bob)
    # Filed again (a crash before the cursor's transaction committed, the instances' files still there): each
    # record overwrites its own held file.
    JournalCursor.objects.update(position=0)
    for path, copy in kept:
        copy.rename(path)
    Indexer(folder, first_live_segment=1).pass_once(live=False)
    assert {p.read_bytes() for p in (tmp_path / "held").iterdir()} == set(bob)
    entry = AuditEvent.objects.filter(action="dicom.store").latest("pk")
    assert entry.detail["held"] == 2


@pytest.mark.django_db
def test_an_instance_of_a_study_being_destroyed_waits(organisation: Any, tmp_path: Path) -> None:
    node = add_pacs_node(organisation, "JOURNALSCU")
    first = images(ALICE, 2)
    store_instance(organisation, first[0], source="scp", node=node)
    Study.objects.update(destroy_started_at=timezone.now())
    writer = journal.Writer(tmp_path)
    append_association(writer, organisation, node, "1-1", first[1:], end=False)
    writer.close()
    indexer = Indexer(tmp_path, first_live_segment=1)
    item = records(tmp_path)[0]
    with pytest.raises(OutOfResourcesError):
        indexer._commit([item])
    assert JournalCursor.objects.get().position == 0  # not filed: tried again until the destruction is over
    assert Instance.objects.count() == 1


@pytest.mark.django_db(transaction=True)  # status reads through connections of its own
def test_status_shows_what_a_journal_has_still_to_file(
    organisation: Any, radshare_config: Any, tmp_path: Path
) -> None:
    radshare_config(data_dir=str(tmp_path), dicom_port=1)  # status checks an SCP that is not there: not ready
    node = add_pacs_node(organisation, "JOURNALSCU")
    folder, lock = journal.claim_slot(tmp_path / "journal")
    writer = journal.Writer(folder)
    files = images(ALICE, 3)
    append_association(writer, organisation, node, "1-1", files)
    writer.close()

    def journal_line() -> str:
        out = io.StringIO()
        with pytest.raises(CommandError):
            call_command("status", stdout=out)
        return next(line for line in out.getvalue().splitlines() if line.startswith("journal "))

    (backlog,) = backlogs(tmp_path / "journal")
    assert backlog.waiting_bytes > sum(map(len, files))
    assert backlog.stuck(timezone.now())  # waiting, and no indexer has ever filed it
    assert re.fullmatch(r"journal 00  \d+\.\d MB waiting", journal_line())

    Indexer(folder, first_live_segment=1).pass_once(live=False)
    (backlog,) = backlogs(tmp_path / "journal")
    assert backlog.waiting_bytes == 0
    assert not backlog.stuck(timezone.now() + dt.timedelta(hours=1))
    assert re.fullmatch(r"journal 00  nothing waiting, last filed \d+ s ago", journal_line())
    os.close(lock)


@pytest.mark.django_db
def test_a_journal_no_running_scp_holds_is_filed_by_another_scp_s_indexer(
    organisation: Any, tmp_path: Path
) -> None:
    node = add_pacs_node(organisation, "JOURNALSCU")
    # Two SCPs ran on this machine; both crashed; only one is started again. It claims the first folder.
    own, own_lock = journal.claim_slot(tmp_path)
    other, other_lock = journal.claim_slot(tmp_path)
    writer = journal.Writer(other)
    append_association(writer, organisation, node, "1-1", images(ALICE, 3), end=False)
    writer.close()
    os.close(other_lock)  # its SCP is gone
    stop = threading.Event()
    stop.set()
    Indexer(own, first_live_segment=1).run(None, stop, alive=lambda: True)
    assert Instance.objects.count() == 3
    assert journal.segments(other) == []  # filed, so gone
    entry = AuditEvent.objects.get(action="dicom.store")
    assert entry.detail["interrupted"] is True
    assert entry.detail["stored"] == 3
    # A folder an SCP holds is left alone.
    busy, busy_lock = journal.claim_slot(tmp_path)
    assert busy == other
    writer = journal.Writer(busy)
    append_association(writer, organisation, node, "2-1", images(BOB, 1))
    writer.close()
    Indexer(own, first_live_segment=1).run(None, stop, alive=lambda: True)
    assert Instance.objects.count() == 3
    os.close(busy_lock)
    os.close(own_lock)
