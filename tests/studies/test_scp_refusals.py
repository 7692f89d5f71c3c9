"""What the storage SCP refuses, with which status, and that it goes on serving (pynetdicom client).

A refused C-STORE leaves nothing behind (no rows, no file, no temp file), the same association stores the
next valid data set, and the association's one ``dicom.store`` audit entry counts what happened.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db.backends.signals import connection_created
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, _config
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from radshare.audit.models import AuditEvent
from radshare.organisations.services import add_pacs_node
from radshare.studies.models import Instance, Patient, Series, Study
from radshare.studies.synthetic import FakePatient, ct_series

pytestmark = pytest.mark.django_db(transaction=True)

CALLING = "MODALITY"
PATIENT = FakePatient("REF-1", "Eerste^Patient", dt.date(1960, 1, 2))
OTHER_PATIENT = FakePatient("REF-2", "Tweede^Patient", dt.date(1990, 6, 7))
SUCCESS = 0x0000
CANNOT_UNDERSTAND = 0xC000
DOES_NOT_MATCH_SOP_CLASS = 0xA900
OUT_OF_RESOURCES = 0xA700


@pytest.fixture
def associate(scp: Any) -> Iterator[Callable[[], Any]]:
    """Open associations to the SCP as a registered modality; any left open by a failing test are aborted."""
    opened: list[Any] = []

    def open_association() -> Any:
        ae = AE(ae_title=CALLING)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
        ae.add_requested_context(Verification)
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        ae.add_requested_context(CTImageStorage, DeflatedExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", scp.address[1], ae_title=scp.ae_title)
        opened.append(assoc)
        assert assoc.is_established
        return assoc

    yield open_association
    for assoc in opened:
        if assoc.is_established:
            assoc.abort()


def store(assoc: Any, data: Dataset | Path) -> int:
    status = assoc.send_c_store(data)
    assert "Status" in status, "no C-STORE response (association aborted?)"
    return int(status.Status)


def release(scp: Any, assoc: Any) -> None:
    """Release, then wait until the SCP's association threads have ended (each audits as it closes)."""
    assoc.release()
    for thread in list(scp.server.active_associations):
        thread.join(timeout=30)
        assert not thread.is_alive()


def stored_files() -> list[Path]:
    return sorted(Path(settings.RADSHARE_STORAGE_ROOT).rglob("*.*"))


def store_audit() -> dict[str, Any]:
    """The one ``dicom.store`` entry of the one association a test made."""
    entry = AuditEvent.objects.get(action="dicom.store")
    return {"outcome": entry.outcome, "actor": entry.actor_label, **entry.detail}


def part10_with_garbage(path: Path, transfer_syntax: str, body: bytes) -> Path:
    """A file with valid file meta (CT image, a fresh SOP Instance UID) followed by ``body`` as its data set.

    With ``STORE_SEND_CHUNKED_DATASET``, pynetdicom's ``send_c_store(path)`` sends the data set as it is in
    the file, never decoding it.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = generate_uid()
    buffer = BytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buffer, meta)
    path.write_bytes(buffer.getvalue() + body)
    return path


GARBAGE = bytes(range(256)) * 4 + b"\xff\xfe\x00\xe0 not DICOM"


@pytest.mark.filterwarnings("ignore:Expected explicit VR:UserWarning")  # pydicom, reading the garbage
@pytest.mark.parametrize(
    ("transfer_syntax", "expected"),
    [
        # pydicom reads arbitrary bytes in explicit VR as *some* elements: none of them a SOP Instance UID.
        (ExplicitVRLittleEndian, {CANNOT_UNDERSTAND, DOES_NOT_MATCH_SOP_CLASS}),
        # Not a deflate stream at all: cannot be understood.
        (DeflatedExplicitVRLittleEndian, {CANNOT_UNDERSTAND}),
    ],
    ids=["explicit-little", "deflated"],
)
def test_unparseable_data_set_is_refused_and_association_goes_on(
    scp: Any,
    associate: Any,
    organisation: Any,
    tmp_path: Path,
    monkeypatch: Any,
    transfer_syntax: str,
    expected: set[int],
) -> None:
    add_pacs_node(organisation, CALLING)
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    garbage = part10_with_garbage(tmp_path / "garbage.dcm", transfer_syntax, GARBAGE)
    assoc = associate()

    refused = store(assoc, garbage)
    assert refused in expected, hex(refused)
    assert not Instance.objects.exists()
    assert not Study.objects.exists()
    assert stored_files() == []

    (valid,) = ct_series(PATIENT, count=1, size=16)
    assert store(assoc, valid) == SUCCESS
    assert assoc.send_c_echo().Status == SUCCESS
    release(scp, assoc)

    assert list(Instance.objects.values_list("sop_instance_uid", flat=True)) == [valid.SOPInstanceUID]
    assert len(stored_files()) == 1
    assert store_audit() == {
        "outcome": "failure",
        "actor": CALLING,
        "stored": 1,
        "duplicate": 0,
        "refused": 1,
        "patients": 1,
    }


def test_data_set_without_study_and_series_uids_is_refused(
    scp: Any, associate: Any, organisation: Any
) -> None:
    add_pacs_node(organisation, CALLING)
    first, second, third = ct_series(PATIENT, count=3, size=16)
    del first.StudyInstanceUID
    del second.SeriesInstanceUID
    third.StudyInstanceUID = ""  # present but empty counts as missing
    assoc = associate()

    statuses = [store(assoc, ds) for ds in (first, second, third)]
    release(scp, assoc)

    assert [s >> 8 for s in statuses] == [0xA9, 0xA9, 0xA9], [hex(s) for s in statuses]
    assert not Instance.objects.exists()
    assert not Patient.objects.exists()
    assert stored_files() == []
    assert store_audit() == {
        "outcome": "failure",
        "actor": CALLING,
        "stored": 0,
        "duplicate": 0,
        "refused": 3,
        "patients": 0,
    }


def test_study_uid_under_another_patient_is_refused(scp: Any, associate: Any, organisation: Any) -> None:
    add_pacs_node(organisation, CALLING)
    study_uid = generate_uid()
    own = ct_series(PATIENT, count=2, size=16, study_uid=study_uid)
    (foreign,) = ct_series(OTHER_PATIENT, count=1, size=16, study_uid=study_uid)
    assoc = associate()

    statuses = [store(assoc, ds) for ds in (*own, foreign)]
    release(scp, assoc)

    assert statuses[:2] == [SUCCESS, SUCCESS]
    assert statuses[2] >> 12 in (0xA, 0xC), hex(statuses[2])  # a failure, not a warning or success
    study = Study.objects.get()
    assert study.patient.patient_id == PATIENT.patient_id
    assert study.number_of_instances == 2
    assert set(Instance.objects.values_list("sop_instance_uid", flat=True)) == {
        ds.SOPInstanceUID for ds in own
    }
    assert not Patient.objects.filter(patient_id=OTHER_PATIENT.patient_id).exists()
    assert len(stored_files()) == 2
    assert store_audit() == {
        "outcome": "failure",
        "actor": CALLING,
        "stored": 2,
        "duplicate": 0,
        "refused": 1,
        "patients": 1,
    }


def test_disk_failure_is_out_of_resources_and_the_next_store_works(
    scp: Any, associate: Any, organisation: Any
) -> None:
    add_pacs_node(organisation, CALLING)
    root = Path(settings.RADSHARE_STORAGE_ROOT)
    # A file where the storage folder should be: mkdir fails with ENOTDIR for root too (chmod would not).
    root.parent.mkdir(parents=True, exist_ok=True)
    root.write_bytes(b"")
    first, second = ct_series(PATIENT, count=2, size=16)
    assoc = associate()

    assert store(assoc, first) == OUT_OF_RESOURCES
    assert not Instance.objects.exists()
    assert not Study.objects.exists()
    assert root.is_file()
    assert root.stat().st_size == 0

    root.unlink()  # the operator fixes the disk; the sender retries
    assert store(assoc, first) == SUCCESS
    assert store(assoc, second) == SUCCESS
    release(scp, assoc)

    study = Study.objects.get()
    assert study.number_of_instances == Instance.objects.count() == 2
    assert Series.objects.get().number_of_instances == 2
    files = stored_files()
    assert len(files) == 2
    assert all(f.is_relative_to(root / "instances") for f in files)
    assert study.size == sum(f.stat().st_size for f in files)
    assert store_audit() == {
        "outcome": "failure",
        "actor": CALLING,
        "stored": 2,
        "duplicate": 0,
        "refused": 1,
        "patients": 1,
    }
    assert list((root / "incoming").iterdir()) == []


@pytest.fixture
def scp_connections() -> Iterator[list[Any]]:
    """Every database connection opened while the test runs outside the test's own thread (the SCP's)."""
    opened: list[Any] = []
    main = threading.get_ident()

    def created(sender: Any, connection: Any, **kwargs: Any) -> None:
        if threading.get_ident() != main:
            opened.append(connection)

    connection_created.connect(created)
    yield opened
    connection_created.disconnect(created)


def test_every_association_closes_its_database_connection(
    scp: Any, associate: Any, organisation: Any, scp_connections: list[Any]
) -> None:
    # A rejected association gets no EVT_RELEASED/EVT_ABORTED; its thread's connection must not linger
    # (on PostgreSQL each one would hold a server session until the garbage collector happens by).
    add_pacs_node(organisation, CALLING)
    ae = AE(ae_title="STRANGER")
    ae.add_requested_context(Verification)
    for _ in range(3):
        assert ae.associate("127.0.0.1", scp.address[1], ae_title=scp.ae_title).is_rejected
    assoc = associate()
    (ds,) = ct_series(PATIENT, count=1, size=16)
    assert store(assoc, ds) == SUCCESS
    release(scp, assoc)

    assert AuditEvent.objects.filter(action="dicom.association.rejected").count() == 3
    assert len(scp_connections) >= 4
    assert [c for c in scp_connections if c.connection is not None] == []
