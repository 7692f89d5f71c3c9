"""What the storage SCP refuses, with which status, and that it goes on serving (pynetdicom client).

A refused C-STORE leaves nothing behind (no rows, no file, no temp file), the same association stores the
next valid data set, and the association's one ``dicom.store`` audit entry counts what happened.
"""

from __future__ import annotations

import datetime as dt
import logging
import struct
import threading
from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from django.db.backends.signals import connection_created
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)
from pynetdicom import AE, _config
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from radshare.audit.models import AuditEvent
from radshare.organisations.services import add_pacs_node
from radshare.studies.models import Instance, Patient, Series, Study
from radshare.studies.synthetic import FakePatient, ct_series, encode
from tests.conftest import storage_dir

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
        ae.add_requested_context(CTImageStorage, ImplicitVRLittleEndian)
        ae.add_requested_context(CTImageStorage, RLELossless)
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
    """Release, then wait until the SCP's association threads have ended (each audits as it closes); in journal
    mode, also until the indexer has filed everything, the association's end (and audit entry) included."""
    assoc.release()
    for thread in list(scp.server.active_associations):
        thread.join(timeout=30)
        assert not thread.is_alive()
    if scp.journal is not None:
        assert scp.journal.drain()


# The refusals and acceptances the SCP decides before it answers are the same in journal mode
# (docs/architecture.md "Journal mode"): those tests run in both.
BOTH_MODES = pytest.mark.parametrize("scp", ["", "journal"], indirect=True)


def stored_files() -> list[Path]:
    return sorted(storage_dir().rglob("*.*"))


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
@BOTH_MODES
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


@BOTH_MODES
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


@BOTH_MODES
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
    root = storage_dir()
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


# --- data sets that cannot be read, or that end before they should (PS3.5 sections 7 and 8) ---------------
#
# Each is refused with 0xC000 "cannot understand" (PS3.4 Annex B.2.3): one WARNING line without a traceback
# or patient data, nothing stored, and the association's audit entry counts it as refused.

ITEM_DELIMITER = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"  # (FFFE,E00D), length 0 (PS3.5 section 7.5.2)
SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"  # (FFFE,E0DD), length 0
PATIENT_DATA = ("Eerste", PATIENT.patient_id, "19600102")


def one_ct() -> Dataset:
    # 16 x 16 x 16 bit: 512 bytes of pixel data, the last element in the file
    (ds,) = ct_series(PATIENT, count=1, size=16)
    return ds


def _element(data: bytes, header: bytes) -> int:
    """Where an explicit VR little endian element starts (``header``: its tag as written, then its VR)."""
    at = data.find(header)
    assert at > 132, header
    return at


def bad_vr() -> bytes:
    data = encode(one_ct())
    at = _element(data, b"\x08\x00\x3e\x10LO")  # (0008,103E) Series Description, VR "ZZ"
    return data[: at + 4] + b"ZZ" + data[at + 6 :]


def value_past_the_end() -> bytes:
    data = encode(one_ct())
    at = _element(data, b"\x08\x00\x30\x10LO")  # (0008,1030) Study Description, 65520 bytes long
    return data[: at + 6] + struct.pack("<H", 0xFFF0) + data[at + 8 :]


def value_too_short_for_its_vr() -> bytes:
    data = encode(one_ct())
    at = _element(data, b"\x28\x00\x10\x00US")  # (0028,0010) Rows: 3 bytes where US takes 2 per value
    return data[: at + 6] + struct.pack("<H", 3) + data[at + 8 : at + 10] + b"\x00" + data[at + 10 :]


def _with_undefined_length_sequence(ds: Dataset, keyword: str, item: Dataset) -> bytes:
    setattr(ds, keyword, [item])
    ds[keyword].is_undefined_length = True
    item.is_undefined_length_sequence_item = True
    data = encode(ds)
    assert data.count(ITEM_DELIMITER + SEQUENCE_DELIMITER) == 1
    return data


def sequence_without_delimiters() -> bytes:
    """Referenced Image Sequence, undefined length, neither its item nor itself delimited: all that follows
    reads as part of its item, and the data set ends inside it."""
    item = Dataset()
    item.ReferencedSOPClassUID = CTImageStorage
    item.ReferencedSOPInstanceUID = generate_uid()
    data = _with_undefined_length_sequence(one_ct(), "ReferencedImageSequence", item)
    return data.replace(ITEM_DELIMITER + SEQUENCE_DELIMITER, b"")


def sequence_unterminated_at_the_end() -> bytes:
    """The last element (Digital Signatures Sequence, after the pixel data) has no sequence delimiter."""
    item = Dataset()
    item.MACIDNumber = 1
    data = _with_undefined_length_sequence(one_ct(), "DigitalSignaturesSequence", item)
    assert data.endswith(SEQUENCE_DELIMITER)
    return data[: -len(SEQUENCE_DELIMITER)]


def pixels_cut_in_transfer() -> bytes:
    data = encode(one_ct())
    return data[:-100]  # Pixel Data says 512 bytes; 412 arrive


def pixels_shorter_than_the_header_says() -> bytes:
    ds = one_ct()
    ds.PixelData = ds.PixelData[:-32]  # well framed, one row short
    return encode(ds)


def frames_missing() -> bytes:
    ds = one_ct()
    ds.NumberOfFrames = 2  # two frames said, one sent
    return encode(ds)


def rle_ct() -> Dataset:
    ds = one_ct()
    ds.compress(RLELossless)
    return ds


def last_fragment_cut() -> bytes:
    data = encode(rle_ct())
    assert data.endswith(SEQUENCE_DELIMITER)
    return data[: -len(SEQUENCE_DELIMITER) - 10]


def fragments_without_sequence_delimiter() -> bytes:
    data = encode(rle_ct())
    assert data.endswith(SEQUENCE_DELIMITER)
    return data[: -len(SEQUENCE_DELIMITER)]


def fragments_fewer_than_frames() -> bytes:
    ds = rle_ct()
    ds.NumberOfFrames = 2  # one fragment, two frames: a fragment never holds two frames (PS3.5 A.4)
    return encode(ds)


@pytest.mark.parametrize(
    "build",
    [
        bad_vr,
        value_too_short_for_its_vr,
        value_past_the_end,
        sequence_without_delimiters,
        sequence_unterminated_at_the_end,
        pixels_cut_in_transfer,
        pixels_shorter_than_the_header_says,
        frames_missing,
        last_fragment_cut,
        fragments_without_sequence_delimiter,
        fragments_fewer_than_frames,
    ],
    ids=lambda build: build.__name__,
)
def test_broken_or_incomplete_data_set_is_refused_with_one_plain_log_line(
    scp: Any,
    associate: Any,
    organisation: Any,
    tmp_path: Path,
    monkeypatch: Any,
    caplog: Any,
    build: Callable[[], bytes],
) -> None:
    add_pacs_node(organisation, CALLING)
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)  # sent as it is, never decoded
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(build())
    assoc = associate()
    caplog.clear()

    assert store(assoc, broken) == CANNOT_UNDERSTAND

    records = list(caplog.records)
    assert [(r.name, r.levelname) for r in records if r.levelno >= logging.WARNING] == [
        ("radshare.studies.scp", "WARNING")
    ]
    assert [r for r in records if r.exc_info] == []
    for record in records:
        assert not any(value in record.getMessage() for value in PATIENT_DATA), record.getMessage()
    assert not Instance.objects.exists()
    assert not Patient.objects.exists()
    assert [p for p in storage_dir().rglob("*") if p.is_file()] == []

    (valid,) = ct_series(PATIENT, count=1, size=16)
    assert store(assoc, valid) == SUCCESS
    release(scp, assoc)

    assert list(Instance.objects.values_list("sop_instance_uid", flat=True)) == [valid.SOPInstanceUID]
    assert store_audit() == {
        "outcome": "failure",
        "actor": CALLING,
        "stored": 1,
        "duplicate": 0,
        "refused": 1,
        "patients": 1,
    }


def odd_length_pixels_with_pad_byte() -> Dataset:
    ds = one_ct()
    ds.Rows = ds.Columns = 3
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(9) + b"\x00"  # 9 bytes of pixels, padded to an even length (PS3.5 section 8.1.1)
    return ds


def implicit_vr_with_undefined_length_sequence() -> Dataset:
    ds = one_ct()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    item = Dataset()
    item.ReferencedSOPClassUID = CTImageStorage
    item.ReferencedSOPInstanceUID = generate_uid()
    ds.ReferencedImageSequence = [item]
    ds["ReferencedImageSequence"].is_undefined_length = True
    item.is_undefined_length_sequence_item = True
    return ds


def two_frames() -> Dataset:
    ds = one_ct()
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData * 2
    return ds


@pytest.mark.parametrize(
    "build",
    [one_ct, odd_length_pixels_with_pad_byte, implicit_vr_with_undefined_length_sequence, two_frames, rle_ct],
    ids=lambda build: build.__name__,
)
@BOTH_MODES
def test_well_formed_variants_are_accepted(
    scp: Any, associate: Any, organisation: Any, caplog: Any, build: Callable[[], Dataset]
) -> None:
    add_pacs_node(organisation, CALLING)
    ds = build()
    assoc = associate()

    assert store(assoc, ds) == SUCCESS
    release(scp, assoc)

    assert list(Instance.objects.values_list("sop_instance_uid", flat=True)) == [ds.SOPInstanceUID]
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
