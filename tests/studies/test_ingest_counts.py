"""Ingest's counts and files under the fast path (docs/architecture.md "Performance budget"): no look-up before the
insert (the unique constraint finds duplicates), the counts written by one precompiled statement per table in each
instance's own transaction, the file written while its header is read, in folders made ahead. The counts shown to
senders and recipients and copied into shares must equal what the index holds whenever an association ends, however
it ends, and while several associations store into one study."""

from __future__ import annotations

import copy
import datetime as dt
import threading
from typing import Any

import pytest
from django.db.models import Count, Sum
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import BasicTextSRStorage, CTImageStorage  # type: ignore[attr-defined]

from radshare.audit.models import AuditEvent
from radshare.core.storage import instance_folders
from radshare.organisations.services import add_pacs_node
from radshare.studies import services
from radshare.studies.errors import NotDicomError
from radshare.studies.models import Instance, Patient, Series, Study, StudyConflict
from radshare.studies.services import StoreOutcome, store_instance
from radshare.studies.synthetic import FakePatient, ct_series, encode
from tests.conftest import storage_dir
from tests.imaging.test_reports import sr_dataset

PATIENT = FakePatient("P-COUNT", "Teller^Tina", dt.date(1971, 2, 3))
CALLING = "MODALITY"
SUCCESS = 0x0000


def _associate(scp: Any, calling: str = CALLING) -> Any:
    ae = AE(ae_title=calling)
    ae.add_requested_context(CTImageStorage)
    ae.add_requested_context(BasicTextSRStorage)
    assoc = ae.associate("127.0.0.1", scp.address[1], ae_title=scp.ae_title)
    assert assoc.is_established
    return assoc


def _settle(scp: Any) -> None:
    """Wait until the SCP's association threads have ended (each writes its audit entry as it closes)."""
    for assoc in list(scp.server.active_associations):
        assoc.join(timeout=30)
        assert not assoc.is_alive()


def _series(study_uid: str, count: int, modality: str = "CT") -> list[Dataset]:
    datasets = ct_series(PATIENT, count=count, size=16, study_uid=study_uid)
    for ds in datasets:
        ds.Modality = modality
    return datasets


def _instance_files() -> list[Any]:
    return sorted((storage_dir() / "instances").rglob("*.dcm"))


def assert_counts_match_the_index() -> None:
    """Every study's and series' counts and sizes are what its instances add up to; the files are those rows'."""
    for series in Series.objects.all():
        rows = Instance.objects.filter(series=series)
        assert series.number_of_instances == rows.count()
        assert series.size == (rows.aggregate(t=Sum("size"))["t"] or 0)
        assert series.number_of_reports == rows.filter(sop_class_uid=BasicTextSRStorage).count()
    for study in Study.objects.annotate(n=Count("series")):
        rows = Instance.objects.filter(series__study=study)
        assert study.number_of_instances == rows.count()
        assert study.size == (rows.aggregate(t=Sum("size"))["t"] or 0)
        assert study.number_of_reports == rows.filter(sop_class_uid=BasicTextSRStorage).count()
        assert study.number_of_series == study.n
        modalities = (
            Series.objects.filter(study=study).exclude(modality="").values_list("modality", flat=True)
        )
        assert study.modalities_in_study == "\\".join(sorted(set(modalities)))
    on_disk = {p.relative_to(storage_dir() / "instances").as_posix() for p in _instance_files()}
    assert on_disk == set(Instance.objects.values_list("storage_key", flat=True))
    assert list((storage_dir() / "incoming").glob("*")) == []


@pytest.mark.django_db(transaction=True)
def test_counts_are_right_after_an_association_with_duplicates_and_several_series(
    scp: Any, organisation: Any
) -> None:
    add_pacs_node(organisation, CALLING)
    study_uid = generate_uid()
    ct, mr = _series(study_uid, 5), _series(study_uid, 3, "MR")
    report = sr_dataset(PATIENT, study_uid, finding="Geen afwijkingen.", conclusion="Normaal.")
    changed = copy.deepcopy(ct[2])
    changed.InstanceNumber = 99  # the same SOP Instance UID, other bytes

    assoc = _associate(scp)
    sent = [*ct, *mr, report, ct[0], ct[1], changed]  # the last three: sent before in this association
    statuses = [assoc.send_c_store(ds).Status for ds in sent]
    assoc.release()
    _settle(scp)

    assert statuses == [SUCCESS] * len(sent)  # a duplicate is acknowledged, whatever its bytes
    study = Study.objects.get()
    assert (study.number_of_instances, study.number_of_reports, study.number_of_series) == (9, 1, 3)
    assert study.modalities_in_study == "CT\\MR\\SR"
    assert_counts_match_the_index()
    kept = Instance.objects.get(sop_instance_uid=ct[2].SOPInstanceUID)
    assert kept.instance_number == ct[2].InstanceNumber  # the first copy stays
    [conflict] = AuditEvent.objects.filter(action="dicom.store.conflict")
    assert conflict.detail["instance"] == kept.pk
    [entry] = AuditEvent.objects.filter(action="dicom.store")
    assert entry.detail == {"stored": 9, "duplicate": 3, "refused": 0, "patients": 1}


@pytest.mark.django_db(transaction=True)
def test_counts_are_right_when_an_association_is_aborted_midway(scp: Any, organisation: Any) -> None:
    add_pacs_node(organisation, CALLING)
    study_uid = generate_uid()
    datasets = _series(study_uid, 10)
    assoc = _associate(scp)
    statuses = [assoc.send_c_store(ds).Status for ds in datasets[:6]]
    assoc.abort()  # the sender goes away with four images still to send
    _settle(scp)

    assert statuses == [SUCCESS] * 6
    study = Study.objects.get()
    assert study.number_of_instances == 6  # every acknowledged instance, counted already
    assert_counts_match_the_index()
    [entry] = AuditEvent.objects.filter(action="dicom.store")
    assert entry.detail["stored"] == 6

    # The sender tries again with the whole study: the six are duplicates, the four are new.
    assoc = _associate(scp)
    assert [assoc.send_c_store(ds).Status for ds in datasets] == [SUCCESS] * 10
    assoc.release()
    _settle(scp)
    study.refresh_from_db()
    assert study.number_of_instances == 10
    assert_counts_match_the_index()


@pytest.mark.django_db(transaction=True)
def test_concurrent_associations_storing_into_one_study_keep_its_counts(scp: Any, organisation: Any) -> None:
    """Three senders at once, each adding a series of its own modality to one study, and all three racing with the
    same five instances first (the unique constraint decides which copy is kept)."""
    add_pacs_node(organisation, CALLING)
    study_uid = generate_uid()
    shared = _series(study_uid, 5)
    batches = [shared + _series(study_uid, 8, modality) for modality in ("CT", "MR", "PT")]
    statuses: list[list[int]] = [[] for _ in batches]
    start = threading.Barrier(len(batches))

    def send(index: int) -> None:
        assoc = _associate(scp)
        start.wait(timeout=30)
        statuses[index] = [assoc.send_c_store(ds).Status for ds in batches[index]]
        assoc.release()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    _settle(scp)

    assert statuses == [[SUCCESS] * len(batch) for batch in batches]
    study = Study.objects.get()
    assert (study.number_of_instances, study.number_of_series) == (5 + 3 * 8, 4)
    assert study.modalities_in_study == "CT\\MR\\PT"
    assert Patient.objects.count() == 1
    assert_counts_match_the_index()
    details = list(AuditEvent.objects.filter(action="dicom.store").values_list("detail", flat=True))
    assert sum(d["stored"] for d in details) == 5 + 3 * 8
    assert sum(d["duplicate"] for d in details) == 2 * 5
    assert not AuditEvent.objects.filter(action="dicom.store.conflict").exists()


@pytest.mark.django_db(transaction=True)
def test_an_instance_sent_again_after_its_study_moved_is_a_duplicate_not_a_conflict(
    organisation: Any,
) -> None:
    """The instance is here already: acknowledged as before the move, not refused as another patient's."""
    study_uid = generate_uid()
    first, second = _series(study_uid, 2)
    for ds in (first, second):
        store_instance(organisation, encode(ds), source="upload")
    other = Patient.objects.create(organisation=organisation, patient_id="P-OTHER")
    Study.objects.update(patient=other)  # as an accepted correction moves it
    services.forget_cached_ids()

    result = store_instance(organisation, encode(first), source="upload")

    assert result.outcome == StoreOutcome.DUPLICATE
    assert not StudyConflict.objects.exists()
    assert_counts_match_the_index()


@pytest.mark.django_db(transaction=True)
def test_refused_data_leaves_no_file_although_writing_starts_at_once(organisation: Any) -> None:
    good = encode(_series(generate_uid(), 1)[0])
    with pytest.raises(NotDicomError):
        store_instance(organisation, b"not dicom at all" * 1000, source="upload")
    with pytest.raises(NotDicomError):  # cut off in transfer
        store_instance(organisation, good[: len(good) // 2], source="upload")

    assert _instance_files() == []
    assert list((storage_dir() / "incoming").glob("*")) == []
    assert store_instance(organisation, good, source="upload").outcome == StoreOutcome.STORED
    assert_counts_match_the_index()
    # New files go to folders made once, ahead of them.
    assert sorted(p.name for p in (storage_dir() / "instances").iterdir()) == [
        folder.removeprefix("instances/") for folder in instance_folders()
    ]
